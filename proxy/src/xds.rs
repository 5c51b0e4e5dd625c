//! The config stream: connects to the controller, applies each snapshot
//! atomically (ACK) or keeps the last good one (NACK), and reconnects forever
//! with jittered exponential backoff while the last config keeps serving.

use std::sync::Arc;
use std::time::Duration;

use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{Ack, Nack, Node, ProxyMessage, Snapshot, proxy_message};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::config::{Identity, Settings};
use crate::metrics::Metrics;
use crate::model::Running;

#[cfg(test)]
mod tests;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The delay after `backoff`: doubled, capped at `BACKOFF_MAX`.
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF_MAX)
}

/// A wait of 50–100% of `backoff`: jitter keeps a fleet of proxies from
/// reconnecting in lockstep after a controller restart.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// Why a config stream session ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bad controller address {0:?}")]
    Address(String),
    #[error("cannot connect to the controller: {0}")]
    Connect(#[source] tonic::transport::Error),
    #[error("config stream failed: {0}")]
    Status(#[from] tonic::Status),
    #[error("config stream closed by the controller")]
    Closed,
}

fn hello(id: &Identity) -> ProxyMessage {
    ProxyMessage {
        kind: Some(proxy_message::Kind::Hello(Node {
            id: id.id.clone(),
            workload: id.workload.clone(),
            namespace: id.namespace.clone(),
            service_account: id.service_account.clone(),
            labels: id
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ips: vec![id.ip.to_string()],
            proxy_version: env!("CARGO_PKG_VERSION").to_owned(),
            trust_domain: id.trust_domain.clone(),
        })),
    }
}

/// Applies `snapshot` to `config` when valid; returns the reply for the controller.
pub fn apply(
    snapshot: &Snapshot,
    config: &watch::Sender<Option<Arc<Running>>>,
    metrics: &Metrics,
) -> ProxyMessage {
    match Running::try_from(snapshot) {
        Ok(mut running) => {
            if let Some(prev) = config.borrow().as_ref() {
                running.config.inherit_balancer_state(&prev.config);
            }
            config.send_replace(Some(Arc::new(running)));
            metrics.config_outcome(true);
            metrics.config_applied(&snapshot.version);
            tracing::info!(version = %snapshot.version, "config applied");
            ProxyMessage {
                kind: Some(proxy_message::Kind::Ack(Ack {
                    version: snapshot.version.clone(),
                })),
            }
        }
        Err(e) => {
            metrics.config_outcome(false);
            tracing::warn!(version = %snapshot.version, error = %e, "config rejected");
            ProxyMessage {
                kind: Some(proxy_message::Kind::Nack(Nack {
                    version: snapshot.version.clone(),
                    error: e.to_string(),
                })),
            }
        }
    }
}

/// Keeps a config stream open until shutdown.
pub async fn run(
    settings: Settings,
    config: watch::Sender<Option<Arc<Running>>>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = crate::listener::shutdown_requested(shutdown);
    tokio::pin!(stop);
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut connected = false;
        let session = session(&settings, &config, &metrics, &mut connected);
        let result = tokio::select! {
            _ = &mut stop => return,
            r = session => r,
        };
        metrics.config_connected.set(0);
        if let Err(e) = result {
            tracing::warn!(controller = %settings.controller, error = %e, "config stream down");
        }
        if connected {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(jittered(backoff)) => {}
        }
        backoff = next_backoff(backoff);
    }
}

async fn session(
    settings: &Settings,
    config: &watch::Sender<Option<Arc<Running>>>,
    metrics: &Metrics,
    connected: &mut bool,
) -> Result<(), StreamError> {
    let endpoint = tonic::transport::Endpoint::from_shared(settings.controller.clone())
        .map_err(|_| StreamError::Address(settings.controller.clone()))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.map_err(StreamError::Connect)?;
    let mut client = ConfigDiscoveryClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    // The receiver is alive (held below), so this cannot fail.
    let _ = tx.send(hello(&settings.identity)).await;
    let mut snapshots = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    *connected = true;
    metrics.config_connected.set(1);
    tracing::info!(controller = %settings.controller, "config stream connected");
    while let Some(snapshot) = snapshots.message().await? {
        let reply = apply(&snapshot, config, metrics);
        if tx.send(reply).await.is_err() {
            return Err(StreamError::Closed);
        }
    }
    Err(StreamError::Closed)
}
