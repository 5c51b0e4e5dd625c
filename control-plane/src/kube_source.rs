//! Kubernetes mode: reads Istio objects, Services, EndpointSlices and Pods
//! from the API server instead of a folder, and reports every Istio
//! object's verdict in its `status`.
//!
//! The watched objects are rendered as one YAML document per object into the
//! same `files` map `--config-dir` mode reads, so parsing, validation, keeping
//! the last good version and revisions are the same code in both modes.

use crate::debounce;
use crate::index::{Intake, MeshIndex, Rejection};
use crate::metrics::ControllerMetrics;
use crate::sync::SyncRegistry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod catalog;
pub mod status;
pub mod watch;

use catalog::{file_key, istio_document, pod_file_key, service_entry, slices_by_service};
use status::{Reconciled, StatusWriter, Verdict};
use watch::Watched;

/// Longest wait for a quiet API server, in debounce periods.
const MAX_DEBOUNCE_ROUNDS: u32 = 10;
/// How often `Reconciled` is re-judged (ACKs arrive without watch events).
const RECONCILED_RECHECK: Duration = Duration::from_secs(1);

/// File contents by name, as `Intake::ingest` takes them.
type Files = BTreeMap<String, Result<String, String>>;

/// Why the API server cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The kubeconfig file cannot be read or parsed.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong.
        source: kube::config::KubeconfigError,
    },
    /// No in-cluster or default configuration was found.
    #[error("Kubernetes client configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built (TLS, proxy settings).
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from a kubeconfig file, or (`None`) inferred the way `kubectl`
/// and in-cluster pods do: `$KUBECONFIG`, `~/.kube/config`, the service account.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client, KubeError> {
    Ok(kube::Client::try_from(client_config(kubeconfig).await?)?)
}

/// The client configuration [`connect`] uses, for callers that adjust it
/// (e.g. no retries for a one-shot command).
pub async fn client_config(kubeconfig: Option<&Path>) -> Result<kube::Config, KubeError> {
    Ok(match kubeconfig {
        Some(path) => {
            let err = |source| KubeError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(err)?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(err)?
        }
        None => kube::Config::infer().await?,
    })
}

/// Watches the API server and publishes a new [`MeshIndex`] on every change.
pub struct KubeSource {
    watched: Watched,
    statuses: StatusWriter,
    debounce: Duration,
    metrics: Arc<ControllerMetrics>,
    last_files: Option<Files>,
    sync: Option<Arc<SyncRegistry>>,
    /// Per object (file key): the generation last seen and the first index
    /// revision that included it, which `Reconciled` waits for.
    since: HashMap<String, (Option<i64>, u64)>,
    /// Per object (file key): the generation in the documents last built,
    /// which the published index holds. The watch caches may already hold a
    /// newer one: its status waits for the index that includes it.
    indexed: HashMap<String, Option<i64>>,
    /// Pods' WorkloadEntry documents, by the Pod's resourceVersion.
    pod_docs: Rendered<String>,
    /// Services' ServiceEntry documents, by the resourceVersions of the
    /// Service, its EndpointSlices and their Pods.
    service_docs: Rendered<Vec<String>>,
}

/// Rendered documents by namespace and name, with the versions they were
/// rendered from (`None`: the object stands for no document, e.g. a Pod
/// that is not ready): an object is rendered again only when one of them
/// changed, not on every event of any object.
#[derive(Debug)]
pub(crate) struct Rendered<V> {
    docs: HashMap<(String, String), (V, Option<Document>)>,
}

/// A rendered document, or why it could not be.
type Document = Result<String, String>;

impl<V> Default for Rendered<V> {
    fn default() -> Self {
        Self {
            docs: HashMap::new(),
        }
    }
}

impl<V: PartialEq> Rendered<V> {
    /// The document of `namespace/name`, rendered by `render` unless the one
    /// cached came from `version` (`None`: unknown, always rendered).
    pub(crate) fn get(
        &mut self,
        namespace: &str,
        name: &str,
        version: Option<V>,
        render: impl FnOnce() -> Option<serde_json::Value>,
    ) -> Option<Document> {
        let render = || render().map(|doc| serde_yaml::to_string(&doc).map_err(|e| e.to_string()));
        let Some(version) = version else {
            return render();
        };
        let key = (namespace.to_owned(), name.to_owned());
        match self.docs.get(&key) {
            Some((v, doc)) if *v == version => doc.clone(),
            _ => {
                let doc = render();
                self.docs.insert(key, (version, doc.clone()));
                doc
            }
        }
    }

    /// Forgets the objects not in `present`.
    pub(crate) fn retain(&mut self, present: &HashSet<(&str, &str)>) {
        self.docs
            .retain(|(ns, name), _| present.contains(&(ns.as_str(), name.as_str())));
    }

