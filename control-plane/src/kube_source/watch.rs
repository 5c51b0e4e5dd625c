//! One reflector (watch + local cache) per kind, each waking the source's
//! loop on every change, and retrying with a backoff when the API server
//! is away (counted in `sluice_kube_watch_restarts_total{kind}`).

use crate::crd::{
    AuthorizationPolicy, DestinationRule, EnvoyFilter, Gateway, PeerAuthentication,
    RateLimitPolicy, RequestAuthentication, ServiceEntry, Sidecar, Telemetry, VirtualService,
    WorkloadEntry,
};
use crate::debounce::Edge;
use crate::metrics::KindLabels;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Failed list or watch requests by kind. Process-wide because the watches
/// start where no [`crate::metrics::ControllerMetrics`] is at hand; the
/// registry there exposes this same family.
static RESTARTS: LazyLock<Family<KindLabels, Counter>> = LazyLock::new(Family::default);

/// List or watch requests to the API server that failed, by kind; each is
/// retried after a pause (0.8 s doubling to 30 s) or, for the first "too old
/// resource version" in a row, relisted at once.
pub fn restarts() -> &'static Family<KindLabels, Counter> {
    &RESTARTS
}

/// The API resource of every Istio/Sluice kind, at the version its CRD stores.
pub fn istio_resources() -> Vec<ApiResource> {
    vec![
        ApiResource::erase::<VirtualService>(&()),
        ApiResource::erase::<DestinationRule>(&()),
        ApiResource::erase::<ServiceEntry>(&()),
        ApiResource::erase::<WorkloadEntry>(&()),
        ApiResource::erase::<Sidecar>(&()),
        ApiResource::erase::<Gateway>(&()),
        ApiResource::erase::<EnvoyFilter>(&()),
        ApiResource::erase::<PeerAuthentication>(&()),
        ApiResource::erase::<RequestAuthentication>(&()),
        ApiResource::erase::<AuthorizationPolicy>(&()),
        ApiResource::erase::<RateLimitPolicy>(&()),
        ApiResource::erase::<Telemetry>(&()),
    ]
}

/// Wakes the source on every watch event, and notes each event's time in
/// the source's [`Edge`] as it happens: the source may look much later (after
/// an ingest, after writing statuses), and bursts go by when events came.
#[derive(Debug)]
pub struct Changes {
    notify: Notify,
    edge: std::sync::Mutex<Edge>,
    /// `sluice_config_pending`: set on every event, cleared by the source
    /// when it reads the caches.
    pending: prometheus_client::metrics::gauge::Gauge,
}

impl Changes {
    /// Bursts are runs of events less than `debounce` apart.
    pub fn new(debounce: Duration, pending: prometheus_client::metrics::gauge::Gauge) -> Self {
        Self {
            notify: Notify::new(),
            edge: std::sync::Mutex::new(Edge::new(debounce)),
            pending,
        }
    }

    /// Records an event now and wakes the source.
    pub fn signal(&self) {
        self.edge().note(Instant::now());
        self.pending.set(1);
        self.notify.notify_one();
    }

    /// The source is about to read the caches: every event so far is in
    /// what it reads.
    pub fn taken(&self) {
        self.pending.set(0);
    }

