//! Outbound HTTP: virtual host and route selection, then the route's action
//! (forward with rewrite, header ops and load balancing; redirect; direct response).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::mirror::{self, Template};
use super::{ConnCtx, fault};
use crate::balance::{HashInput, pick_endpoint, pick_weighted};
use crate::body::{self, Body, Counted, Tee};
use crate::http_util::{authority_of, is_grpc, local_reply, shape_for_upstream, strip_hop_by_hop};
use crate::matching::{Matched, RequestView, host_of, port_of, select_vhost};
use crate::metrics::Metrics;
use crate::metrics::ServiceLabels;
use crate::model::{
    Action, Cluster, Protocol, Route, Running, Text, WeightedCluster, WorkloadMeta,
};
use crate::report::{InFlight, Report};
use crate::rewrite::{path_and_query, redirect_location, rewritten_path};
use crate::state::Shared;
use crate::upstream::Target;

/// Headers carrying the caller's identity to the peer sidecar (until mTLS).
pub const SOURCE_WORKLOAD: HeaderName = HeaderName::from_static("x-sluice-source-workload");
pub const SOURCE_NAMESPACE: HeaderName = HeaderName::from_static("x-sluice-source-namespace");
pub const SOURCE_APP: HeaderName = HeaderName::from_static("x-sluice-source-app");
pub const SOURCE_VERSION: HeaderName = HeaderName::from_static("x-sluice-source-version");
pub const SOURCE_PRINCIPAL: HeaderName = HeaderName::from_static("x-sluice-source-principal");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `reviews.default.svc.cluster.local` → (`reviews`, `default`).
fn service_labels(fqdn: &Text) -> ServiceLabels {
    let mut parts = fqdn.as_str().split('.');
    let name = parts.next().unwrap_or("");
    let namespace = parts.next().unwrap_or("");
    ServiceLabels {
        service: fqdn.clone(),
        name: name.into(),
        namespace: namespace.into(),
    }
}

/// Per-request inputs of metrics reporting, shared by every outcome.
struct Reporting<'a> {
    metrics: &'a Arc<Metrics>,
    me: &'a WorkloadMeta,
    protocol: &'a Text,
    start: Instant,
    request_bytes: Arc<AtomicU64>,
}

impl Reporting<'_> {
    /// A report for a request to `service`, answered by `destination`.
    fn report(&self, service: &ServiceLabels, destination: &WorkloadMeta) -> Report {
        let m = self.metrics;
        let labels = m.request_labels(
            &m.words.source,
            self.me,
            destination,
            service,
            self.protocol,
            0,
            &m.words.unknown,
            &m.words.no_flags,
            &m.words.unknown,
        );
        Report::new(
            Arc::clone(m),
            labels,
            self.start,
            Arc::clone(&self.request_bytes),
        )
    }

    /// Records and returns a reply the proxy generated about `service`.
    fn reply(
        &self,
        service: &ServiceLabels,
        status: StatusCode,
        msg: &str,
        flag: &Text,
    ) -> Response<Body> {
        self.report(service, &WorkloadMeta::default())
            .local(local_reply(status, msg), flag)
    }
}

/// Handles one request from the local application.
pub async fn handle(shared: Arc<Shared>, ctx: ConnCtx, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let Some(running) = shared.current() else {
        return local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "sluice-proxy: no configuration received yet",
        );
    };
    if req.method() == Method::CONNECT {
        return connect_tunnel(shared, running, ctx, req).await;
    }
    let Some(authority) = authority_of(req.uri(), req.headers()).map(str::to_owned) else {
        return local_reply(
            StatusCode::BAD_REQUEST,
            "sluice-proxy: request has no authority (Host)",
        );
    };
    let m = &shared.metrics;
    let rep = Reporting {
        metrics: m,
        me: shared.self_meta(Some(&running)),
        protocol: if is_grpc(req.headers()) {
            &m.words.grpc
        } else {
            &m.words.http
        },
        start,
        request_bytes: Arc::new(AtomicU64::new(0)),
    };
    let host = host_of(&authority);
    let port = port_of(&authority)
        .or(ctx.orig_dst.map(|d| d.port()))
        .unwrap_or(80);
    let Some(vh) = select_vhost(&running.config, &host, port) else {
        let service = service_labels(&Text::from(host.as_ref()));
        let msg = format!("sluice-proxy: no virtual host for {host}:{port}");
        return rep.reply(&service, StatusCode::NOT_FOUND, &msg, &m.words.nr);
    };
    let vh_service = service_labels(&vh.service);
    let scheme = req.uri().scheme_str().unwrap_or("http");
    let view = RequestView {
        method: req.method().as_str(),
        scheme,
        authority: &authority,
        path: req.uri().path(),
        query: req.uri().query(),
        headers: req.headers(),
    };
    let Some((_, route, matched)) = vh.route_for(&view) else {
        let msg = format!("sluice-proxy: no route of {} matched", vh.name);
        return rep.reply(&vh_service, StatusCode::NOT_FOUND, &msg, &m.words.nr);
    };
    match &route.action {
        Action::DirectResponse { status, body } => {
            let mut resp = Response::new(body::full(body.clone()));
            *resp.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            route.response_headers.apply(resp.headers_mut());
            let report = rep.report(&vh_service, &WorkloadMeta::default());
            report.local(resp, &m.words.no_flags)
        }
        Action::Redirect(r) => {
            let location = redirect_location(r, scheme, &authority, view.path, view.query);
            let mut resp = Response::new(body::empty());
            *resp.status_mut() =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            if let Ok(v) = HeaderValue::from_str(&location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            route.response_headers.apply(resp.headers_mut());
            let report = rep.report(&vh_service, &WorkloadMeta::default());
            report.local(resp, &m.words.no_flags)
        }
        Action::Forward(dests) => {
            let Some(dest) = pick_weighted(dests) else {
                let msg = "sluice-proxy: route has no destination";
                return rep.reply(
                    &vh_service,
                    StatusCode::SERVICE_UNAVAILABLE,
                    msg,
                    &m.words.nr,
                );
            };
            let Some(cluster) = running.config.cluster(&dest.cluster) else {
                let msg = format!("sluice-proxy: cluster {} not found", dest.cluster);
                return rep.reply(
                    &vh_service,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &msg,
                    &m.words.nc,
                );
            };
            let forwarding = Forwarding {
                running: &running,
                route,
                matched,
                dest,
                cluster,
                authority: &authority,
            };
            forward(&shared, ctx, req, forwarding, &rep).await
        }
    }
}

