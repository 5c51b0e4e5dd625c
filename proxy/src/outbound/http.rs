//! Outbound HTTP: virtual host and route selection, then the route's action
//! (forward with rewrite, header ops and load balancing; redirect; direct response).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::attempts::{self, Ending, Exchange, HashKeys, Picked, Source};
use super::mirror::{self, Template};
use super::{ConnCtx, fault};
use crate::balance::pick_weighted;
use crate::body::{self, Body, Counted, Direction, GrpcFrames, GrpcMessages, Replay, Tee};
use crate::cors;
use crate::http_util::{
    BadTarget, UpstreamTarget, authority_of, is_grpc, local_reply, strip_hop_by_hop,
};
use crate::matching::{Matched, RequestView, host_of, port_of, select_vhost};
use crate::metrics::{self, Metrics, Principals, ServiceLabels, TagFacts};
use crate::model::{Action, Cluster, Route, Running, Text, WeightedCluster, WorkloadMeta};
use crate::path_normalization;
use crate::report::{Report, join_flags};
use crate::retry::Failure;
use crate::rewrite::{path_and_query, redirect_location, rewritten_path};
use crate::source_meta;
use crate::state::Shared;
use crate::telemetry::{self, Observed, Outcome, RequestFacts, Side};
use crate::upgrade;

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
    /// The messages of a gRPC call (`None` for other requests).
    messages: Option<Arc<GrpcMessages>>,
    /// The app's HTTP version (how it would leave: closed connection or reset stream).
    caller: http::Version,
    /// Telemetry wants an [`Outcome`] on every response.
    observe: bool,
    /// What a Telemetry's label expressions read of the request, if any do.
    facts: Option<Box<TagFacts>>,
}

impl Reporting<'_> {
    /// The request body, its bytes (and a gRPC call's messages) counted.
    fn counted(&self, body: Incoming) -> Body {
        let body = Counted::new(body, Arc::clone(&self.request_bytes));
        match &self.messages {
            Some(m) => body::boxed(GrpcFrames::new(body, Arc::clone(m), Direction::Request)),
            None => body::boxed(body),
        }
    }

    /// Attaches what telemetry needs to know about `resp`, when it is observed.
    fn tag(&self, mut resp: Response<Body>, outcome: impl FnOnce() -> Outcome) -> Response<Body> {
        if self.observe {
            resp.extensions_mut().insert(outcome());
        }
        resp
    }

    /// A report for a request to `service` that reached no endpoint.
    fn report(&self, service: &ServiceLabels) -> Report {
        self.report_to(service, &WorkloadMeta::default(), None)
    }

    /// A report for a request to `service` sent to `destination`, over a
    /// connection with `principals` when it is mesh mTLS.
    fn report_to(
        &self,
        service: &ServiceLabels,
        destination: &WorkloadMeta,
        principals: Option<Principals<'_>>,
    ) -> Report {
        let m = self.metrics;
        let labels = m.request_labels(
            &m.words.source,
            self.me,
            destination,
            service,
            self.protocol,
            &m.words.no_flags,
            &m.words.unknown,
            principals,
        );
        Report::new(
            Arc::clone(m),
            labels,
            self.start,
            Arc::clone(&self.request_bytes),
            self.caller,
        )
        .with_facts(self.facts.clone())
        .with_messages(self.messages.clone())
    }

    /// Records and returns a reply the proxy generated about `service`.
    fn reply(
        &self,
        service: &ServiceLabels,
        status: StatusCode,
        msg: &str,
        flag: &Text,
    ) -> Response<Body> {
        let resp = self.report(service).local(local_reply(status, msg), flag);
        self.tag(resp, || Outcome::local(flag))
    }
}

