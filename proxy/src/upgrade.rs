//! WebSocket upgrades (RFC 6455 over HTTP/1.1): Envoy, and so Istio, carries
//! `Upgrade: websocket` on every HTTP route by default. The upgrade request is
//! routed, authorized, rate limited, retried and reported like any request;
//! when the upstream answers `101 Switching Protocols` the proxy answers the
//! same, and the two connections are spliced into a byte relay that lasts
//! until both directions end (a close is passed on) or the connection's
//! drain signal fires.
//!
//! Other upgrade tokens are not carried: `h2c` is removed with the hop-by-hop
//! headers, as Envoy's HTTP/1 codec removes it, and the request goes on as
//! plain HTTP; so do custom protocols, which Envoy would refuse with `403`.
//! An upgrade always travels over HTTP/1.1, also between sidecars and to
//! HTTP/2 upstreams (RFC 8441's extended CONNECT is not used).

#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::body::Body;
use crate::http_util::strip_hop_by_hop;
use crate::metrics::{Metrics, ReporterLabels, UpgradeBytesLabels, UpgradeLabels};
use crate::tcp::{End, RelayLimits};

/// The one upgrade protocol carried.
const WEBSOCKET: &str = "websocket";

/// `reporter` of the outbound side (Istio's name for the client's proxy).
pub const SOURCE: &str = "source";

/// `reporter` of the inbound side.
pub const DESTINATION: &str = "destination";

/// A request's accepted upgrade: the `Upgrade` value to send on, and the
/// downstream connection's hand-over once the proxy answers `101`.
pub struct Requested {
    pub protocol: HeaderValue,
    pub downstream: OnUpgrade,
}

/// Whether `headers` ask for a WebSocket upgrade: `Connection` names
/// `upgrade` and the first protocol of `Upgrade` is `websocket` (tokens are
/// case-insensitive; a version suffix such as `websocket/13` counts).
pub fn asks_websocket(version: Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != Version::HTTP_11 {
        return None;
    }
    let upgrade = headers.get(header::UPGRADE)?;
    let first = upgrade.to_str().ok()?.split(',').next()?.trim();
    let name = first.split('/').next().unwrap_or(first).trim();
    if !name.eq_ignore_ascii_case(WEBSOCKET) {
        return None;
    }
    let names_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    names_upgrade.then(|| upgrade.clone())
}

/// Takes the upgrade a request asks for, with its connection's hand-over
/// (absent on HTTP/2 and on connections served without upgrades).
pub fn take<B>(req: &mut Request<B>) -> Option<Requested> {
    // hyper hands a connection over only with requests that name an upgrade:
    // for all others this look-up is the whole cost.
    req.extensions().get::<OnUpgrade>()?;
    let protocol = asks_websocket(req.version(), req.headers())?;
    let downstream = req.extensions_mut().remove::<OnUpgrade>()?;
    Some(Requested {
        protocol,
        downstream,
    })
}

/// Puts back the two headers that hop-by-hop stripping removed: on the
/// request sent upstream, or on the `101` answer sent downstream.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// The protocol a `101` answer switches to, when it is the one asked for.
fn accepted(status: StatusCode, headers: &HeaderMap) -> Option<HeaderValue> {
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return None;
    }
    let value = headers.get(header::UPGRADE)?;
    let name = value.to_str().ok()?.split('/').next()?.trim();
    name.eq_ignore_ascii_case(WEBSOCKET).then(|| value.clone())
}

/// Takes the upstream's answer through hop-by-hop stripping. When it
/// accepts the upgrade `asked` for (`101` to `websocket`), `Connection` and
/// `Upgrade` are put back and both connections' hand-overs (downstream,
/// upstream) returned for [`splice`]. Any other answer to an upgrade request
/// is counted as refused and goes to the client as it is.
pub fn answer(
    metrics: &Metrics,
    reporter: &'static str,
    asked: Option<Requested>,
    resp: &mut Response<Body>,
) -> Option<(OnUpgrade, OnUpgrade)> {
    let protocol = asked
        .as_ref()
        .and_then(|_| accepted(resp.status(), resp.headers()));
    strip_hop_by_hop(resp.headers_mut());
    let asked = asked?;
    let Some(protocol) = protocol else {
        let labels = UpgradeLabels {
            reporter,
            outcome: "refused",
        };
        metrics.upgrades.get_or_create(&labels).inc();
        return None;
    };
    restore(resp.headers_mut(), protocol);
    Some((asked.downstream, hyper::upgrade::on(resp)))
}

/// Relays bytes between the two upgraded connections, in a task of its own,
/// once hyper has handed both over (downstream: after the `101` is written),
/// until both directions end or `stop` turns true (the proxy drains, or a
/// plaintext connection's port turns STRICT: the upgraded stream outlives
/// the HTTP connection that `stop` was guarding). `guard` (in-flight count,
/// circuit-breaker admission) lives as long.
pub fn splice<G: Send + 'static>(
    metrics: Arc<Metrics>,
    reporter: &'static str,
    (downstream, upstream): (OnUpgrade, OnUpgrade),
    guard: G,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let _guard = guard;
        let count = |outcome| {
            let labels = UpgradeLabels { reporter, outcome };
            metrics.upgrades.get_or_create(&labels).inc();
        };
        let (down, up) = tokio::join!(downstream, upstream);
        let (down, up) = match (down, up) {
            (Ok(d), Ok(u)) => (d, u),
            (d, u) => {
                tracing::debug!(
                    downstream = ?d.err(),
                    upstream = ?u.err(),
                    "upgrade hand-over failed"
                );
                count("failed");
                return;
            }
        };
        count("upgraded");
        let active = metrics
            .upgrades_active
            .get_or_create(&ReporterLabels { reporter })
            .clone();
        active.inc();
        let stopped = async {
            if stop.wait_for(|stop| *stop).await.is_err() {
                // The signal's sender is gone: nothing left to obey.
                std::future::pending::<()>().await;
            }
        };
        let (down, up) = (TokioIo::new(down), TokioIo::new(up));
        let done = crate::tcp::splice(down, up, RelayLimits::NONE, stopped).await;
        if done.end == End::Stopped {
            tracing::debug!("upgraded connection closed: draining, or its port turned STRICT");
        }
        // Counted as read, so a reset after the last byte loses none of them.
        let bytes = |direction, n| {
            let labels = UpgradeBytesLabels {
                reporter,
                direction,
            };
            metrics.upgraded_bytes.get_or_create(&labels).inc_by(n);
        };
        bytes("received", done.from_a);
        bytes("sent", done.from_b);
        active.dec();
    });
}
