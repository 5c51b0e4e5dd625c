//! One reflector (watch + local cache) per kind, each waking the source's
//! loop on every change, and retrying with a backoff when the API server
//! is away (counted in `sluice_kube_watch_restarts_total{kind}`).
//!
//! An Istio kind whose CRD is not installed (the API server answers 404 Not
//! Found) has no objects: it counts as listed and empty, so the controller
//! starts without it, and is shown in `sluice_kube_kind_missing{kind}`. Its
//! watch keeps retrying, and lists the kind once the CRD is installed.

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
use prometheus_client::metrics::gauge::Gauge;
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

/// 1 per Istio kind whose CRD the API server does not serve (404 Not
/// Found); process-wide for the same reason as [`restarts`].
static MISSING: LazyLock<Family<KindLabels, Gauge>> = LazyLock::new(Family::default);

/// Istio kinds whose CRD is not installed: 1 while the last list or watch
/// request of the kind was answered 404 Not Found, 0 once it lists.
pub fn missing() -> &'static Family<KindLabels, Gauge> {
    &MISSING
}

/// The name of the CRD defining `ar`, e.g. `gateways.networking.istio.io`.
pub fn crd_name(ar: &ApiResource) -> String {
    format!("{}.{}", ar.plural, ar.group)
}

/// Whether `err` says the API server does not serve the kind at all (its CRD
/// is not installed, or was deleted): a 404 Not Found, from the list, the
/// watch request or the watch stream. Anything else (403 Forbidden, a
/// timeout, a refused connection) says nothing about the kind's objects.
pub(crate) fn is_not_found(err: &watcher::Error) -> bool {
    match err {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => {
            matches!(e, kube::Error::Api(status) if status.code == 404)
        }
        watcher::Error::WatchError(status) => status.code == 404,
        watcher::Error::NoResourceVersion => false,
    }
}

/// Whether an Istio kind's CRD is missing, as its watch last found: set by
/// the watch task, read by [`Watched::wait_synced`] and the source (which
/// then ignores whatever the kind's cache still holds).
#[derive(Clone, Debug)]
pub struct Presence {
    missing: Arc<tokio::sync::watch::Sender<bool>>,
    gauge: Gauge,
    kind: String,
    crd: String,
    group_version: String,
    version: String,
    plural: String,
}

impl Presence {
    /// The kind `ar`, not known to be missing (its gauge shows 0).
    pub fn new(ar: &ApiResource) -> Self {
        let gauge = MISSING
            .get_or_create(&KindLabels {
                kind: ar.kind.clone(),
            })
            .clone();
        gauge.set(0);
        Self {
            missing: Arc::new(tokio::sync::watch::Sender::new(false)),
            gauge,
            kind: ar.kind.clone(),
            crd: crd_name(ar),
            group_version: ar.api_version.clone(),
            version: ar.version.clone(),
            plural: ar.plural.clone(),
        }
    }

    /// Whether the CRD was missing at the last request.
    pub fn is_missing(&self) -> bool {
        *self.missing.borrow()
    }

    /// The API server answered 404: warns (once per disappearance) and
    /// returns whether this is news.
    pub(crate) fn absent(&self) -> bool {
        let news = self
            .missing
            .send_if_modified(|m| !std::mem::replace(m, true));
        if news {
            self.gauge.set(1);
            tracing::warn!(
                kind = %self.kind,
                "the API server does not serve {} of {} (CRD {} not installed, or without version {}): no {} can exist, so the configuration is built without any; install it from crds/ (the watch retries, and picks the kind up within 30 s of its CRD)",
                self.plural,
                self.group_version,
                self.crd,
                self.version,
                self.kind,
            );
        }
        news
    }

    /// The kind listed or changed: its CRD is there.
    pub(crate) fn present(&self) {
        if self
            .missing
            .send_if_modified(|m| std::mem::replace(m, false))
        {
            self.gauge.set(0);
            tracing::info!(kind = %self.kind, "CRD {} is installed: watching it", self.crd);
        }
    }

    /// Returns once the CRD is known to be missing.
    async fn until_missing(&self) {
        let mut rx = self.missing.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail here.
        let _ = rx.wait_for(|m| *m).await;
    }
}