    /// How many objects are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.docs.len()
    }
}

impl KubeSource {
    /// Starts watching through `client`; statuses are written only while
    /// `leader` says true (see [`crate::leader`]).
    pub fn start(
        client: kube::Client,
        debounce: Duration,
        metrics: Arc<ControllerMetrics>,
        leader: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let writes = metrics.status_writes.clone();
        Self {
            watched: Watched::start(&client, debounce, metrics.config_pending.clone()),
            statuses: StatusWriter::new(client, leader, writes),
            debounce,
            metrics,
            last_files: None,
            sync: None,
            since: HashMap::new(),
            indexed: HashMap::new(),
            pod_docs: Rendered::default(),
            service_docs: Rendered::default(),
        }
    }

    /// Also writes each object's `Reconciled` condition: whether every proxy
    /// connected to `registry` applied it (re-checked every second).
    pub fn with_sync(mut self, registry: Arc<SyncRegistry>) -> Self {
        self.sync = Some(registry);
        self
    }

    /// Waits for the first full list of every kind, builds the first index
    /// and writes the statuses it implies.
    pub async fn load(&mut self, intake: &mut Intake) -> MeshIndex {
        self.watched.wait_synced(Duration::from_secs(10)).await;
        self.watched.changes.taken();
        let files = self.files();
        self.last_files = Some(files.clone());
        let index = intake.ingest(files, Instant::now(), &self.metrics);
        self.write_statuses(&index.rejected, index.revision).await;
        index
    }