/// A request for a host no service in scope covers. Captured, it goes to
/// the address the app connected to (`dst`), in plaintext and with the
/// caller's protocol version (Envoy's PassthroughCluster); sent to the
/// proxy explicitly (`dst` is then the port asked for), there is no such
/// address and it gets a 404. Under
/// `REGISTRY_ONLY` either gets Istio's `block_all` answer: a 502 from the
/// proxy. `destination_service_name` says which.
async fn passthrough(
    shared: &Arc<Shared>,
    running: &Running,
    rep: &Reporting<'_>,
    req: Request<Incoming>,
    dst: Result<std::net::SocketAddr, u16>,
    authority: &str,
    host: &str,
) -> Response<Body> {
    let m = rep.metrics;
    let registry_only = running.config.registry_only;
    let dst = match dst {
        Ok(dst) => dst,
        Err(port) if !registry_only => {
            let service = service_labels(&Text::from(host));
            let msg = format!("sluice-proxy: no virtual host for {host}:{port}");
            return rep.reply(&service, StatusCode::NOT_FOUND, &msg, &m.words.nr);
        }
        // Refused below without being forwarded anywhere.
        Err(_) => std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    m.passthrough(registry_only, "http");
    let service = ServiceLabels {
        service: Text::from(host),
        name: if registry_only {
            m.words.black_hole.clone()
        } else {
            m.words.passthrough.clone()
        },
        namespace: Text::default(),
    };
    if registry_only {
        let msg = format!(
            "sluice-proxy: {authority} is not a service of the mesh (outboundTrafficPolicy REGISTRY_ONLY)"
        );
        return rep.reply(&service, StatusCode::BAD_GATEWAY, &msg, &m.words.no_flags);
    }
    let report = rep.report(&service);
    let h2 = req.version() == http::Version::HTTP_2;
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let shaped = UpstreamTarget::unchanged(&parts, authority).and_then(|t| t.shape(&mut parts, h2));
    if let Err(e) = shaped {
        let msg = format!("sluice-proxy: {e}");
        let resp = report.local(
            local_reply(StatusCode::BAD_REQUEST, &msg),
            &m.words.no_flags,
        );
        return rep.tag(resp, || Outcome::local(&m.words.no_flags));
    }
    let body = rep.counted(body);
    let req = Request::from_parts(parts, body);
    let target = crate::upstream::Target::plain(dst);
    let result = if h2 {
        shared
            .app_pools
            .send_h2(target, req)
            .await
            .map(|r| r.map(body::boxed))
    } else {
        shared.app_pools.send_h1(target, req).await
    };
    let outcome = || Outcome {
        cluster: m.words.passthrough.clone(),
        upstream_host: Some(dst),
        ..Outcome::default()
    };
    match result {
        Ok(resp) => {
            let resp = rep.tag(resp, outcome);
            report.streamed(resp, ())
        }
        Err(e) => {
            tracing::debug!(%dst, error = %e, "passthrough request failed");
            let flag = if e.is_connect_failure() {
                &m.words.uf
            } else {
                &m.words.uc
            };
            let msg = format!("sluice-proxy: {e}");
            let resp = report.local(local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg), flag);
            rep.tag(resp, || outcome().flagged(flag))
        }
    }
}

/// Handles one request from the local application.
pub async fn handle(
    shared: Arc<Shared>,
    ctx: ConnCtx,
    mut req: Request<Incoming>,
) -> Response<Body> {
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
    let telemetry = &running.config.telemetry;
    // Room for what this side adds (trace context, request id, identity,
    // attempt count) in one growth instead of one rehash per doubling.
    req.headers_mut().reserve(OUTBOUND_ADDED_HEADERS);
    let begun = telemetry::begin(telemetry, Side::Outbound, req.headers_mut());
    // Before anything reads the path: routing, telemetry and the upstream
    // all see the normalized one, as behind Envoy's connection manager.
    let normalized = path_normalization::at_entry(
        req.uri_mut(),
        running.config.path_normalization,
        &shared.metrics.security,
        metrics::Side::Outbound,
    );
    let request_bytes = Arc::new(AtomicU64::new(0));
    if !begun.observed() {
        return match normalized {
            Ok(()) => route(&shared, &running, ctx, req, start, request_bytes, false).await,
            Err(_) => path_normalization::rejected(),
        };
    }
    let local = ctx.orig_dst.unwrap_or(shared.settings.outbound);
    let facts = RequestFacts::of(&req, ctx.peer, Some(local));
    let me = shared.self_meta(Some(&running));
    let bytes = Arc::clone(&request_bytes);
    let observed = Observed::new(begun, Side::Outbound, telemetry, me, &facts, bytes);
    let resp = match normalized {
        Ok(()) => route(&shared, &running, ctx, req, start, request_bytes, true).await,
        Err(_) => path_rejected(&shared.metrics),
    };
    observed.finish(Arc::clone(&shared.telemetry), resp)
}

