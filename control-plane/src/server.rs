//! The config stream (`sluice.config.v1.ConfigDiscovery`): a complete config
//! on connect and after a NACK, deltas after ACKs, state recorded per proxy.
//! On the TLS listener the caller's bearer token must match its hello.
//! Served by a hand-written gRPC service (see `grpc`) so that complete
//! configs go out as shared pre-encoded bytes.

pub mod delta;
pub mod frame;
mod grpc;
pub mod half;
mod shared;
mod stream;
#[cfg(test)]
mod tests;

use crate::ca::Authenticator;
use crate::ca::authn::bearer_token;
use crate::index::MeshIndex;
use crate::metrics::{ControllerMetrics, StreamAuthLabels};
use crate::sync::SyncRegistry;
use crate::translate::ProxyIdentity;
use frame::EncodedSnapshot;
use sluice_api::config::{ProxyMessage, proxy_message};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Status, Streaming};

pub use shared::{Base, OwnParts, ProxyView, Sharing};

/// HTTP/2 receive windows for config streams (both ends). At h2's default
/// 64 KiB a 228 KB complete config needs several round trips of
/// WINDOW_UPDATEs; 1 MiB per stream lets it go in one flight.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// Connection-level window: one config stream per connection, plus headroom.
pub const CONNECTION_WINDOW: u32 = 2 << 20;
/// Keepalive pings on config connections.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

/// Serves config streams from the latest index.
#[derive(Clone)]
pub struct ConfigServer {
    index: watch::Receiver<Arc<MeshIndex>>,
    registry: Arc<SyncRegistry>,
    metrics: Arc<ControllerMetrics>,
    sharing: Arc<Sharing>,
    authn: Option<Authenticator>,
}

impl ConfigServer {
    /// Creates the service; it accepts any caller until [`Self::authenticated`].
    pub fn new(
        index: watch::Receiver<Arc<MeshIndex>>,
        registry: Arc<SyncRegistry>,
        metrics: Arc<ControllerMetrics>,
    ) -> Self {
        Self {
            index,
            registry,
            metrics,
            sharing: Arc::new(Sharing::default()),
            authn: None,
        }
    }

    /// The same service (sharing its state) requiring a bearer token whose
    /// identity is the hello's namespace and service account.
    pub fn authenticated(&self, authn: Authenticator) -> Self {
        Self {
            authn: Some(authn),
            ..self.clone()
        }
    }

    fn refuse(&self, reason: &'static str, status: Status) -> Status {
        self.metrics
            .stream_auth_failures
            .get_or_create(&StreamAuthLabels { reason })
            .inc();
        tracing::info!(reason, "refused a config stream: {}", status.message());
        status
    }

    /// The (namespace, service account) the caller's token proves, when required.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Option<(String, String)>, Status> {
        let Some(authn) = &self.authn else {
            return Ok(None);
        };
        let token = bearer_token(request.metadata())
            .map_err(|why| self.refuse("unauthenticated", Status::unauthenticated(why)))?;
        match authn.authenticate(token).await {
            Ok(who) => Ok(Some(who)),
            Err(e) if e.is_unavailable() => {
                Err(self.refuse("unavailable", Status::unavailable(e.to_string())))
            }
            Err(e) => Err(self.refuse("unauthenticated", Status::unauthenticated(e.to_string()))),
        }
    }
}

impl ConfigServer {
    /// Accepts a config stream: checks the caller and its hello, then starts
    /// the task that feeds the returned channel with gRPC messages.
    async fn open(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<mpsc::Receiver<EncodedSnapshot>, Status> {
        let caller = self.caller(&request).await?;
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
        if let Some((ns, sa)) = caller
            && (who.namespace != ns || who.service_account != sa)
        {
            return Err(self.refuse(
                "denied",
                Status::permission_denied(format!(
                    "hello names {}/{} but the token is for {ns}/{sa}",
                    who.namespace, who.service_account
                )),
            ));
        }
        tracing::info!(proxy = %who.id, "proxy connected");
        let conn = self.registry.connect(&who);
        self.metrics.connected.inc();
        // One snapshot in flight per stream (see `stream`), so a small buffer.
        let (tx, rx) = mpsc::channel(1);
        let cx = stream::Context {
            who,
            conn,
            index: self.index.clone(),
            tx,
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            sharing: self.sharing.clone(),
        };
        let registry = self.registry.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let id = cx.who.id.clone();
            stream::run(cx, inbound).await;
            registry.disconnect(conn);
            metrics.connected.dec();
            tracing::info!(proxy = %id, "proxy disconnected");
        });
        Ok(rx)
    }
}
