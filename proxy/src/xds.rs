//! The config stream: connects to the controller (over TLS with a bearer
//! token for `https://`), turns each snapshot or delta into a complete config,
//! applies it atomically (ACK) or keeps the last good one (NACK), and
//! reconnects forever with jittered backoff while the last config keeps serving.

use std::sync::Arc;
use std::time::Duration;

use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{Ack, Nack, Node, ProxyConfig, ProxyMessage, Snapshot, proxy_message};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Endpoint};

use crate::config::{Identity, Settings};
use crate::metrics::Metrics;
use crate::model::Running;

pub mod channel;
pub mod delta;
#[cfg(test)]
mod tests;

/// HTTP/2 receive window per stream: a complete config (a few hundred KB in
/// a large mesh) arrives in one flight instead of 64 KiB round trips.
const STREAM_WINDOW: u32 = 1 << 20;
/// HTTP/2 receive window of the connection (it carries one stream).
const CONNECTION_WINDOW: u32 = 2 << 20;

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
    #[error(transparent)]
    Channel(#[from] channel::ChannelError),
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

/// Why a complete config does not convert (the model's own error type).
type InvalidConfig = <Running as TryFrom<&'static Snapshot>>::Error;

/// Why a snapshot was refused; the NACK carries this text.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The delta does not fit the config this stream applied last.
    #[error(transparent)]
    Delta(#[from] delta::DeltaError),
    /// The (complete or rebuilt) config does not validate.
    #[error(transparent)]
    Invalid(#[from] InvalidConfig),
    /// A snapshot must be one or the other.
    #[error("snapshot {0} carries both a config and a delta")]
    Both(String),
}

/// The last configuration applied on this stream: the base of the next delta.
#[derive(Debug, Default)]
pub struct Applied(Option<(String, ProxyConfig)>);

impl Applied {
    /// Version of the last applied configuration.
    pub fn version(&self) -> Option<&str> {
        self.0.as_ref().map(|(v, _)| v.as_str())
    }
}

/// The complete configuration `snapshot` stands for, validated and converted.
fn resolve(snapshot: Snapshot, last: &Applied) -> Result<(Running, ProxyConfig), Refused> {
    let Snapshot {
        version,
        config,
        delta,
    } = snapshot;
    let config = match (config, delta) {
        (Some(_), Some(_)) => return Err(Refused::Both(version)),
        (_, Some(d)) => match &last.0 {
            Some((applied, base)) => Some(delta::apply(applied, base, &d)?),
            None => {
                return Err(delta::DeltaError::NoBase {
                    base: d.base_version,
                }
                .into());
            }
        },
        (config, None) => config,
    };
    let complete = Snapshot {
        version,
        config,
        delta: None,
    };
    let running = Running::try_from(&complete)?;
    // `try_from` refuses a snapshot without a config, so this is present.
    Ok((running, complete.config.unwrap_or_default()))
}

/// Applies `snapshot` (complete, or a delta on `last`) to `config` when
/// valid; returns the reply for the controller.
pub fn apply(
    snapshot: Snapshot,
    last: &mut Applied,
    config: &watch::Sender<Option<Arc<Running>>>,
    metrics: &Metrics,
) -> ProxyMessage {
    let version = snapshot.version.clone();
    let kind = if snapshot.delta.is_some() {
        "delta"
    } else {
        "full"
    };
    match resolve(snapshot, last) {
        Ok((mut running, complete)) => {
            if let Some(prev) = config.borrow().as_ref() {
                running.config.inherit_balancer_state(&prev.config);
            }
            metrics.set_disabled(running.config.telemetry.disabled_metrics);
            metrics.set_tags(running.config.telemetry.metric_tags.clone());
            config.send_replace(Some(Arc::new(running)));
            last.0 = Some((version.clone(), complete));
            metrics.config_outcome(true);
            metrics.config_applied(&version);
            tracing::info!(%version, kind, "config applied");
            ProxyMessage {
                kind: Some(proxy_message::Kind::Ack(Ack { version })),
            }
        }
        Err(e) => {
            metrics.config_outcome(false);
            tracing::warn!(%version, kind, error = %e, "config rejected");
            ProxyMessage {
                kind: Some(proxy_message::Kind::Nack(Nack {
                    version,
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
    let (endpoint, token) = endpoint(settings).await?;
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect()
        .await
        .map_err(StreamError::Connect)?;
    let mut client = ConfigDiscoveryClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    // The receiver is alive (held below), so this cannot fail.
    let _ = tx.send(hello(&settings.identity)).await;
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", token);
    }
    let mut snapshots = client.stream(request).await?.into_inner();
    *connected = true;
    metrics.config_connected.set(1);
    tracing::info!(controller = %settings.controller, "config stream connected");
    // A new stream starts with a complete config, so deltas never span streams.
    let mut last = Applied::default();
    while let Some(snapshot) = snapshots.message().await? {
        let reply = apply(snapshot, &mut last, config, metrics);
        if tx.send(reply).await.is_err() {
            return Err(StreamError::Closed);
        }
    }
    Err(StreamError::Closed)
}

/// The endpoint for `--controller` and, over TLS, the token to present.
/// Both files are read per connection: roots and projected tokens rotate.
async fn endpoint(
    settings: &Settings,
) -> Result<
    (
        Endpoint,
        Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ),
    StreamError,
> {
    let address = settings.controller.as_str();
    if !address.starts_with("https://") {
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|_| StreamError::Address(address.to_owned()))?;
        return Ok((endpoint, None));
    }
    let auth = &settings.controller_auth;
    let root = auth.root.as_deref().ok_or(channel::ChannelError::NoRoots {
        address: address.to_owned(),
    })?;
    let pem = channel::read_pem(root).await?;
    let endpoint = channel::tls_endpoint(address, vec![Certificate::from_pem(pem)])?;
    let token = match &auth.token_file {
        Some(path) => Some(channel::bearer(path).await?),
        None => None,
    };
    Ok((endpoint, token))
}
