//! Inbound HTTP requests: caller identity (from the mTLS peer certificate
//! only), `x-forwarded-client-cert`, authorization, rate limits, and the
//! request to the local application.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{InboundCtx, authorized, find_port, port_service, sole_port};
use crate::authz::{self, MtlsMode};
use crate::body::{self, Body, Counted, Direction, GrpcFrames, GrpcMessages};
use crate::http_util::{UpstreamTarget, authority_of, is_grpc, local_reply, strip_hop_by_hop};
use crate::jwt;
use crate::matching::{RequestView, port_of};
use crate::metrics::{Principals, Side, TagFacts};
use crate::model::{Protocol, Text, WorkloadMeta};
use crate::path_normalization;
use crate::rate_limit::{self, Gate, Stage};
use crate::report::Report;
use crate::source_meta;
use crate::state::Shared;
use crate::telemetry::{self, Observed, Outcome, RequestFacts, TelemetryConfig};
use crate::tls::Peer;
use crate::upgrade;
use crate::upstream::{self, ConnSettings, Target};

const XFCC: http::HeaderName = http::HeaderName::from_static("x-forwarded-client-cert");

/// Envoy's RBAC denial body.
const RBAC_DENIED: &str = "RBAC: access denied";

/// What stays the same for every request of one connection: the XFCC value
/// and the principals (from the mTLS certificates), and the caller metadata
/// its sidecar sends.
#[derive(Debug)]
pub(super) struct ConnCache {
    xfcc: Option<HeaderValue>,
    /// The caller's SPIFFE id, then this side's.
    principals: Option<(Text, Text)>,
    source: Mutex<Option<(SourceValues, Text, WorkloadMeta)>>,
}

/// The raw caller metadata header values: `x-sluice-source-meta`, then the
/// older per-field headers in `source_meta::LEGACY_FIELDS` order.
type SourceValues = (Option<HeaderValue>, [Option<HeaderValue>; 4]);

impl ConnCache {
    /// Builds the connection's XFCC value (Istio's form) for an mTLS `peer`.
    pub(super) fn new(peer: Option<&Peer>) -> Self {
        let xfcc = peer.and_then(|p| {
            let value = format!(
                "By={};Hash={};Subject=\"\";URI={}",
                p.own_id, p.cert_hash, p.spiffe_id
            );
            HeaderValue::from_str(&value).ok()
        });
        let principals = peer.map(|p| {
            let own = Text::from(p.own_id.as_str());
            (Text::from(p.spiffe_id.as_str()), own)
        });
        ConnCache {
            xfcc,
            principals,
            source: Mutex::new(None),
        }
    }

    /// The principals of the connection's mutual TLS, if it has it.
    pub(super) fn principals(&self) -> Option<Principals<'_>> {
        self.principals
            .as_ref()
            .map(|(source, destination)| Principals {
                source,
                destination,
            })
    }
}

/// Headers the inbound side may add to a request (`x-forwarded-client-cert`,
/// `x-forwarded-proto`, B3 and W3C trace context, `x-request-id`).
const INBOUND_ADDED_HEADERS: usize = 8;