/// The 400 for a path normalization refused, as telemetry sees it.
fn path_rejected(m: &Metrics) -> Response<Body> {
    let mut resp = path_normalization::rejected();
    let outcome = Outcome::local(&m.words.no_flags).detailed(path_normalization::REJECTED_DETAILS);
    resp.extensions_mut().insert(outcome);
    resp
}

/// Headers the outbound side may add to a request (B3 and W3C trace context,
/// `x-request-id`, four identity headers, the attempt count and a spare).
const OUTBOUND_ADDED_HEADERS: usize = 12;

/// Routes a request: virtual host, route, then the route's action.
async fn route(
    shared: &Arc<Shared>,
    running: &Arc<Running>,
    ctx: ConnCtx,
    req: Request<Incoming>,
    start: Instant,
    request_bytes: Arc<AtomicU64>,
    observe: bool,
) -> Response<Body> {
    let Some(authority) = authority_of(req.uri(), req.headers()).map(str::to_owned) else {
        return local_reply(
            StatusCode::BAD_REQUEST,
            "sluice-proxy: request has no authority (Host)",
        );
    };
    let m = &shared.metrics;
    let grpc = is_grpc(req.headers());
    let rep = Reporting {
        metrics: m,
        me: shared.self_meta(Some(running)),
        protocol: if grpc { &m.words.grpc } else { &m.words.http },
        start,
        request_bytes,
        messages: grpc.then(Arc::default),
        caller: req.version(),
        observe,
        facts: m.wants_tag_facts(&m.words.source).map(|plans| {
            let mut f = TagFacts::of_head(
                req.method(),
                req.uri(),
                req.version(),
                req.headers(),
                plans.headers(),
            );
            f.source = Some(ctx.peer);
            // The service port the app called (iptables), else the authority's.
            f.destination = ctx.orig_dst.or_else(|| {
                let port = crate::matching::port_of(&authority).unwrap_or(80);
                Some(std::net::SocketAddr::new(
                    shared.settings.outbound.ip(),
                    port,
                ))
            });
            Box::new(f)
        }),
    };
    let host = host_of(&authority);
    let port = port_of(&authority)
        .or(ctx.orig_dst.map(|d| d.port()))
        .unwrap_or(80);
    let Some(vh) = select_vhost(&running.config, &host, port) else {
        // A TCP service's port (declared TCP, or made TCP by a Sidecar
        // egress listener): its listener proxies bytes, HTTP or not.
        if ctx.orig_dst.is_none()
            && let Some(svc) = crate::tcp::service_for_name(&running.config, &host, port)
        {
            return http_over_tcp(shared, running, ctx, req, svc).await;
        }
        // A host no service in scope covers: Istio's `ALLOW_ANY` sends
        // captured traffic where the app sent it; `REGISTRY_ONLY` refuses it.
        let dst = ctx.orig_dst.ok_or(port);
        return passthrough(shared, running, &rep, req, dst, &authority, &host).await;
    };
    // Labels for the proxy's own answers; a forwarded request reports its cluster's.
    let vh_service = || service_labels(&vh.service);
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
        return rep.reply(&vh_service(), StatusCode::NOT_FOUND, &msg, &m.words.nr);
    };
    match &route.action {
        Action::DirectResponse { status, body } => {
            let mut resp = Response::new(body::full(body.clone()));
            *resp.status_mut() = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            // Envoy's local reply labels a body; the route's headers may relabel it.
            if !body.is_empty() {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            route.response_headers.apply(resp.headers_mut());
            let report = rep.report(&vh_service());
            let resp = report.local(resp, &m.words.no_flags);
            rep.tag(resp, || Outcome::direct(route))
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
            let report = rep.report(&vh_service());
            let resp = report.local(resp, &m.words.no_flags);
            rep.tag(resp, || Outcome::direct(route))
        }
        Action::Forward(dests) => {
            // The CORS filter runs before fault injection and the router.
            let cors = match &route.cors {
                Some(policy) => match cors::check(policy, req.method(), req.headers(), m) {
                    cors::Verdict::Answer(resp) => {
                        let report = rep.report(&vh_service());
                        let resp = report.local(resp, &m.words.no_flags);
                        return rep.tag(resp, || Outcome::direct(route).detailed("cors_response"));
                    }
                    cors::Verdict::Allowed(origin) => Some((policy, origin)),
                    cors::Verdict::Pass => None,
                },
                None => None,
            };
            let mut resp = async {
                let Some(dest) = pick_weighted(dests) else {
                    let msg = "sluice-proxy: route has no destination";
                    return rep.reply(
                        &vh_service(),
                        StatusCode::SERVICE_UNAVAILABLE,
                        msg,
                        &m.words.nr,
                    );
                };
                let Some(cluster) = running.config.cluster(&dest.cluster) else {
                    let msg = format!("sluice-proxy: cluster {} not found", dest.cluster);
                    return rep.reply(
                        &vh_service(),
                        StatusCode::SERVICE_UNAVAILABLE,
                        &msg,
                        &m.words.nc,
                    );
                };
                let forwarding = Forwarding {
                    running,
                    route,
                    matched,
                    dest,
                    cluster,
                    authority: &authority,
                };
                forward(shared, ctx, req, forwarding, &rep).await
            }
            .await;
            // Every answer to an allowed origin, the app's or the proxy's own.
            if let Some((policy, origin)) = cors {
                cors::decorate(policy, origin, resp.headers_mut());
            }
            resp
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
    mut req: Request<Incoming>,
    f: Forwarding<'_>,
    rep: &Reporting<'_>,
) -> Response<Body> {
    let words = &rep.metrics.words;
    let asked = upgrade::take(&mut req);
    let cluster = f.cluster;
    let routed = || Outcome::routed(cluster, Some(f.route));
    let service = ServiceLabels {
        service: cluster.service.clone(),
        name: cluster.service_name.clone(),
        namespace: cluster.service_namespace.clone(),
    };
    let picked = Picked::new();
    let mut pending = Pending {
        rep,
        service: &service,
        flags: &words.no_flags,
        picked: &picked,
        cluster,
        taken: false,
    };
    if let Some(fault) = &f.route.fault {
        let injected = fault::decide(fault);
        if injected.delayed {
            // An app that leaves during the delay is reported with it.
            pending.flags = &words.di;
            fault::delay(fault).await;
        }
        if let Some(abort) = &injected.abort {
            let flag = if injected.delayed {
                &words.di_fi
            } else {
                &words.fi
            };
            let report = pending.take(Reached::Nothing);
            let resp = report.local(fault::abort_response(abort), flag);
            return rep.tag(resp, || routed().flagged(flag));
        }
    }
    let flags = pending.flags;
    let hash = HashKeys::of(&req, ctx.peer.ip(), &cluster.load_balancer);
    // A mirror cannot take part in an upgraded connection.
    let mirrors = match asked {
        Some(_) => Vec::new(),
        None => mirror::chosen(&f.route.mirrors),
    };
    let (mut parts, body, template) = build_request(req, &f, !mirrors.is_empty());
    // For attempts to peer sidecars; an attempt elsewhere removes it.
    add_identity(&mut parts.headers, Some(rep.me));
    let body = rep.counted(body);
    let body = match template {
        Some(template) => {
            // Mirrors get a copy of the body once the primary has streamed it.
            let (b, copy) = if body.is_end_stream() {
                (body, None)
            } else {
                let (tee, rx) = Tee::new(body, mirror::BODY_CAP);
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
            b
        }
        None => body,
    };
    let policy = f.route.retries.as_ref().filter(|p| p.attempts > 0);
    let source = if policy.is_some() {
        Source::Replay(Replay::new(body))
    } else {
        Source::Once(Some(body))
    };
    let target = checked_upstream_target(&parts, &f);
    let exchange = Exchange {
        shared,
        cluster,
        policy,
        parts,
        target,
        hash,
        upgrade: asked.as_ref().map(|u| u.protocol.clone()),
        deadline: (f.route.timeout_ms > 0)
            .then(|| tokio::time::Instant::now() + Duration::from_millis(f.route.timeout_ms)),
        picked: &picked,
    };
    let ending = exchange.run(source).await;
    let service_time = rep.start.elapsed();
    match ending {
        Ending::Answer {
            mut resp,
            endpoint,
            hold,
            set_cookie,
            exhausted,
        } => {
            let flags = if exhausted {
                join_flags(flags, &words.urx)
            } else {
                flags.clone()
            };
            let report = pending.take(Reached::Answer).with_flags(&flags);
            let upgraded = upgrade::answer(rep.metrics, upgrade::SOURCE, asked, &mut resp);
            apply_header_ops(f.route, f.dest, false, resp.headers_mut());
            if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                resp.headers_mut().append(header::SET_COOKIE, cookie);
            }
            let resp = rep.tag(resp, || {
                let at = cluster.endpoints.get(endpoint);
                routed()
                    .flagged(&flags)
                    .at(at)
                    .after(service_time)
                    .detailed("")
            });
            match upgraded {
                Some(pair) => {
                    let metrics = Arc::clone(rep.metrics);
                    let hold = hold.without_retry();
                    let stop = shared.shutdown.clone();
                    upgrade::splice(metrics, upgrade::SOURCE, pair, hold, stop);
                    report.streamed(resp, ())
                }
                None => report.streamed(resp, hold),
            }
        }
        Ending::Failed {
            failure,
            message,
            endpoint,
            exhausted,
        } => {
            // A connect failure has no upstream connection (no principals).
            let report = pending.take(match failure {
                Failure::Connect => Reached::Nothing,
                _ => Reached::Connection,
            });
            let (status, flag) = match failure {
                Failure::Connect => (StatusCode::SERVICE_UNAVAILABLE, &words.uf),
                Failure::PerTryTimeout => (StatusCode::GATEWAY_TIMEOUT, &words.ut),
                Failure::Reset | Failure::RefusedStream => {
                    (StatusCode::SERVICE_UNAVAILABLE, &words.uc)
                }
            };
            let mut flag = join_flags(flags, flag);
            if exhausted {
                flag = join_flags(&flag, &words.urx);
            }
            let resp = report.local(local_reply(status, &message), &flag);
            rep.tag(resp, || {
                routed().flagged(&flag).at(cluster.endpoints.get(endpoint))
            })
        }
        Ending::RouteTimeout => {
            let resp = local_reply(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout");
            let report = pending.take(Reached::Connection);
            let flags = join_flags(flags, &words.ut);
            let resp = report.local(resp, &flags);
            rep.tag(resp, || routed().flagged(&flags))
        }
        Ending::Overflow => {
            let report = pending.take(Reached::Nothing);
            let flags = join_flags(flags, &words.uo);
            let resp = report.local(attempts::overloaded(), &flags);
            rep.tag(resp, || routed().flagged(&flags))
        }
        Ending::NoHealthy => {
            // Envoy: a cluster Istio never built (`NC`), or one with no
            // endpoint to take the request (`UH`).
            let (msg, flag) = if cluster.missing {
                let msg = format!("sluice-proxy: cluster {} not found", cluster.name);
                (msg, &words.nc)
            } else {
                let msg = format!("sluice-proxy: no healthy upstream in {}", cluster.name);
                (msg, &words.uh)
            };
            let reply = local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg);
            let resp = pending.take(Reached::Nothing).local(reply, flag);
            rep.tag(resp, || routed().flagged(flag))
        }
        Ending::Bad(msg) => {
            let report = pending.take(Reached::Nothing);
            let msg = format!("sluice-proxy: {msg}");
            let resp = local_reply(StatusCode::INTERNAL_SERVER_ERROR, &msg);
            let resp = report.local(resp, &words.no_flags);
            rep.tag(resp, || routed().detailed("internal_error"))
        }
    }
}

/// A forwarded request until its outcome is known. Taken, it makes the
/// request's report naming the endpoint the latest attempt picked: Istio's
/// client side falls back to the upstream host's metadata when no answer
/// (and so no peer metadata) came back, and takes the principals from the
/// upstream TLS connection. Dropped untaken (the app went away during a
/// fault delay or the exchange), it reports the request as unanswered.
struct Pending<'a> {
    rep: &'a Reporting<'a>,
    service: &'a ServiceLabels,
    /// Flags set so far (a fault delay).
    flags: &'a Text,
    picked: &'a Picked,
    cluster: &'a Cluster,
    taken: bool,
}

/// How far a forwarded request got with the endpoint its latest attempt picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reached {
    /// It answered.
    Answer,
    /// A connection, but no answer (timeout, reset): the principals are the
    /// connection's, the workload only the endpoint's metadata.
    Connection,
    /// Not even a connection (connect failure, pool overflow), or no endpoint.
    Nothing,
}