    /// Waits for an event (returns at once if one came since the last wait).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// The bursts of events seen so far.
    pub fn edge(&self) -> std::sync::MutexGuard<'_, Edge> {
        self.edge.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Caches of everything the controller reads from the API server.
pub struct Watched {
    /// Istio/Sluice objects, one store per kind.
    pub istio: Vec<(ApiResource, Store<DynamicObject>)>,
    /// Kubernetes Services.
    pub services: Store<Service>,
    /// EndpointSlices.
    pub slices: Store<EndpointSlice>,
    /// Pods.
    pub pods: Store<Pod>,
    /// Woken on every change of any cache.
    pub changes: Arc<Changes>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Watched {
    /// Starts every watch; the caches fill in the background.
    pub fn start(
        client: &kube::Client,
        debounce: Duration,
        pending: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        let changes = Arc::new(Changes::new(debounce, pending));
        let mut tasks = Vec::new();
        let mut istio = Vec::new();
        for ar in istio_resources() {
            let writer = Writer::<DynamicObject>::new(ar.clone());
            let store = writer.as_reader();
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            tasks.push(spawn(ar.kind.clone(), api, writer, changes.clone()));
            istio.push((ar, store));
        }
        let (services, writer) = reflector::store();
        tasks.push(spawn(
            "Service".into(),
            Api::all(client.clone()),
            writer,
            changes.clone(),
        ));
        let (slices, writer) = reflector::store();
        tasks.push(spawn(
            "EndpointSlice".into(),
            Api::all(client.clone()),
            writer,
            changes.clone(),
        ));
        let (pods, writer) = reflector::store();
        tasks.push(spawn(
            "Pod".into(),
            Api::all(client.clone()),
            writer,
            changes.clone(),
        ));
        Self {
            istio,
            services,
            slices,
            pods,
            changes,
            tasks,
        }
    }

    /// Waits until every cache holds a full list, naming the kinds still
    /// missing every `every` (a kind whose CRD is not installed never syncs).
    pub async fn wait_synced(&self, every: Duration) {
        loop {
            let mut missing = Vec::new();
            for (ar, store) in &self.istio {
                if !ready(store, every).await {
                    missing.push(ar.kind.clone());
                }
            }
            if !ready(&self.services, every).await {
                missing.push("Service".into());
            }
            if !ready(&self.slices, every).await {
                missing.push("EndpointSlice".into());
            }
            if !ready(&self.pods, every).await {
                missing.push("Pod".into());
            }
            if missing.is_empty() {
                return;
            }
            tracing::warn!(
                "waiting for the API server's lists of {} (are the CRDs in crds/ installed, and may the controller list them?)",
                missing.join(", ")
            );
        }
    }
}

async fn ready<K>(store: &Store<K>, wait: Duration) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    matches!(
        tokio::time::timeout(wait, store.wait_until_ready()).await,
        Ok(Ok(()))
    )
}

fn spawn<K>(
    kind: String,
    api: Api<K>,
    writer: Writer<K>,
    changes: Arc<Changes>,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    // Created up front so every kind shows 0 before its first failure.
    let restarts = RESTARTS
        .get_or_create(&KindLabels { kind: kind.clone() })
        .clone();
    tokio::spawn(async move {
        // Managed fields are most of an object's size and never read here.
        let events = watcher(api, watcher::Config::default())
            .modify(|o: &mut K| o.meta_mut().managed_fields = None);
        let stream = reflector::reflector(writer, events);
        let mut stream = std::pin::pin!(stream);
        // The watcher sends a request only when polled, so pausing between
        // polls is the backoff.
        let mut retry = Retry::new(watcher::DefaultBackoff::default());
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    retry.succeeded();
                    changes.signal();
                }
                Err(e) => {
                    restarts.inc();
                    let pause = retry.failed(&e);
                    tracing::warn!(%kind, ?pause, "watch failed (retrying): {e}");
                    if let Some(pause) = pause {
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }
    })
}

/// When to send the next list or watch request after one failed.
///
/// Without a pause a watcher retries at once: while the API server is down
/// each kind would spin, logging thousands of errors a second. The pauses
/// are kube-rs' default (client-go's: 0.8 s doubling to 30 s, jittered),
/// restarted by any success. The exception is the first "resource version
/// too old" (410) in a row: a restarted API server answers every resumed
/// watch with it, the watcher then relists, and pausing would only delay
/// that relist by the step the outage left the backoff at (12 s and more).
pub(crate) struct Retry<B> {
    backoff: B,
    expired_last: bool,
}

impl<B: Backoff> Retry<B> {
    /// A policy pausing by `backoff`.
    pub(crate) fn new(backoff: B) -> Self {
        Self {
            backoff,
            expired_last: false,
        }
    }

    /// A request succeeded: the next failure pauses by the first step.
    pub(crate) fn succeeded(&mut self) {
        self.backoff.reset();
        self.expired_last = false;
    }

    /// The pause before the next request after `err` (`None`: none).
    pub(crate) fn failed(&mut self, err: &watcher::Error) -> Option<Duration> {
        let expired = matches!(err, watcher::Error::WatchError(status) if status.code == 410);
        let relist_now = expired && !self.expired_last;
        self.expired_last = expired;
        if relist_now {
            None
        } else {
            self.backoff.next()
        }
    }
}

#[cfg(test)]
mod tests;