/// Takes the caller metadata headers out of the request; the principal is the
/// mTLS peer identity, whatever the headers claim.
fn take_source(headers: &mut HeaderMap, own_cluster: &Text, cache: &ConnCache) -> WorkloadMeta {
    // Every caller-metadata header is taken out, whichever the app gets to see.
    let present = headers
        .keys()
        .filter(|k| k.as_str().starts_with(source_meta::SOURCE_PREFIX))
        .count();
    let values: SourceValues = match present {
        0 => Default::default(),
        // The usual case: only the one this version sends.
        1 if headers.contains_key(source_meta::SOURCE_META) => {
            (headers.remove(source_meta::SOURCE_META), Default::default())
        }
        _ => {
            headers.remove(source_meta::LEGACY_PRINCIPAL);
            let meta = headers.remove(source_meta::SOURCE_META);
            let fields = source_meta::LEGACY_FIELDS.map(|name| headers.remove(name));
            (meta, fields)
        }
    };
    let mut cached = cache.source.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((seen, cluster, meta)) = cached.as_ref()
        && *seen == values
        && cluster == own_cluster
    {
        return meta.clone();
    }
    let fields: [Text; 4] = match &values {
        // A malformed value gives no labels rather than a guess.
        (Some(v), _) => source_meta::decode(v.as_bytes())
            .map(|f| f.map(|s| Text::from(s.as_str())))
            .unwrap_or_default(),
        (None, legacy) => legacy.each_ref().map(|v| {
            v.as_ref()
                .and_then(|v| v.to_str().ok().map(Text::from))
                .unwrap_or_default()
        }),
    };
    let [workload, namespace, app, version] = fields;
    let mut meta = WorkloadMeta {
        workload,
        namespace,
        app,
        version,
        principal: cache
            .principals
            .as_ref()
            .map(|(caller, _)| caller.clone())
            .unwrap_or_default(),
        cluster: Text::default(),
    };
    if !meta.workload.as_str().is_empty() {
        // Callers with a sidecar are in this mesh's cluster.
        meta.cluster = own_cluster.clone();
    }
    *cached = Some((values, own_cluster.clone(), meta.clone()));
    meta
}

/// Replaces any caller-supplied `x-forwarded-client-cert`: set (Istio's form)
/// only for mTLS callers, from their verified certificate.
fn set_client_cert_header(headers: &mut HeaderMap, cache: &ConnCache) {
    match &cache.xfcc {
        Some(v) => {
            headers.insert(XFCC, v.clone());
        }
        None => {
            headers.remove(XFCC);
        }
    }
}