/// One Istio kind's cache.
pub struct IstioKind {
    /// The kind.
    pub ar: ApiResource,
    /// Its objects (stale, to be ignored, while the CRD is missing).
    pub store: Store<DynamicObject>,
    /// Whether its CRD is installed.
    pub presence: Presence,
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
    pub istio: Vec<IstioKind>,
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
            let presence = Presence::new(&ar);
            tasks.push(spawn(
                ar.kind.clone(),
                api,
                writer,
                changes.clone(),
                Some(presence.clone()),
            ));
            istio.push(IstioKind {
                ar,
                store,
                presence,
            });
        }
        let (services, writer) = reflector::store();
        tasks.push(spawn(
            "Service".into(),
            Api::all(client.clone()),
            writer,
            changes.clone(),
            None,
        ));
        let (slices, writer) = reflector::store();
        tasks.push(spawn(
            "EndpointSlice".into(),
            Api::all(client.clone()),
            writer,
            changes.clone(),
            None,
        ));
        let (pods, writer) = reflector::store();
        tasks.push(spawn(
            "Pod".into(),
            Api::all(client.clone()),
            writer,
            changes.clone(),
            None,
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

    /// The Istio kinds whose CRD is installed (as far as their watches
    /// know): the caches of the others are ignored.
    pub fn istio_present(&self) -> impl Iterator<Item = &IstioKind> {
        self.istio.iter().filter(|k| !k.presence.is_missing())
    }

    /// Waits until every cache holds a full list, or (Istio kinds) its CRD
    /// is known not to be installed, naming the kinds still waited for
    /// every `every`. A kind the controller may not list (403) is waited for.
    pub async fn wait_synced(&self, every: Duration) {
        loop {
            let mut waiting = Vec::new();
            for k in &self.istio {
                if !synced(&k.store, Some(&k.presence), every).await {
                    waiting.push(k.ar.kind.clone());
                }
            }
            if !synced(&self.services, None, every).await {
                waiting.push("Service".into());
            }
            if !synced(&self.slices, None, every).await {
                waiting.push("EndpointSlice".into());
            }
            if !synced(&self.pods, None, every).await {
                waiting.push("Pod".into());
            }
            if waiting.is_empty() {
                let missing: Vec<String> = self
                    .istio
                    .iter()
                    .filter(|k| k.presence.is_missing())
                    .map(|k| crd_name(&k.ar))
                    .collect();
                if !missing.is_empty() {
                    tracing::warn!(
                        "starting without the CRDs {} (not installed: their kinds have no objects until they are)",
                        missing.join(", ")
                    );
                }
                return;
            }
            tracing::warn!(
                "waiting for the API server's lists of {} (may the controller list them? see `sluice_kube_watch_restarts_total` and the watch errors above)",
                waiting.join(", ")
            );
        }
    }
}

/// Whether `store` holds a full list, or `presence` says its CRD is missing,
/// within `wait`.
pub(crate) async fn synced<K>(store: &Store<K>, presence: Option<&Presence>, wait: Duration) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let listed = async {
        // Err: the writer is gone (the task ended); not listed, ever.
        if store.wait_until_ready().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let absent = async {
        match presence {
            Some(p) => p.until_missing().await,
            None => std::future::pending().await,
        }
    };
    let either = async {
        tokio::select! {
            () = listed => {}
            () = absent => {}
        }
    };
    tokio::time::timeout(wait, either).await.is_ok()
}

fn spawn<K>(
    kind: String,
    api: Api<K>,
    writer: Writer<K>,
    changes: Arc<Changes>,
    presence: Option<Presence>,
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
                // A (re)list starts: no request has succeeded yet (it comes
                // before every retried list), and no cache changes.
                Ok(watcher::Event::Init) => {}
                Ok(_) => {
                    retry.succeeded();
                    if let Some(p) = &presence {
                        p.present();
                    }
                    changes.signal();
                }
                Err(e) => {
                    restarts.inc();
                    let pause = retry.failed(&e);
                    match &presence {
                        Some(p) if is_not_found(&e) => {
                            // The source ignores this kind's cache from now on.
                            if p.absent() {
                                changes.signal();
                            }
                            tracing::debug!(%kind, ?pause, "CRD not installed (retrying): {e}");
                        }
                        _ => tracing::warn!(%kind, ?pause, "watch failed (retrying): {e}"),
                    }
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
