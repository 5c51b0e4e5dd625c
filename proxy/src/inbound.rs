//! The inbound listener (:15006): learns the original destination (PROXY v2
//! header, `SO_ORIGINAL_DST`, Host port or the sole port) and forwards to the
//! local application, reporting `reporter="destination"` metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};

use crate::body::{self, Body, Counted};
use crate::detect::{self, Detected};
use crate::http_util::{authority_of, is_grpc, local_reply, shape_for_upstream, strip_hop_by_hop};
use crate::matching::{RequestView, port_of};
use crate::metrics::ServiceLabels;
use crate::model::{InboundPort, Protocol, ProxyConfig, Text, WorkloadMeta};
use crate::rate_limit::{self, Gate};
use crate::report::Report;
use crate::rewrite::path_and_query;
use crate::state::Shared;
use crate::upstream::Target;
use crate::{listener, proxy_protocol};

/// Time a caller gets to send its first bytes (or PROXY header).
const DETECT_TIMEOUT: Duration = Duration::from_millis(300);
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

const SOURCE_HEADERS: [&str; 5] = [
    "x-sluice-source-workload",
    "x-sluice-source-namespace",
    "x-sluice-source-app",
    "x-sluice-source-version",
    "x-sluice-source-principal",
];

const XFCC: http::HeaderName = http::HeaderName::from_static("x-forwarded-client-cert");

/// What the inbound path knows about a connection.
#[derive(Clone, Copy, Debug)]
struct InboundCtx {
    /// The original destination port, when known at connection level.
    dst_port: Option<u16>,
}

/// Runs the inbound listener until shutdown.
pub async fn run(shared: Arc<Shared>, listener: TcpListener) {
    let metrics = Arc::clone(&shared.metrics);
    let shutdown = shared.shutdown.clone();
    listener::accept_loop(
        listener,
        "inbound",
        metrics,
        shutdown,
        move |stream, peer| handle_conn(Arc::clone(&shared), stream, peer),
    )
    .await;
}

/// The inbound port a destination port names: target port first, then service port.
fn find_port(cfg: &ProxyConfig, port: u16) -> Option<&InboundPort> {
    cfg.inbound
        .iter()
        .find(|p| p.target_port == port)
        .or_else(|| cfg.inbound.iter().find(|p| p.service_port == port))
}

fn sole_port(cfg: &ProxyConfig) -> Option<&InboundPort> {
    match cfg.inbound.as_slice() {
        [only] => Some(only),
        _ => None,
    }
}

async fn handle_conn(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let mut detected = detect::sniff(&stream, DETECT_TIMEOUT).await;
    let mut dst_port = None;
    let via_proxy_header = detected == Detected::ProxyV2;
    if via_proxy_header {
        match tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxy_protocol::read(&mut stream)).await {
            Ok(Ok(addrs)) => dst_port = addrs.map(|a| a.destination.port()),
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "rejecting connection with a bad PROXY header");
                return;
            }
            Err(_) => return,
        }
    } else if let Some(dst) = detect::original_dst(&stream) {
        dst_port = Some(dst.port());
    }
    let running = shared.current();
    let port = running.as_ref().and_then(|r| {
        let cfg = &r.config;
        dst_port
            .and_then(|p| find_port(cfg, p))
            .or_else(|| sole_port(cfg))
            .map(|p| (p.target_port, p.protocol))
    });
    let is_tcp_port = matches!(port, Some((_, Protocol::Tcp)));
    if via_proxy_header && !is_tcp_port {
        // What follows the PROXY header decides between HTTP and raw TCP.
        detected = detect::sniff(&stream, DETECT_TIMEOUT).await;
    }
    match detected {
        Detected::Http1 | Detected::Http2 if !is_tcp_port => {
            let ctx = InboundCtx { dst_port };
            let shutdown = shared.shutdown.clone();
            listener::serve_http(stream, shutdown, move |req| {
                handle(Arc::clone(&shared), ctx, req)
            })
            .await;
        }
        _ => {
            let Some(target_port) = port.map(|(p, _)| p).or(dst_port) else {
                tracing::debug!(%peer, "inbound TCP connection with no known destination port; closing");
                return;
            };
            relay_tcp(shared, stream, target_port).await;
        }
    }
}

async fn relay_tcp(shared: Arc<Shared>, stream: TcpStream, target_port: u16) {
    let running = shared.current();
    let app = SocketAddr::new(shared.settings.identity.ip, target_port);
    let target = Target {
        connect: app,
        announce: None,
    };
    let upstream =
        match crate::upstream::connect(target, app, shared.settings.connect_timeout).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "local app unreachable");
                return;
            }
        };
    let service = running
        .as_ref()
        .and_then(|r| find_port(&r.config, target_port))
        .map(port_service)
        .unwrap_or_default();
    let m = &shared.metrics;
    let me = shared.self_meta(running.as_deref());
    let labels = m.tcp_labels(
        &m.words.destination,
        &WorkloadMeta::default(),
        me,
        &service,
        &m.words.none,
    );
    crate::tcp::relay(&shared.metrics, &labels, stream, upstream).await;
}

fn port_service(p: &InboundPort) -> ServiceLabels {
    ServiceLabels {
        service: p.service.clone(),
        name: p.service_name.clone(),
        namespace: p.service_namespace.clone(),
    }
}

