//! Traffic mirroring (Istio `HTTPRoute.mirror`): fire-and-forget copies of a
//! request to other clusters, host suffixed `-shadow`; their responses are dropped.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::balance::{HashInput, pick_endpoint};
use crate::body;
use crate::http_util::shape_for_upstream;
use crate::model::{Mirror, Running};
use crate::state::Shared;
use crate::tls::Alpn;
use crate::upstream::Target;

#[cfg(test)]
mod tests;

/// Largest request body copied to mirrors; larger requests are not mirrored.
pub const BODY_CAP: usize = 1024 * 1024;
/// How long a mirrored exchange may take before it is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);
/// Mirrored requests in flight at once in this proxy; more are dropped (and
/// counted), so a slow shadow service cannot pile up tasks and bodies.
pub const MAX_IN_FLIGHT: usize = 1024;

static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One slot of [`MAX_IN_FLIGHT`], released when dropped.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        use std::sync::atomic::Ordering;
        IN_FLIGHT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Whether an event with probability `percent` (0–100) happens now.
pub fn hit(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && fastrand::f64() * 100.0 < percent)
}

/// The mirrors a request goes to, chosen by their percentages.
pub fn chosen(mirrors: &[Mirror]) -> Vec<String> {
    mirrors
        .iter()
        .filter(|m| hit(m.percent))
        .map(|m| m.cluster.clone())
        .collect()
}

/// The parts of the forwarded request a mirror copy is made from.
pub struct Template {
    pub method: Method,
    pub headers: HeaderMap,
    pub authority: String,
    pub path_and_query: String,
    /// The original request's HTTP version (picks the upstream protocol).
    pub version: http::Version,
}

/// `reviews:9080` → `reviews-shadow:9080`, as Envoy names shadow traffic.
pub fn shadow_authority(authority: &str) -> String {
    let host = crate::model::strip_port(authority);
    format!("{host}-shadow{}", &authority[host.len()..])
}

/// Sends `template` to every cluster in `clusters` once the request body is known.
pub fn spawn(
    shared: Arc<Shared>,
    running: Arc<Running>,
    clusters: Vec<String>,
    template: Template,
    body: Option<oneshot::Receiver<Bytes>>,
    source_ip: IpAddr,
) {
    let outcome = |o: &'static str| crate::metrics::MirrorLabels { outcome: o };
    let Some(slot) = Slot::take() else {
        shared
            .metrics
            .mirrors
            .get_or_create(&outcome("dropped"))
            .inc_by(clusters.len() as u64);
        return;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let bytes = match body {
            None => Bytes::new(),
            Some(rx) => match rx.await {
                Ok(b) => b,
                // Over the cap, failed or never finished: no copy to send.
                Err(_) => return,
            },
        };
        for name in clusters {
            let sent = tokio::time::timeout(
                MIRROR_TIMEOUT,
                send_one(
                    &shared,
                    &running,
                    &name,
                    &template,
                    bytes.clone(),
                    source_ip,
                ),
            )
            .await;
            let delivered = matches!(sent, Ok(true));
            if !delivered {
                tracing::debug!(cluster = %name, "mirrored request not delivered");
            }
            shared
                .metrics
                .mirrors
                .get_or_create(&outcome(if delivered { "sent" } else { "failed" }))
                .inc();
        }
    });
}

async fn send_one(
    shared: &Shared,
    running: &Running,
    name: &str,
    template: &Template,
    bytes: Bytes,
    source_ip: IpAddr,
) -> bool {
    let Some(cluster) = running.config.cluster(name) else {
        return false;
    };
    let input = HashInput {
        headers: &template.headers,
        source_ip,
        query: None,
    };
    let Some(ep) = pick_endpoint(cluster, &input).and_then(|c| cluster.endpoints.get(c.index))
    else {
        return false;
    };
    let h2 = cluster.upstream_h2(template.version);
    let alpn = Alpn::for_http(h2);
    let target = Target::endpoint(cluster, ep, shared.tls.has_credentials(), alpn);
    let h2 = h2 && !target.forces_h1();
    let len = HeaderValue::from(bytes.len());
    let mut req = Request::new(body::full(bytes));
    *req.method_mut() = template.method.clone();
    *req.headers_mut() = template.headers.clone();
    let me = shared.self_meta(Some(running));
    super::http::add_identity(req.headers_mut(), ep.sidecar.then_some(me));
    req.headers_mut().insert(http::header::CONTENT_LENGTH, len);
    let (mut parts, body) = req.into_parts();
    let authority = shadow_authority(&template.authority);
    if shape_for_upstream(&mut parts, h2, &authority, &template.path_and_query).is_err() {
        return false;
    }
    let req = Request::from_parts(parts, body);
    let resp = if h2 {
        shared
            .pools
            .send_h2(target, req)
            .await
            .map(|r| r.map(body::boxed))
    } else {
        shared.pools.send_h1(target, req).await
    };
    match resp {
        // Read the answer to the end so the connection can be reused, without
        // keeping it: a mirror's answer is thrown away, however large.
        Ok(r) => {
            let mut body = r.into_body();
            loop {
                match body.frame().await {
                    None => break true,
                    Some(Ok(_)) => {}
                    Some(Err(_)) => break false,
                }
            }
        }
        Err(_) => false,
    }
}