    /// Publishes each changed index until `tx` is closed. On becoming
    /// leader, writes the statuses of the current index at once, so none is
    /// left stale by a replica that went away.
    pub async fn run(mut self, mut intake: Intake, tx: tokio::sync::watch::Sender<Arc<MeshIndex>>) {
        let changes = self.watched.changes.clone();
        let mut leader = Some(self.statuses.leadership());
        let mut recheck = tokio::time::interval(RECONCILED_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut keys = intake.key_set_changes();
        loop {
            let leadership = tokio::select! {
                _ = changes.notified() => None,
                // A fetched key set changed: the same objects, a new revision.
                () = crate::jwks::changed(&mut keys) => {
                    if tx.is_closed() {
                        return;
                    }
                    let files = self.last_files.clone().unwrap_or_else(|| self.files());
                    let index = intake.ingest(files, Instant::now(), &self.metrics);
                    let changed = {
                        let current = tx.borrow();
                        index.changed_from(&current)
                    };
                    if let Some(index) = changed {
                        tracing::info!(revision = index.revision, "RequestAuthentication key sets changed");
                        let _ = tx.send(Arc::new(index));
                    }
                    continue;
                }
                // Proxies ACK without any watch event: re-judge `Reconciled`.
                _ = recheck.tick(), if self.sync.is_some() => {
                    if tx.is_closed() {
                        return;
                    }
                    let (rejected, revision) = {
                        let current = tx.borrow();
                        (current.rejected.clone(), current.revision)
                    };
                    self.write_statuses(&rejected, revision).await;
                    continue;
                }
                changed = async {
                    match leader.as_mut() {
                        Some(l) => l.changed().await.map(|()| *l.borrow_and_update()),
                        None => std::future::pending().await,
                    }
                } => match changed {
                    Ok(leading) => Some(leading),
                    // The elector is gone (shutting down, or election off):
                    // leadership stays as it last was.
                    Err(_) => {
                        leader = None;
                        continue;
                    }
                },
            };
            if tx.is_closed() {
                return;
            }
            match leadership {
                // New leader: take the same path as a change, so objects
                // changed meanwhile are judged before their status is
                // written, and every status is written even if none changed.
                Some(true) => self.statuses.forget_all(),
                Some(false) => continue,
                None => {}
            }
            let seen = Instant::now();
            // A watch event carries a whole object, so the first change after
            // a quiet period is published at once. The rest of its burst
            // waits for quiet (`kubectl apply -f` of a folder is many writes
            // in a row); under constant churn, for MAX_DEBOUNCE_ROUNDS at most.
            // The watches note every event's time as it comes (see
            // `watch::Changes`): one that came during the last ingest or
            // status writes belongs to that burst, though looked at only now.
            let leading = leadership.is_none() && changes.edge().leading();
            if !leading {
                for _ in 0..MAX_DEBOUNCE_ROUNDS {
                    if tokio::time::timeout(self.debounce, changes.notified())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
            changes.taken();
            let files = self.files();
            // Status writes (ours included) come back as watch events
            // without changing any document: nothing to ingest then.
            if self.last_files.as_ref() != Some(&files) {
                self.last_files = Some(files.clone());
                let index = intake.ingest(files, seen, &self.metrics);
                let changed = {
                    let current = tx.borrow();
                    index.changed_from(&current)
                };
                changes.edge().published();
                if let Some(index) = changed {
                    tracing::info!(
                        revision = index.revision,
                        edge = debounce::label(leading),
                        "configuration changed"
                    );
                    self.metrics.record_publish(leading);
                    let _ = tx.send(Arc::new(index));
                }
            }
            let (rejected, revision) = {
                let current = tx.borrow();
                (current.rejected.clone(), current.revision)
            };
            self.write_statuses(&rejected, revision).await;
        }
    }

    /// Every watched object as a document.
    fn files(&mut self) -> Files {
        let mut files = Files::new();
        // Names of the users' WorkloadEntries, which Pods' must not shadow.
        let mut workload_entries = HashSet::new();
        self.indexed.clear();
        for k in self.watched.istio_present() {
            for object in k.store.state() {
                let (Some(ns), Some(name)) = (&object.metadata.namespace, &object.metadata.name)
                else {
                    continue;
                };
                if k.ar.kind == "WorkloadEntry" {
                    workload_entries.insert((ns.clone(), name.clone()));
                }
                let key = file_key(&k.ar.kind, ns, name);
                self.indexed.insert(key.clone(), object.metadata.generation);
                files.insert(key, istio_document(&object));
            }
        }
        let pods = self.watched.pods.state();
        let pod_index: catalog::PodIndex<'_> = pods
            .iter()
            .filter_map(|p| {
                let m = &p.metadata;
                Some(((m.namespace.as_deref()?, m.name.as_deref()?), p.as_ref()))
            })
            .collect();
        for (&(ns, name), pod) in &pod_index {
            // A user's WorkloadEntry of the same name wins: the Pod's is left out.
            if workload_entries.contains(&(ns.to_owned(), catalog::pod_workload_entry_name(name))) {
                continue;
            }
            let version = pod.metadata.resource_version.clone();
            if let Some(text) = self
                .pod_docs
                .get(ns, name, version, || catalog::workload_entry(pod))
            {
                files.insert(pod_file_key(ns, name), text);
            }
        }
        self.pod_docs
            .retain(&pod_index.keys().copied().collect::<HashSet<_>>());
        let slices = self.watched.slices.state();
        let by_service = slices_by_service(&slices);
        let services = self.watched.services.state();
        let mut present = HashSet::new();
        for svc in &services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            present.insert((ns.as_str(), name.as_str()));
            let own = by_service
                .get(&(ns.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            let version = catalog::service_entry_versions(svc, own, &pod_index);
            if let Some(text) = self
                .service_docs
                .get(ns, name, version, || service_entry(svc, own, &pod_index))
            {
                files.insert(file_key("Service", ns, name), text);
            }
        }
        self.service_docs.retain(&present);
        files
    }

    /// Brings every Istio object's `Accepted` condition in line with
    /// `rejected`, and its `Reconciled` condition with what the proxies
    /// applied; `revision` is the index revision now published.
    async fn write_statuses(&mut self, rejected: &[Rejection], revision: u64) {
        let mut by_file: BTreeMap<&str, Vec<&Rejection>> = BTreeMap::new();
        for r in rejected {
            by_file.entry(r.file.as_str()).or_default().push(r);
        }
        let view = self.sync.as_ref().map(|s| s.view(revision));
        let mut present = HashSet::new();
        let mut files = HashSet::new();
        for k in self.watched.istio_present() {
            let (ar, store) = (&k.ar, &k.store);
            for object in store.state() {
                let (Some(ns), Some(name)) = (&object.metadata.namespace, &object.metadata.name)
                else {
                    continue;
                };
                present.insert((format!("{}/{ns}", ar.kind), name.clone()));
                let file = file_key(&ar.kind, ns, name);
                let generation = object.metadata.generation;
                if self.indexed.get(&file) != Some(&generation) {
                    // Changed since the published index was built: the
                    // index to come judges it, and its status waits for it.
                    files.insert(file);
                    continue;
                }
                let own = by_file.get(file.as_str()).into_iter().flatten().copied();
                let mut verdict = Verdict::from_rejections(own, generation);
                let since = self
                    .since
                    .entry(file.clone())
                    .or_insert((generation, revision));
                if since.0 != generation {
                    *since = (generation, revision);
                }
                if let Some(view) = &view {
                    verdict.reconciled = Some(Reconciled::judge(verdict.accepted, since.1, view));
                }
                files.insert(file);
                self.statuses.reconcile(ar, &object, verdict).await;
            }
        }
        self.statuses.retain(|k| present.contains(k));
        self.since.retain(|k, _| files.contains(k));
    }
}

#[cfg(test)]
mod tests;