impl Pending<'_> {
    /// The request's report, as far as it `reached` the endpoint.
    fn take(mut self, reached: Reached) -> Report {
        self.taken = true;
        self.report(reached)
    }

    fn report(&self, reached: Reached) -> Report {
        let endpoint = self.picked.get().and_then(|(i, mtls)| {
            let ep = self.cluster.endpoints.get(i)?;
            Some((ep, mtls))
        });
        let Some((ep, mtls)) = endpoint else {
            return self.rep.report(self.service).with_flags(self.flags);
        };
        let principals = (mtls && reached != Reached::Nothing).then_some(Principals {
            source: &self.rep.me.principal,
            destination: &ep.workload.principal,
        });
        let mut report = self.rep.report_to(self.service, &ep.workload, principals);
        if reached != Reached::Answer {
            report.endpoint_metadata_only();
        }
        report.with_flags(self.flags)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.taken {
            // Mid-exchange, the attempt's connection is usually up; the
            // report records the request as its caller's leaving.
            drop(self.report(Reached::Connection));
        }
    }
}

/// Removes the caller-metadata headers, so neither an app nor a route's header
/// operations can forge them; [`add_identity`] then sets them per attempt.
pub(super) fn strip_identity(headers: &mut http::HeaderMap) {
    // Usually none is present: one pass over the names beats six removals.
    if headers
        .keys()
        .any(|k| k.as_str().starts_with(source_meta::SOURCE_PREFIX))
    {
        source_meta::remove_all(headers);
    }
}

