//! One proxy's stream: at most one snapshot awaiting an answer; complete
//! first and after a NACK, deltas against the last ACKed config otherwise.

use super::frame::{self, EncodedSnapshot};
use super::shared::{Base, ProxyView, Sharing};
use crate::index::MeshIndex;
use crate::metrics::{ControllerMetrics, OutcomeLabels, PushLabels};
use crate::sync::SyncRegistry;
use crate::translate::ProxyIdentity;
use sluice_api::config::{ProxyMessage, proxy_message};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tonic::Streaming;

/// Whether a snapshot carried a complete config or a delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Snapshot.config`.
    Full,
    /// `Snapshot.delta`.
    Delta,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Delta => "delta",
        }
    }
}

struct Sent {
    revision: u64,
    view: ProxyView,
    kind: Kind,
}

/// What the controller knows of one proxy's config.
#[derive(Default)]
struct Peer {
    /// The last config this stream's proxy ACKed: the base of the next delta.
    acked: Option<(u64, Base)>,
    /// Sent and not answered yet; nothing more is sent until it is, so a
    /// delta's base is always what the proxy runs.
    pending: Option<Sent>,
    /// The last refusal (revision, kind) since the last ACK: the next push is
    /// complete, and a refused complete config is not sent again.
    refused: Option<(u64, Kind)>,
    sent_any: bool,
}

/// Everything a stream task uses.
pub(super) struct Context {
    pub who: ProxyIdentity,
    pub conn: u64,
    pub index: watch::Receiver<Arc<MeshIndex>>,
    /// Ready-to-write gRPC messages; the response body drains it.
    pub tx: mpsc::Sender<EncodedSnapshot>,
    pub registry: Arc<SyncRegistry>,
    pub metrics: Arc<ControllerMetrics>,
    pub sharing: Arc<Sharing>,
}

/// Serves the stream until the proxy or the controller ends it.
pub(super) async fn run(mut cx: Context, mut inbound: Streaming<ProxyMessage>) {
    let mut peer = Peer::default();
    loop {
        let current = cx.index.borrow_and_update().clone();
        match next_snapshot(&cx, &mut peer, &current) {
            Ok(Some(snapshot)) => {
                if cx.tx.send(snapshot).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(proxy = %cx.who.id, "cannot send config: {e}");
                return;
            }
        }
        tokio::select! {
            changed = cx.index.changed() => if changed.is_err() { return },
            msg = inbound.message() => match msg {
                Ok(Some(msg)) => answer(&cx, &mut peer, msg),
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(proxy = %cx.who.id, "stream error: {e}");
                    return;
                }
            },
            () = cx.tx.closed() => return,
        }
    }
}

/// What kind of snapshot the proxy should get now at `revision`, if any.
fn wants(peer: &Peer, revision: u64) -> Option<Kind> {
    if peer.pending.is_some() || peer.acked.as_ref().is_some_and(|(v, _)| *v == revision) {
        return None;
    }
    if peer.refused == Some((revision, Kind::Full)) {
        // The same complete config would be refused again; wait for a change.
        return None;
    }
    match (&peer.acked, peer.refused) {
        (Some(_), None) => Some(Kind::Delta),
        _ => Some(Kind::Full),
    }
}

/// The snapshot to send now, if any, as gRPC message bytes.
fn next_snapshot(
    cx: &Context,
    peer: &mut Peer,
    current: &MeshIndex,
) -> Result<Option<EncodedSnapshot>, frame::TooLarge> {
    let revision = current.revision;
    let Some(kind) = wants(peer, revision) else {
        return Ok(None);
    };
    let previous = peer.acked.as_ref().map(|(_, v)| v);
    let view = cx.sharing.view_after(current, &cx.who, previous);
    let version = revision.to_string();
    let delta = match (kind, &peer.acked) {
        (Kind::Delta, Some((base, base_view))) => cx
            .sharing
            .delta_frame((*base, base_view), (revision, &view))?,
        _ => None,
    };
    if kind == Kind::Delta && delta.is_none() {
        cx.metrics.large_delta_fallbacks.inc();
    }
    let (kind, snapshot) = match delta {
        Some(d) => (Kind::Delta, d),
        None => {
            let snapshot = frame::complete(
                &version,
                &view.half.bytes,
                view.own.inbound.as_ref(),
                view.own.self_.as_ref(),
                view.own.telemetry.as_ref(),
                view.own.outbound.as_ref(),
            )?;
            (Kind::Full, snapshot)
        }
    };
    let labels = PushLabels { kind: kind.label() };
    cx.metrics.pushes.get_or_create(&labels).inc();
    cx.metrics
        .push_bytes
        .get_or_create(&labels)
        .inc_by(snapshot.message_len() as u64);
    // The first snapshot of a stream is not a change being propagated.
    let changed_at = peer.sent_any.then_some(current.changed_at);
    cx.registry.sent(cx.conn, &version, changed_at);
    peer.sent_any = true;
    peer.pending = Some(Sent {
        revision,
        view,
        kind,
    });
    Ok(Some(snapshot))
}

/// Records an ACK or NACK.
fn answer(cx: &Context, peer: &mut Peer, msg: ProxyMessage) {
    let count = |outcome| {
        cx.metrics
            .responses
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    };
    match msg.kind {
        Some(proxy_message::Kind::Ack(ack)) => {
            count("ack");
            if let Some(took) = cx.registry.acked(cx.conn, &ack.version) {
                cx.metrics.convergence.observe(took.as_secs_f64());
            }
            match peer.pending.take() {
                Some(sent) if sent.revision.to_string() == ack.version => {
                    peer.acked = Some((sent.revision, sent.view.base()));
                    peer.refused = None;
                }
                other => {
                    // Not an answer to what is outstanding: the proxy's state
                    // is unknown, so the next push is complete.
                    tracing::debug!(proxy = %cx.who.id, version = %ack.version, "unexpected ACK");
                    peer.acked = None;
                    peer.refused = other.map(|s| (s.revision, Kind::Delta));
                }
            }
        }
        Some(proxy_message::Kind::Nack(nack)) => {
            count("nack");
            tracing::warn!(proxy = %cx.who.id, version = %nack.version, "proxy rejected config: {}", nack.error);
            cx.registry.nacked(cx.conn, &nack.version, &nack.error);
            let kind = peer.pending.take().map_or(Kind::Delta, |s| s.kind);
            let revision = nack.version.parse().unwrap_or(0);
            peer.refused = Some((revision, kind));
        }
        Some(proxy_message::Kind::Hello(_)) | None => {
            tracing::debug!(proxy = %cx.who.id, "ignoring repeated hello");
        }
    }
}
