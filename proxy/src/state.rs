//! What every listener shares: settings, the running config (swapped atomically
//! by the config stream), metrics, upstream pools and the shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Settings;
use crate::identity::CredentialsRx;
use crate::metrics::Metrics;
use crate::model::{Running, Text, WorkloadMeta};
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
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// Builds the shared state.
    pub fn new(
        settings: Settings,
        config: ConfigRx,
        credentials: CredentialsRx,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
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
        Shared {
            pools: Pools::new(settings.connect_timeout, source, Some(Arc::clone(&tls))),
            app_pools: Pools::new(settings.connect_timeout, source, None),
            settings,
            config,
            tls,
            metrics,
            flag_meta,
            shutdown,
        }
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