/// Sets the caller-metadata header from `identity` (requests to a peer
/// sidecar) on headers [`strip_identity`] has cleared.
pub(super) fn add_identity(headers: &mut http::HeaderMap, identity: Option<&WorkloadMeta>) {
    if let Some(v) = identity.and_then(identity_value) {
        headers.insert(source_meta::SOURCE_META, v);
    }
}

/// The metadata header value of the last workload metadata seen.
struct IdentityValue {
    meta: [Text; 4],
    value: Option<HeaderValue>,
}

/// Built once per metadata instead of on every request; a clone shares the bytes.
static IDENTITY: std::sync::RwLock<Option<IdentityValue>> = std::sync::RwLock::new(None);

/// The caller-metadata value (`x-sluice-source-meta`) of this workload.
pub(crate) fn identity_value(me: &WorkloadMeta) -> Option<HeaderValue> {
    let meta = [&me.workload, &me.namespace, &me.app, &me.version];
    let same = |c: &IdentityValue| c.meta.iter().zip(meta).all(|(a, b)| a == b);
    {
        let cached = IDENTITY.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref().filter(|c| same(c)) {
            return c.value.clone();
        }
    }
    let value = source_meta::encode(meta.map(Text::as_str));
    let fresh = IdentityValue {
        meta: meta.map(Text::clone),
        value: value.clone(),
    };
    *IDENTITY.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
    value
}