/// The route decision a forwarded request carries out.
struct Forwarding<'a> {
    running: &'a Arc<Running>,
    route: &'a Route,
    matched: Matched,
    dest: &'a WeightedCluster,
    cluster: &'a Cluster,
    authority: &'a str,
}

/// Picks an endpoint of the chosen cluster and exchanges the request with it.
async fn forward(
    shared: &Arc<Shared>,
    ctx: ConnCtx,
    req: Request<Incoming>,
    f: Forwarding<'_>,
    rep: &Reporting<'_>,
) -> Response<Body> {
    let words = &rep.metrics.words;
    let cluster = f.cluster;
    let service = ServiceLabels {
        service: cluster.service.clone(),
        name: cluster.service_name.clone(),
        namespace: cluster.service_namespace.clone(),
    };
    let mut flags = &words.no_flags;
    if let Some(fault) = &f.route.fault {
        let injected = fault::decide(fault);
        if injected.delayed {
            fault::delay(fault).await;
            flags = &words.di;
        }
        if let Some(abort) = &injected.abort {
            let flag = if injected.delayed {
                &words.di_fi
            } else {
                &words.fi
            };
            let report = rep.report(&service, &WorkloadMeta::default());
            return report.local(fault::abort_response(abort), flag);
        }
    }
    let input = HashInput {
        headers: req.headers(),
        source_ip: ctx.peer.ip(),
        query: req.uri().query(),
    };
    let picked = pick_endpoint(cluster, &input)
        .and_then(|c| cluster.endpoints.get(c.index).map(|ep| (c, ep)));
    let Some((choice, ep)) = picked else {
        let msg = format!("sluice-proxy: no healthy upstream in {}", cluster.name);
        return rep.reply(&service, StatusCode::SERVICE_UNAVAILABLE, &msg, &words.uh);
    };
    let report = rep.report(&service, &ep.workload).with_flags(flags);
    // Peer sidecars always take h2c; others get the cluster's (or the caller's) protocol.
    let h2 = ep.sidecar
        || cluster.protocol.is_h2()
        || (cluster.protocol == Protocol::Unspecified && req.version() == Version::HTTP_2);
    let app = SocketAddr::new(ep.address, ep.port);
    let target = if ep.sidecar {
        Target {
            connect: SocketAddr::new(ep.address, ep.inbound_port),
            announce: Some(app),
        }
    } else {
        Target {
            connect: app,
            announce: None,
        }
    };
    let identity = ep.sidecar.then_some(rep.me);
    let mirrors = mirror::chosen(&f.route.mirrors);
    let built = build_request(req, &f, h2, identity, !mirrors.is_empty());
    let (upstream_req, template) = match built {
        Ok((r, t)) => {
            let counted = r.map(|b| body::boxed(Counted::new(b, Arc::clone(&rep.request_bytes))));
            (counted, t)
        }
        Err(e) => {
            let msg = format!("sluice-proxy: {e}");
            let resp = local_reply(StatusCode::INTERNAL_SERVER_ERROR, &msg);
            return report.local(resp, &words.no_flags);
        }
    };
    let upstream_req = match template {
        Some(template) => {
            let (parts, b) = upstream_req.into_parts();
            // Mirrors get a copy of the body once the primary has streamed it.
            let (b, copy) = if b.is_end_stream() {
                (b, None)
            } else {
                let (tee, rx) = Tee::new(b, mirror::BODY_CAP);
                (body::boxed(tee), Some(rx))
            };
            let running = Arc::clone(f.running);
            mirror::spawn(
                Arc::clone(shared),
                running,
                mirrors,
                template,
                copy,
                ctx.peer.ip(),
            );
            Request::from_parts(parts, b)
        }
        None => upstream_req,
    };
    let guard = InFlight::start(&ep.in_flight);
    let send = async {
        if h2 {
            let resp = shared.pools.send_h2(target, upstream_req).await;
            resp.map(|r| r.map(body::boxed))
        } else {
            shared.pools.send_h1(target, upstream_req).await
        }
    };
    let result = if f.route.timeout_ms > 0 {
        let limit = Duration::from_millis(f.route.timeout_ms);
        match tokio::time::timeout(limit, send).await {
            Ok(r) => r,
            Err(_) => {
                let resp = local_reply(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout");
                return report.local(resp, &words.ut);
            }
        }
    } else {
        send.await
    };
    match result {
        Ok(mut resp) => {
            strip_hop_by_hop(resp.headers_mut());
            f.route.response_headers.apply(resp.headers_mut());
            f.dest.response_headers.apply(resp.headers_mut());
            if let Some(cookie) = choice
                .set_cookie
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                resp.headers_mut().append(header::SET_COOKIE, cookie);
            }
            report.streamed(resp, Some(guard))
        }
        Err(e) => {
            tracing::debug!(error = %e, "upstream request failed");
            let flag = if e.is_connect_failure() {
                &words.uf
            } else {
                &words.uc
            };
            let msg = format!("sluice-proxy: {e}");
            report.local(local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg), flag)
        }
    }
}