/// Takes the caller identity headers out of the request.
fn take_source(headers: &mut HeaderMap, own_cluster: &Text) -> WorkloadMeta {
    let mut take = |name: &str| -> Text {
        let v = headers
            .remove(name)
            .and_then(|v| v.to_str().ok().map(Text::from));
        v.unwrap_or_default()
    };
    let mut meta = WorkloadMeta {
        workload: take(SOURCE_HEADERS[0]),
        namespace: take(SOURCE_HEADERS[1]),
        app: take(SOURCE_HEADERS[2]),
        version: take(SOURCE_HEADERS[3]),
        principal: take(SOURCE_HEADERS[4]),
        cluster: Text::default(),
    };
    if !meta.workload.as_str().is_empty() {
        // Callers with a sidecar are in this mesh's cluster.
        meta.cluster = own_cluster.clone();
    }
    meta
}

/// Replaces any caller-supplied `x-forwarded-client-cert` with the identity the
/// peer sidecar vouched for (Envoy's `By=...;URI=...` form), so apps see the
/// caller's principal. Until mTLS lands the identity comes from the peer's headers.
fn set_client_cert_header(headers: &mut HeaderMap, me: &WorkloadMeta, source: &WorkloadMeta) {
    headers.remove(XFCC);
    if source.principal.as_str().is_empty() {
        return;
    }
    let value = format!("By={};URI={}", me.principal, source.principal);
    if let Ok(v) = http::HeaderValue::from_str(&value) {
        headers.insert(XFCC, v);
    }
}

async fn handle(shared: Arc<Shared>, ctx: InboundCtx, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let running = shared.current();
    let (mut parts, body) = req.into_parts();
    let authority = authority_of(&parts.uri, &parts.headers).map(str::to_owned);
    let port = running.as_ref().and_then(|r| {
        let cfg = &r.config;
        ctx.dst_port
            .and_then(|p| find_port(cfg, p))
            .or_else(|| {
                authority
                    .as_deref()
                    .and_then(port_of)
                    .and_then(|p| find_port(cfg, p))
            })
            .or_else(|| sole_port(cfg))
    });
    let m = Arc::clone(&shared.metrics);
    let me = shared.self_meta(running.as_deref());
    let source = take_source(&mut parts.headers, &me.cluster);
    set_client_cert_header(&mut parts.headers, me, &source);
    let grpc = is_grpc(&parts.headers);
    let protocol = if grpc { &m.words.grpc } else { &m.words.http };
    let service = port.map(port_service).unwrap_or_default();
    let request_bytes = Arc::new(AtomicU64::new(0));
    let labels = m.request_labels(
        &m.words.destination,
        &source,
        me,
        &service,
        protocol,
        0,
        &m.words.unknown,
        &m.words.no_flags,
        &m.words.none,
    );
    let report = Report::new(Arc::clone(&m), labels, start, Arc::clone(&request_bytes));
    let Some((target_port, app_protocol)) = port
        .map(|p| (p.target_port, p.protocol))
        .or(ctx.dst_port.map(|p| (p, Protocol::Unspecified)))
    else {
        let resp = local_reply(
            StatusCode::NOT_FOUND,
            "sluice-proxy: no inbound port for this request",
        );
        return report.local(resp, &m.words.nr);
    };
    let mut shown_limit = None;
    if let Some(r) = running
        .as_ref()
        .filter(|r| !r.config.rate_limits.is_empty())
    {
        let view = RequestView {
            method: parts.method.as_str(),
            scheme: parts.uri.scheme_str().unwrap_or("http"),
            authority: authority.as_deref().unwrap_or(""),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
        };
        let principal = source.principal.as_str();
        let limits = &r.config.rate_limits;
        match rate_limit::gate(limits, Some(target_port), &view, principal, &m.resilience) {
            Gate::Refuse(limit, d) => {
                return report.local(rate_limit::refused(limit, d), &m.words.rl);
            }
            Gate::Pass(shown) => {
                shown_limit = shown.map(|(limit, d)| {
                    let mut headers = HeaderMap::new();
                    limit.headers(d, &mut headers);
                    headers
                });
            }
        }
    }
    let h2 = app_protocol.is_h2() || (app_protocol == Protocol::Unspecified && grpc);
    let app = SocketAddr::new(shared.settings.identity.ip, target_port);
    let authority = authority.unwrap_or_else(|| app.to_string());
    strip_hop_by_hop(&mut parts.headers);
    let pq = path_and_query(parts.uri.path(), parts.uri.query());
    if let Err(e) = shape_for_upstream(&mut parts, h2, &authority, &pq) {
        let msg = format!("sluice-proxy: {e}");
        return report.local(
            local_reply(StatusCode::BAD_REQUEST, &msg),
            &m.words.no_flags,
        );
    }
    let req = Request::from_parts(parts, body::boxed(Counted::new(body, request_bytes)));
    let target = Target {
        connect: app,
        announce: None,
    };
    let result = if h2 {
        shared
            .app_pools
            .send_h2(target, req)
            .await
            .map(|r| r.map(body::boxed))
    } else {
        shared.app_pools.send_h1(target, req).await
    };
    match result {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            if let Some(headers) = shown_limit {
                resp.headers_mut().extend(headers);
            }
            report.streamed(resp, ())
        }
        Err(e) => {
            tracing::debug!(error = %e, "local app request failed");
            let flag = if e.is_connect_failure() {
                &m.words.uf
            } else {
                &m.words.uc
            };
            let msg = format!("sluice-proxy: {e}");
            report.local(local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg), flag)
        }
    }
}
