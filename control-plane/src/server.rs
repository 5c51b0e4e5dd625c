//! The config stream (`sluice.config.v1.ConfigDiscovery`): a complete snapshot
//! on connect, a new one per revision, ACK/NACK recorded per proxy.

use crate::index::MeshIndex;
use crate::metrics::{ControllerMetrics, OutcomeLabels};
use crate::sync::SyncRegistry;
use crate::translate::{ProxyIdentity, translate};
use futures::Stream;
use prost::Message;
use sluice_api::config::config_discovery_server::ConfigDiscovery;
use sluice_api::config::{ProxyMessage, Snapshot, proxy_message};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Serves snapshots from the latest index.
#[derive(Clone)]
pub struct ConfigServer {
    index: watch::Receiver<Arc<MeshIndex>>,
    registry: Arc<SyncRegistry>,
    metrics: Arc<ControllerMetrics>,
}

impl ConfigServer {
    /// Creates the service.
    pub fn new(
        index: watch::Receiver<Arc<MeshIndex>>,
        registry: Arc<SyncRegistry>,
        metrics: Arc<ControllerMetrics>,
    ) -> Self {
        Self {
            index,
            registry,
            metrics,
        }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<Snapshot, Status>> + Send>>;

#[tonic::async_trait]
impl ConfigDiscovery for ConfigServer {
    type StreamStream = SnapshotStream;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<SnapshotStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream closed before hello"))?;
        let node = match first.kind {
            Some(proxy_message::Kind::Hello(node)) => node,
            _ => return Err(Status::invalid_argument("the first message must be hello")),
        };
        let who = ProxyIdentity::try_from(node)
            .map_err(|e| Status::invalid_argument(format!("hello: {e}")))?;
        tracing::info!(proxy = %who.id, "proxy connected");
        let conn = self.registry.connect(&who);
        self.metrics.connected.inc();

        let (tx, rx) = mpsc::channel(2);
        let push = tokio::spawn(push_loop(
            who.clone(),
            conn,
            self.index.clone(),
            tx,
            self.registry.clone(),
            self.metrics.clone(),
        ));
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(msg)) => match msg.kind {
                        Some(proxy_message::Kind::Ack(ack)) => {
                            metrics
                                .responses
                                .get_or_create(&OutcomeLabels { outcome: "ack" })
                                .inc();
                            if let Some(took) = registry.acked(conn, &ack.version) {
                                metrics.convergence.observe(took.as_secs_f64());
                            }
                        }
                        Some(proxy_message::Kind::Nack(nack)) => {
                            metrics
                                .responses
                                .get_or_create(&OutcomeLabels { outcome: "nack" })
                                .inc();
                            tracing::warn!(proxy = %who.id, version = %nack.version, "proxy rejected config: {}", nack.error);
                            registry.nacked(conn, &nack.version, &nack.error);
                        }
                        Some(proxy_message::Kind::Hello(_)) | None => {
                            tracing::debug!(proxy = %who.id, "ignoring repeated hello");
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(proxy = %who.id, "stream error: {e}");
                        break;
                    }
                }
            }
            push.abort();
            registry.disconnect(conn);
            metrics.connected.dec();
            tracing::info!(proxy = %who.id, "proxy disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

async fn push_loop(
    who: ProxyIdentity,
    conn: u64,
    mut index: watch::Receiver<Arc<MeshIndex>>,
    tx: mpsc::Sender<Result<Snapshot, Status>>,
    registry: Arc<SyncRegistry>,
    metrics: Arc<ControllerMetrics>,
) {
    let mut last_sent: Option<u64> = None;
    loop {
        let current = index.borrow_and_update().clone();
        if last_sent != Some(current.revision) {
            let snapshot = Snapshot {
                version: current.revision.to_string(),
                delta: None,
                config: Some(translate(&current, &who)),
            };
            metrics.pushes.inc();
            metrics.push_bytes.inc_by(snapshot.encoded_len() as u64);
            // The first snapshot of a stream is not a change being propagated.
            let changed_at = last_sent.map(|_| current.changed_at);
            registry.sent(conn, &snapshot.version, changed_at);
            if tx.send(Ok(snapshot)).await.is_err() {
                return;
            }
            last_sent = Some(current.revision);
        }
        tokio::select! {
            changed = index.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
        }
    }
}