/// The request after rewrites and header ops, before protocol shaping and
/// identity headers (those depend on the endpoint each attempt goes to).
fn build_request(
    req: Request<Incoming>,
    f: &Forwarding<'_>,
    mirrored: bool,
) -> (http::request::Parts, Incoming, Option<Template>) {
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    if !headers.contains_key(&FORWARDED_PROTO) {
        headers.insert(FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    match headers.get_mut(&REQUEST_ID) {
        // Unique per request: keep it out of the HPACK dynamic table.
        Some(id) => id.set_sensitive(true),
        None => {
            headers.insert(REQUEST_ID, crate::http_util::request_id());
        }
    }
    apply_header_ops(f.route, f.dest, true, headers);
    strip_identity(headers);
    let template = mirrored.then(|| {
        let (authority, path_and_query) = upstream_target(&parts, f);
        Template {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            authority,
            path_and_query,
            version: parts.version,
        }
    });
    (parts, body, template)
}

/// The authority and path the upstream sees, after the route's rewrites.
fn upstream_target(parts: &http::request::Parts, f: &Forwarding<'_>) -> (String, String) {
    let path = rewritten_path(f.route, f.matched, parts.uri.path());
    let pq = path_and_query(&path, parts.uri.query());
    (upstream_authority(f).to_owned(), pq)
}

/// [`upstream_target`], checked once for every attempt; the request's own
/// path and `Host` value are reused when no rewrite changes them.
fn checked_upstream_target(
    parts: &http::request::Parts,
    f: &Forwarding<'_>,
) -> Result<UpstreamTarget, BadTarget> {
    let authority = upstream_authority(f);
    match rewritten_path(f.route, f.matched, parts.uri.path()) {
        Cow::Borrowed(_) => UpstreamTarget::unchanged(parts, authority),
        Cow::Owned(path) => {
            UpstreamTarget::new(authority, &path_and_query(&path, parts.uri.query()))
        }
    }
}

/// The authority the upstream sees: the route's rewrite, else the chosen
/// destination's, else the request's.
fn upstream_authority<'a>(f: &'a Forwarding<'_>) -> &'a str {
    f.route
        .rewrite
        .authority
        .as_deref()
        .or(f.dest.authority.as_deref())
        .unwrap_or(f.authority)
}

/// Applies the header operations of the route and of the chosen destination
/// in Envoy's order: with one destination istiod folds the destination's
/// operations into the route's, after them (so they win); with several, they
/// sit on the weighted cluster, which Envoy applies before the route's (the
/// less specific level wins, `most_specific_header_mutations_wins` unset).
fn apply_header_ops(
    route: &Route,
    dest: &WeightedCluster,
    request: bool,
    headers: &mut http::HeaderMap,
) {
    let (route_ops, dest_ops) = if request {
        (&route.request_headers, &dest.request_headers)
    } else {
        (&route.response_headers, &dest.response_headers)
    };
    if matches!(&route.action, Action::Forward(c) if c.len() > 1) {
        dest_ops.apply(headers);
        route_ops.apply(headers);
    } else {
        route_ops.apply(headers);
        dest_ops.apply(headers);
    }
}

/// An HTTP request sent to the proxy explicitly for a TCP service's host
/// and port: forwarded over a connection to the service as a TCP proxy
/// would carry it (TCP metrics, no HTTP routing), as istiod's TCP listener
/// treats whatever bytes arrive on that port.
async fn http_over_tcp(
    shared: &Arc<Shared>,
    running: &Arc<Running>,
    ctx: ConnCtx,
    req: Request<Incoming>,
    svc: &crate::model::TcpService,
) -> Response<Body> {
    let up = match crate::tcp::connect_service(shared, running, svc, ctx.peer).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("sluice-proxy: {e}");
            return local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg);
        }
    };
    // The request is written to one end of a pipe whose other end is
    // relayed to the service, so the relay counts the bytes as TCP.
    let (near, far) = tokio::io::duplex(64 * 1024);
    let metrics = Arc::clone(&shared.metrics);
    tokio::spawn(async move {
        let _slot = up.slot;
        crate::tcp::relay(&metrics, &up.labels, far, up.stream, up.limits).await
    });
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(near)).await {
        Ok(pair) => pair,
        Err(e) => {
            let msg = format!("sluice-proxy: {e}");
            return local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg);
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP over a TCP service ended");
        }
    });
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // HTTP/1.1 needs `Host`; an HTTP/2 caller carried it as `:authority`.
    if !parts.headers.contains_key(header::HOST)
        && let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, v);
    }
    parts.version = http::Version::HTTP_11;
    // Origin form, as the app would have written it to the service.
    if let Some(pq) = parts.uri.path_and_query().cloned()
        && let Ok(uri) = http::Uri::try_from(pq.as_str())
    {
        parts.uri = uri;
    }
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(body::boxed),
        Err(e) => {
            let msg = format!("sluice-proxy: {e}");
            local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg)
        }
    }
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
    let up = match crate::tcp::connect_service(&shared, &running, svc, ctx.peer).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("sluice-proxy: {e}");
            return local_reply(StatusCode::SERVICE_UNAVAILABLE, &msg);
        }
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let _slot = up.slot;
                let io = TokioIo::new(upgraded);
                crate::tcp::relay(&shared.metrics, &up.labels, io, up.stream, up.limits).await
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(body::empty())
}