/// Envoy's answer to a request an authorization policy denies.
fn rbac_denied() -> Response<Body> {
    let mut resp = Response::new(body::full(RBAC_DENIED));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.extensions_mut()
        .insert(crate::report::LocalMessage(std::sync::Arc::from(
            RBAC_DENIED,
        )));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Envoy's answer to a request whose token failed verification: 401 (403
/// for another audience) with the reason as the body.
fn jwt_refused(failure: jwt::Failure, host: &str, path: &str) -> Response<Body> {
    let mut resp = Response::new(body::full(failure.message()));
    *resp.status_mut() = failure.status();
    resp.extensions_mut()
        .insert(crate::report::LocalMessage(std::sync::Arc::from(
            failure.message(),
        )));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    // RFC 6750's challenge, with the realm Envoy gives (path up to 256 bytes).
    let path = path.get(..256).unwrap_or(path);
    let challenge = format!("Bearer realm=\"http://{host}{path}\", error=\"invalid_token\"");
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// Runs the rate limits of `stage` for a request to `target_port` from
/// `principal`: the refusal when one refuses it; otherwise the first
/// covering limit's headers are kept in `shown` for the answer, unless an
/// earlier stage kept some, and limits that let it through unenforced add
/// their request headers.
#[allow(clippy::too_many_arguments)]
fn run_limits(
    running: &crate::model::Running,
    stage: Stage,
    target_port: u16,
    parts: &mut http::request::Parts,
    authority: Option<&str>,
    principal: &str,
    m: &crate::metrics::Metrics,
    shown: &mut Option<HeaderMap>,
) -> Option<Response<Body>> {
    let limits = &running.config.rate_limits;
    if limits.is_empty() {
        return None;
    }
    let view = RequestView {
        method: parts.method.as_str(),
        scheme: parts.uri.scheme_str().unwrap_or("http"),
        authority: authority.unwrap_or(""),
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let mut unenforced = Vec::new();
    let gate = rate_limit::gate_noting(
        limits,
        stage,
        Some(target_port),
        &view,
        principal,
        &m.resilience,
        &mut unenforced,
    );
    for limit in unenforced {
        for h in &limit.request_headers_when_not_enforced {
            h.apply(&mut parts.headers);
        }
    }
    match gate {
        Gate::Refuse(limit, d) => Some(rate_limit::refused(limit, d)),
        Gate::Pass(Some((limit, d))) if shown.is_none() => {
            let mut headers = HeaderMap::new();
            limit.headers(d, &mut headers);
            *shown = Some(headers);
            None
        }
        Gate::Pass(_) => None,
    }
}

/// An answer with the headers of the rate limit that let the request through,
/// as a limit earlier in Envoy's filter chain adds them to every answer.
fn with_limit(mut resp: Response<Body>, shown: Option<HeaderMap>) -> Response<Body> {
    if let Some(headers) = shown {
        resp.headers_mut().extend(headers);
    }
    resp
}

/// A CORS preflight, which request authentication lets through (Istio sets
/// `bypass_cors_preflight`): the browser sends it without credentials.
fn cors_preflight(parts: &http::request::Parts) -> bool {
    parts.method == http::Method::OPTIONS
        && parts.headers.contains_key(http::header::ORIGIN)
        && parts
            .headers
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Attaches what telemetry needs to know about `resp`, when it is observed.
fn tag(
    observe: bool,
    mut resp: Response<Body>,
    outcome: impl FnOnce() -> Outcome,
) -> Response<Body> {
    if observe {
        resp.extensions_mut().insert(outcome());
    }
    resp
}

/// Handles one request for the local application.
pub(super) async fn handle(
    shared: Arc<Shared>,
    ctx: InboundCtx,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let start = Instant::now();
    let running = shared.current();
    let no_telemetry = TelemetryConfig::default();
    let telemetry = running
        .as_ref()
        .map_or(&no_telemetry, |r| &r.config.telemetry);
    let side = telemetry::Side::Inbound;
    // Room for what this side adds (client certificate, forwarded protocol,
    // trace context, request id) in one growth.
    req.headers_mut().reserve(INBOUND_ADDED_HEADERS);
    let begun = telemetry::begin(telemetry, side, req.headers_mut());
    // Before anything reads the path: authorization, rate limits, telemetry
    // and the app all see the normalized one, as behind Envoy's connection
    // manager (Istio's default when no config has arrived yet).
    let mode = running
        .as_ref()
        .map_or_else(Default::default, |r| r.config.path_normalization);
    let normalized =
        path_normalization::at_entry(req.uri_mut(), mode, &shared.metrics.security, Side::Inbound);
    let request_bytes = Arc::new(AtomicU64::new(0));
    if !begun.observed() {
        return match normalized {
            Ok(()) => serve(shared, running, ctx, req, start, request_bytes, false).await,
            Err(_) => path_normalization::rejected(),
        };
    }
    let peer = ctx.peer.as_deref();
    let local = ctx.dst_port.map(|p| SocketAddr::new(ctx.destination_ip, p));
    let facts = RequestFacts {
        requested_server_name: peer.and_then(|p| p.sni.as_deref()),
        downstream_principal: peer.map(|p| p.spiffe_id.as_str()),
        ..RequestFacts::of(&req, SocketAddr::new(ctx.source_ip, 0), local)
    };
    let me = shared.self_meta(running.as_deref());
    let bytes = Arc::clone(&request_bytes);
    let observed = Observed::new(begun, side, telemetry, me, &facts, bytes);
    let sinks = Arc::clone(&shared.telemetry);
    let resp = match normalized {
        Ok(()) => serve(shared, running, ctx, req, start, request_bytes, true).await,
        Err(_) => {
            let flags = &shared.metrics.words.no_flags;
            let outcome = || Outcome::local(flags).detailed(path_normalization::REJECTED_DETAILS);
            tag(true, path_normalization::rejected(), outcome)
        }
    };
    observed.finish(sinks, resp)
}

/// Checks and forwards a request to the local application.
async fn serve(
    shared: Arc<Shared>,
    running: Option<Arc<crate::model::Running>>,
    ctx: InboundCtx,
    mut req: Request<Incoming>,
    start: Instant,
    request_bytes: Arc<AtomicU64>,
    observe: bool,
) -> Response<Body> {
    let asked = upgrade::take(&mut req);
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
    let source = take_source(&mut parts.headers, &me.cluster, &ctx.cache);
    set_client_cert_header(&mut parts.headers, &ctx.cache);
    let grpc = is_grpc(&parts.headers);
    let protocol = if grpc { &m.words.grpc } else { &m.words.http };
    let service = port.map(port_service).unwrap_or_default();
    let labels = m.request_labels(
        &m.words.destination,
        &source,
        me,
        &service,
        protocol,
        &m.words.no_flags,
        ctx.security_label(&m.words),
        ctx.cache.principals(),
    );
    let facts = m.wants_tag_facts(&m.words.destination).map(|plans| {
        let mut f = TagFacts::of(&parts, plans.headers());
        f.source = Some(SocketAddr::new(ctx.source_ip, ctx.source_port));
        f.destination = ctx.dst_port.map(|p| SocketAddr::new(ctx.destination_ip, p));
        f.mtls = ctx.peer.is_some();
        f.requested_server_name = ctx.peer.as_deref().and_then(|p| p.sni.clone());
        Box::new(f)
    });
    // Dropped unanswered (the caller went away), it records the request.
    let bytes = Arc::clone(&request_bytes);
    let messages: Option<Arc<GrpcMessages>> = grpc.then(Arc::default);
    let report = Report::new(Arc::clone(&m), labels, start, bytes, parts.version)
        .with_facts(facts)
        .with_messages(messages.clone());
    let Some((target_port, app_protocol)) = port
        .map(|p| (p.target_port, p.protocol))
        .or(ctx.dst_port.map(|p| (p, Protocol::Unspecified)))
    else {
        let resp = local_reply(
            StatusCode::NOT_FOUND,
            "sluice-proxy: no inbound port for this request",
        );
        let resp = report.local(resp, &m.words.nr);
        return tag(observe, resp, || Outcome::local(&m.words.nr));
    };
    let app_port = port.map_or(target_port, |p| p.app_port);
    let app = SocketAddr::new(shared.settings.app_ip, app_port);
    let routed = || Outcome::inbound(port, target_port, app);
    let mut shown_limit = None;
    if let Some(r) = &running {
        let policy = &r.config.security;
        // The port may have become STRICT after this plaintext connection was
        // accepted; the connection is being drained, and no request on it may
        // pass meanwhile.
        if ctx.peer.is_none() && policy.mode_for(target_port) == MtlsMode::Strict {
            shared
                .metrics
                .security
                .handshake(Side::Inbound, "plaintext_refused");
            let resp = local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "sluice-proxy: this port requires mutual TLS (PeerAuthentication STRICT)",
            );
            let resp = report.local(resp, &m.words.no_flags);
            return tag(observe, resp, || routed().detailed("mtls_required"));
        }
        let principal = source.principal.as_str();
        let limits = |stage, parts: &mut http::request::Parts, shown: &mut Option<HeaderMap>| {
            run_limits(
                r,
                stage,
                target_port,
                parts,
                authority.as_deref(),
                principal,
                &m,
                shown,
            )
        };
        // An EnvoyFilter inserted at the front of the chain counts every
        // request, also those authentication or authorization refuse next.
        if let Some(refused) = limits(Stage::BeforeAuthentication, &mut parts, &mut shown_limit) {
            let resp = report.local(refused, &m.words.rl);
            return tag(observe, resp, || routed().flagged(&m.words.rl));
        }
        let mut identity = None;
        if let Some(authn) = &policy.jwt
            && cors_preflight(&parts)
        {
            authn.strip_output_headers(&mut parts.headers);
        } else if let Some(authn) = &policy.jwt {
            let security = &shared.metrics.security;
            match authn.authenticate(&mut parts.headers, &mut parts.uri) {
                jwt::Outcome::Anonymous => security.request_authentication("no_token", ""),
                jwt::Outcome::Verified(id) => {
                    security.request_authentication("verified", "");
                    identity = Some(id);
                }
                jwt::Outcome::Refused(failure) => {
                    security.request_authentication("refused", failure.label());
                    let host = authority.as_deref().unwrap_or("");
                    let refused =
                        with_limit(jwt_refused(failure, host, parts.uri.path()), shown_limit);
                    let resp = report.local(refused, &m.words.no_flags);
                    return tag(observe, resp, || routed().detailed(failure.details()));
                }
            }
        }
        if let Some(refused) = limits(Stage::BeforeAuthorization, &mut parts, &mut shown_limit) {
            let resp = report.local(refused, &m.words.rl);
            return tag(observe, resp, || routed().flagged(&m.words.rl));
        }
        let request = authz::Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            host: authority.as_deref().unwrap_or(""),
            headers: &parts.headers,
            auth: identity.as_deref(),
        };
        let verdict = policy.check_http(&ctx.authz_connection(target_port), &request);
        if !authorized(&shared, policy.has_policies(), &verdict) {
            let resp = report.local(with_limit(rbac_denied(), shown_limit), &m.words.no_flags);
            return tag(observe, resp, || routed().detailed("rbac_access_denied"));
        }
        if let Some(refused) = limits(Stage::AfterAuthorization, &mut parts, &mut shown_limit) {
            let resp = report.local(refused, &m.words.rl);
            return tag(observe, resp, || routed().flagged(&m.words.rl));
        }
    }
    // An upgrade is carried only by HTTP/1.1.
    let h2 = asked.is_none()
        && (app_protocol.is_h2() || (app_protocol == Protocol::Unspecified && grpc));
    let authority = authority.unwrap_or_else(|| app.to_string());
    strip_hop_by_hop(&mut parts.headers);
    let shaped =
        UpstreamTarget::unchanged(&parts, &authority).and_then(|t| t.shape(&mut parts, h2));
    if let Err(e) = shaped {
        let msg = format!("sluice-proxy: {e}");
        let resp = report.local(
            local_reply(StatusCode::BAD_REQUEST, &msg),
            &m.words.no_flags,
        );
        return tag(observe, resp, || routed().detailed("bad_request"));
    }
    if let Some(asked) = &asked {
        upgrade::restore(&mut parts.headers, asked.protocol.clone());
    }
    // An HTTP/1 app client stops reading at Content-Length; the rest (an
    // END_STREAM in its own frame) is drained so the h2 stream is not reset.
    let body = Counted::new(body::DrainOnDrop::new(body), request_bytes);
    let body = match messages {
        Some(m) => body::boxed(GrpcFrames::new(body, m, Direction::Request)),
        None => body::boxed(body),
    };
    let req = Request::from_parts(parts, body);
    let target = Target::plain(app);
    let result = if h2 {
        shared
            .app_pools
            .send_h2(target, req)
            .await
            .map(|r| r.map(body::boxed))
    } else if asked.is_some() {
        let settings = ConnSettings::default();
        shared
            .app_pools
            .send_upgrade(target, req, &settings, &upstream::unobserved)
            .await
    } else {
        shared.app_pools.send_h1(target, req).await
    };
    match result {
        Ok(mut resp) => {
            let upgraded = upgrade::answer(&m, upgrade::DESTINATION, asked, &mut resp);
            if let Some(headers) = shown_limit {
                resp.headers_mut().extend(headers);
            }
            let service_time = start.elapsed();
            let resp = tag(observe, resp, || routed().after(service_time));
            if let Some(pair) = upgraded {
                let stop = ctx.drain.clone();
                upgrade::splice(Arc::clone(&m), upgrade::DESTINATION, pair, (), stop);
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
            let resp = report.local(local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg), flag);
            tag(observe, resp, || routed().flagged(flag))
        }
    }
}