/// Replaces the caller-identity headers: set from `identity` (requests to a peer
/// sidecar), removed otherwise so an app cannot forge them.
pub(super) fn set_identity(headers: &mut http::HeaderMap, identity: Option<&WorkloadMeta>) {
    for name in [
        &SOURCE_WORKLOAD,
        &SOURCE_NAMESPACE,
        &SOURCE_APP,
        &SOURCE_VERSION,
        &SOURCE_PRINCIPAL,
    ] {
        headers.remove(name);
    }
    let Some(me) = identity else { return };
    let fields = [
        (SOURCE_WORKLOAD, &me.workload),
        (SOURCE_NAMESPACE, &me.namespace),
        (SOURCE_APP, &me.app),
        (SOURCE_VERSION, &me.version),
        (SOURCE_PRINCIPAL, &me.principal),
    ];
    for (name, value) in fields {
        if let Ok(v) = HeaderValue::from_str(value.as_str()) {
            headers.insert(name, v);
        }
    }
}

/// Why the upstream request could not be built.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct BuildError(#[from] crate::http_util::BadTarget);

fn build_request(
    req: Request<Incoming>,
    f: &Forwarding<'_>,
    h2: bool,
    identity: Option<&WorkloadMeta>,
    mirrored: bool,
) -> Result<(Request<Incoming>, Option<Template>), BuildError> {
    let (mut parts, body) = req.into_parts();
    let path = rewritten_path(f.route, f.matched, parts.uri.path());
    let pq = path_and_query(&path, parts.uri.query());
    let authority = f
        .route
        .rewrite
        .authority
        .as_deref()
        .unwrap_or(f.authority)
        .to_owned();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if !headers.contains_key(&FORWARDED_PROTO) {
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&REQUEST_ID) {
        headers.insert(REQUEST_ID, crate::http_util::request_id());
    }
    set_identity(headers, identity);
    f.route.request_headers.apply(headers);
    f.dest.request_headers.apply(headers);
    let template = mirrored.then(|| Template {
        method: parts.method.clone(),
        headers: parts.headers.clone(),
        authority: authority.clone(),
        path_and_query: pq.clone(),
    });
    shape_for_upstream(&mut parts, h2, &authority, &pq)?;
    Ok((Request::from_parts(parts, body), template))
}

/// `CONNECT host:port`: connect to the named TCP service, answer 200 and relay bytes.
async fn connect_tunnel(
    shared: Arc<Shared>,
    running: Arc<Running>,
    ctx: ConnCtx,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(authority) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
        return local_reply(
            StatusCode::BAD_REQUEST,
            "sluice-proxy: CONNECT needs host:port",
        );
    };
    let host = host_of(&authority).into_owned();
    let Some(port) = port_of(&authority) else {
        return local_reply(
            StatusCode::BAD_REQUEST,
            "sluice-proxy: CONNECT needs host:port",
        );
    };
    let Some(svc) = crate::tcp::service_for_name(&running.config, &host, port) else {
        let msg = format!("sluice-proxy: no tcp service for {host}:{port}");
        return local_reply(StatusCode::NOT_FOUND, &msg);
    };
    let (upstream, labels) =
        match crate::tcp::connect_service(&shared, &running, svc, ctx.peer).await {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("sluice-proxy: {e}");
                return local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg);
            }
        };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                crate::tcp::relay(&shared.metrics, &labels, TokioIo::new(upgraded), upstream).await
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(body::empty())
}
