//! What every listener shares: settings, the running config (swapped atomically
//! by the config stream), metrics, upstream pools and the shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Settings;
use crate::identity::CredentialsRx;
use crate::metrics::Metrics;
use crate::model::{Running, Text, WorkloadMeta};
use crate::telemetry::{Sinks, Workers};
use crate::tls::MeshTls;
use crate::upstream::Pools;

/// The running config as the readers see it; `None` until the first snapshot.
pub type ConfigRx = watch::Receiver<Option<Arc<Running>>>;

/// State shared by all listeners.
pub struct Shared {
    pub settings: Settings,
    pub config: ConfigRx,
    /// Mutual TLS with this workload's certificate and the mesh trust bundle
    /// (both directions), read from the credentials watch per handshake.
    pub tls: Arc<MeshTls>,
    pub metrics: Arc<Metrics>,
    /// Connections to other workloads (peer sidecars and external services).
    pub pools: Pools,
    /// Connections to the local application.
    pub app_pools: Pools,
    /// This workload's metric labels from flags, until the controller provides them.
    pub flag_meta: WorkloadMeta,
    /// Queues to the span exporter and the access-log writer.
    pub telemetry: Arc<Sinks>,
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Builds the shared state, and the telemetry workers the caller spawns
    /// ([`Workers::spawn`]) once a runtime runs.
    pub fn new(
        settings: Settings,
        config: ConfigRx,
        credentials: CredentialsRx,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, Workers) {
        let id = &settings.identity;
        let label = |k: &str| id.labels.get(k).map(String::as_str).unwrap_or("");
        let app = if label("app").is_empty() {
            label("app.kubernetes.io/name")
        } else {
            label("app")
        };
        let version = if label("version").is_empty() {
            "latest"
        } else {
            label("version")
        };
        let flag_meta = WorkloadMeta {
            workload: id.workload.as_str().into(),
            namespace: id.namespace.as_str().into(),
            app: Text::from(if app.is_empty() {
                id.workload.as_str()
            } else {
                app
            }),
            version: version.into(),
            principal: id.principal().into(),
            cluster: "Kubernetes".into(),
        };
        let source = SocketAddr::new(id.ip, 0);
        let tls = Arc::new(MeshTls::new(credentials, Arc::clone(&metrics)));
        // Istio's node id form: sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local.
        let node_id = format!(
            "sidecar~{}~{}~{}.svc.cluster.local",
            id.ip, id.id, id.namespace
        );
        let (sinks, workers) = Sinks::new(
            metrics.telemetry.clone(),
            node_id.into(),
            id.trust_domain.as_str().into(),
        );
        let shared = Shared {
            pools: Pools::new(settings.connect_timeout, source, Some(Arc::clone(&tls))),
            app_pools: Pools::new(settings.connect_timeout, source, None),
            settings,
            config,
            tls,
            metrics,
            flag_meta,
            telemetry: Arc::new(sinks),
            shutdown,
        };
        (shared, workers)
    }

    /// The running config, read once per request so a request finishes on it.
    pub fn current(&self) -> Option<Arc<Running>> {
        self.config.borrow().clone()
    }

    /// This workload's metric labels: the controller's view when it sent one.
    pub fn self_meta<'a>(&'a self, running: Option<&'a Running>) -> &'a WorkloadMeta {
        running
            .and_then(|r| r.config.self_meta.as_ref())
            .unwrap_or(&self.flag_meta)
    }
}
