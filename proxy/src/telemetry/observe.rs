//! One request's telemetry: the trace decision made as it arrives ([`begin`],
//! always), what is kept about it when it is sampled or logged ([`Observed`]),
//! and the span and log line written when its response body ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use http::header::{HeaderMap, HeaderName, USER_AGENT};
use http::{Response, Version};

use super::access_log::{self, Entry};
use super::context::{self, TRACESTATE, TraceContext};
use super::otlp::{self, KeyValue, SpanKind};
use super::time::unix_nanos;
use super::{FinishedSpan, LogEncoding, Outcome, Sinks, TagValue, TelemetryConfig};
use crate::body::{self, Body, End, Finishing};
use crate::model::{Text, WorkloadMeta};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Which listener a request arrived on: outbound requests get CLIENT spans,
/// inbound ones SERVER spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Outbound,
    Inbound,
}

/// The trace decision for one request.
#[derive(Clone, Copy, Debug)]
pub struct Begun {
    /// The context written on the forwarded request (this proxy's span).
    pub context: TraceContext,
    /// A span is built and exported.
    pub export: bool,
    /// An access-log line is written.
    pub log: bool,
    /// The incoming `tracestate` belongs to the context.
    w3c: bool,
}

impl Begun {
    /// Whether anything is recorded when the request ends.
    pub fn observed(&self) -> bool {
        self.export || self.log
    }
}

/// Reads the request's trace context, decides sampling, writes this proxy's
/// context (W3C and B3) and an `x-request-id` when absent. Cheap: no span is
/// built here.
pub fn begin(cfg: &TelemetryConfig, side: Side, headers: &mut HeaderMap) -> Begun {
    // One pass over the names instead of a look-up per trace header: requests
    // straight from an app usually carry none, and a request id only sometimes.
    let (mut traced, mut has_id) = (false, false);
    for name in headers.keys() {
        if context::is_trace_header(name) {
            traced = true;
        } else if name == REQUEST_ID {
            has_id = true;
        }
    }
    let incoming = if traced {
        context::extract(headers)
    } else {
        context::Incoming::default()
    };
    let tracing = cfg.tracing.as_ref();
    let percent = tracing.map_or(0.0, |t| t.sampling_percent);
    let sample = || percent > 0.0 && fastrand::f64() * 100.0 < percent;
    // Whether this side reports a span for the request.
    let reports = tracing.is_some_and(|t| t.spans_on(side));
    let (ctx, write) = match (reports, incoming.parent.is_some(), tracing.is_some()) {
        // A span of ours: the next hop is its child.
        (true, _, _) => (TraceContext::child_of(&incoming, sample), true),
        // No span here: the incoming context goes on as it came, and is
        // rewritten only to add a format the caller did not send (a peer
        // sidecar sends both, so the hop after it costs nothing).
        (false, true, _) => (
            TraceContext::passed_through(&incoming, sample),
            !(incoming.w3c && headers.contains_key(context::B3_TRACE_ID)),
        ),
        // No context and no tracing at all: start a trace, so requests are
        // correlated even before tracing is turned on (as Envoy's default).
        (false, false, false) => (TraceContext::child_of(&incoming, sample), true),
        // No context, and the tracing mode excludes this side: start none,
        // so the first span reported is the trace's root rather than the
        // child of a span nobody exports.
        (false, false, true) => (TraceContext::passed_through(&incoming, sample), false),
    };
    if write {
        context::write(headers, &ctx, incoming.w3c, incoming.b3_single, traced);
    }
    if !has_id {
        headers.insert(REQUEST_ID, crate::http_util::request_id());
    }
    let export = ctx.sampled && reports && tracing.is_some_and(|t| !t.otlp_endpoint.is_empty());
    Begun {
        context: ctx,
        export,
        log: cfg.access_log.as_ref().is_some_and(|a| a.logs_on(side)),
        w3c: incoming.w3c,
    }
}

/// The request facts telemetry needs, read before the request moves on.
pub struct RequestFacts<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub version: Version,
    pub authority: Option<&'a str>,
    pub downstream_remote: SocketAddr,
    pub downstream_local: Option<SocketAddr>,
    pub requested_server_name: Option<&'a str>,
    pub downstream_principal: Option<&'a str>,
}

impl<'a> RequestFacts<'a> {
    /// The facts of `req` from a caller at `remote` to `local` (no TLS peer).
    pub fn of<B>(req: &'a http::Request<B>, remote: SocketAddr, local: Option<SocketAddr>) -> Self {
        RequestFacts {
            headers: req.headers(),
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            authority: crate::http_util::authority_of(req.uri(), req.headers()),
            downstream_remote: remote,
            downstream_local: local,
            requested_server_name: None,
            downstream_principal: None,
        }
    }
}

/// An observed request: everything its span and log line need.
pub struct Observed {
    side: Side,
    begun: Begun,
    start: Instant,
    start_wall: SystemTime,
    method: String,
    path: String,
    url: String,
    protocol: &'static str,
    authority: Option<String>,
    user_agent: Option<String>,
    forwarded_for: Option<String>,
    request_id: Option<String>,
    tracestate: String,
    downstream_remote: SocketAddr,
    downstream_local: Option<SocketAddr>,
    requested_server_name: Option<String>,
    downstream_principal: Option<String>,
    tags: Vec<(Text, String)>,
    service_name: Text,
    encoding: LogEncoding,
    /// The access log's filter and the headers it reads, as they arrived.
    filter: Option<(Arc<sluice_api::cel::Expr>, FilterHeaders)>,
    me: WorkloadMeta,
    request_bytes: Arc<AtomicU64>,
}

/// `(lower-case name, value)` of each request header an access-log filter reads.
type FilterHeaders = Vec<(String, Option<String>)>;

/// `%PROTOCOL%` of a request version.
pub fn protocol_name(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl Observed {
    /// Captures `facts` of a request `begun` said to observe; `request_bytes`
    /// is the counter the request body adds to.
    pub fn new(
        begun: Begun,
        side: Side,
        cfg: &TelemetryConfig,
        me: &WorkloadMeta,
        facts: &RequestFacts<'_>,
        request_bytes: Arc<AtomicU64>,
    ) -> Self {
        let header = |name: &HeaderName| {
            facts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let path = facts
            .uri
            .path_and_query()
            .map_or_else(|| facts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let scheme = facts.uri.scheme_str().unwrap_or("http");
        let url = format!("{scheme}://{}{path}", facts.authority.unwrap_or(""));
        let tracing = cfg.tracing.as_ref().filter(|_| begun.export);
        let tags = tracing
            .map(|t| {
                t.custom_tags
                    .iter()
                    .map(|tag| {
                        let value = match &tag.value {
                            TagValue::Literal(v) => v.as_str().to_owned(),
                            TagValue::Environment { value, .. } => value.as_str().to_owned(),
                            TagValue::Header { name, default } => facts
                                .headers
                                .get(name.as_str())
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or(default.as_str())
                                .to_owned(),
                        };
                        (tag.name.clone(), value)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Observed {
            side,
            begun,
            start: Instant::now(),
            start_wall: SystemTime::now(),
            method: facts.method.as_str().to_owned(),
            path,
            url,
            protocol: protocol_name(facts.version),
            authority: facts.authority.map(str::to_owned),
            user_agent: header(&USER_AGENT),
            forwarded_for: header(&FORWARDED_FOR),
            request_id: header(&REQUEST_ID),
            tracestate: if begun.w3c {
                header(&TRACESTATE).unwrap_or_default()
            } else {
                String::new()
            },
            downstream_remote: facts.downstream_remote,
            downstream_local: facts.downstream_local,
            requested_server_name: facts.requested_server_name.map(str::to_owned),
            downstream_principal: facts.downstream_principal.map(str::to_owned),
            tags,
            service_name: tracing.map(|t| t.service_name.clone()).unwrap_or_default(),
            encoding: cfg
                .access_log
                .as_ref()
                .map_or(LogEncoding::Text, |a| a.encoding),
            filter: cfg.access_log.as_ref().filter(|_| begun.log).and_then(|a| {
                let expr = a.filter_expr.clone()?;
                let headers = a
                    .filter_headers
                    .iter()
                    .map(|n| {
                        (
                            n.clone(),
                            facts
                                .headers
                                .get(n.as_str())
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                        )
                    })
                    .collect();
                Some((expr, headers))
            }),
            me: me.clone(),
            request_bytes,
        }
    }

    /// Records the span and log line when `resp`'s body ends (at once for a
    /// body that is already complete).
    pub fn finish(self, sinks: Arc<Sinks>, mut resp: Response<Body>) -> Response<Body> {
        let outcome = resp
            .extensions_mut()
            .remove::<Outcome>()
            .unwrap_or_default();
        let status = resp.status().as_u16();
        resp.map(move |b| {
            body::boxed(Finishing::new(b, move |end: End| {
                self.record(&sinks, &outcome, status, &end);
            }))
        })
    }

    fn record(&self, sinks: &Sinks, outcome: &Outcome, status: u16, end: &End) {
        let received = self.request_bytes.load(Ordering::Relaxed);
        let end_wall = SystemTime::now();
        if self.begun.export {
            let span = self.span(sinks, outcome, status, received, end.bytes, end_wall);
            sinks.span(FinishedSpan {
                service_name: self.service_name.clone(),
                span,
            });
        }
        if self.begun.log {
            let details = if outcome.details.is_empty() {
                "via_upstream"
            } else {
                outcome.details
            };
            let termination = (!end.complete).then_some("downstream_or_upstream_reset");
            let upstream_host = outcome.upstream_host.map(|a| a.to_string());
            let local = self.downstream_local.map(|a| a.to_string());
            // The inbound side knows only the caller's IP (port 0).
            let remote = match self.downstream_remote.port() {
                0 => self.downstream_remote.ip().to_string(),
                _ => self.downstream_remote.to_string(),
            };
            let trace_id = context::trace_id_hex(self.begun.context.trace_id);
            let entry = Entry {
                start_time: self.start_wall,
                method: Some(&self.method),
                path: Some(&self.path),
                protocol: Some(self.protocol),
                response_code: status,
                response_flags: outcome.flags.as_str(),
                response_code_details: Some(details),
                connection_termination_details: termination,
                upstream_transport_failure_reason: None,
                bytes_received: received,
                bytes_sent: end.bytes,
                duration: self.start.elapsed(),
                upstream_service_time: outcome.upstream_service_time,
                x_forwarded_for: self.forwarded_for.as_deref(),
                user_agent: self.user_agent.as_deref(),
                request_id: self.request_id.as_deref(),
                authority: self.authority.as_deref(),
                upstream_host: upstream_host.as_deref(),
                upstream_cluster: Some(outcome.cluster.as_str()),
                upstream_local_address: None,
                downstream_local_address: local.as_deref(),
                downstream_remote_address: Some(&remote),
                requested_server_name: self.requested_server_name.as_deref(),
                route_name: outcome.route_name.as_deref(),
                upstream_peer_principal: outcome.upstream_principal.as_ref().map(Text::as_str),
                downstream_peer_principal: self.downstream_principal.as_deref(),
                trace_id: Some(&trace_id),
            };
            if let Some((expr, headers)) = &self.filter {
                let logged = super::filter::Logged {
                    entry: &entry,
                    headers,
                    scheme: self.url.split("://").next().unwrap_or("http"),
                };
                if !expr.matches(&logged) {
                    return;
                }
            }
            sinks.line(access_log::format(self.encoding, &entry));
        }
    }

    fn span(
        &self,
        sinks: &Sinks,
        outcome: &Outcome,
        status: u16,
        request_size: u64,
        response_size: u64,
        end_wall: SystemTime,
    ) -> otlp::Span {
        let ctx = &self.begun.context;
        let name = match &outcome.operation {
            Some(op) => op.clone(),
            None => format!("{}/*", self.authority.as_deref().unwrap_or("-")),
        };
        let s = |k: &str, v: &str| KeyValue::string(k, v);
        let mut attributes = vec![
            s("node_id", sinks.node_id.as_str()),
            s("component", "proxy"),
            s("http.method", &self.method),
            s("http.url", &self.url),
            s("http.protocol", self.protocol),
            s("http.status_code", &status.to_string()),
            s("upstream_cluster", or_dash(outcome.cluster.as_str())),
            s("upstream_cluster.name", or_dash(outcome.cluster.as_str())),
            s("istio.canonical_service", self.me.app.as_str()),
            s("istio.canonical_revision", self.me.version.as_str()),
            s("istio.namespace", self.me.namespace.as_str()),
            s("istio.mesh_id", sinks.mesh_id.as_str()),
            s("peer.address", &self.downstream_remote.ip().to_string()),
            s("request_size", &request_size.to_string()),
            s("response_size", &response_size.to_string()),
            s("response_flags", or_dash(outcome.flags.as_str())),
            s(
                "guid:x-request-id",
                self.request_id.as_deref().unwrap_or("-"),
            ),
            s("user_agent", self.user_agent.as_deref().unwrap_or("-")),
        ];
        if status >= 500 {
            attributes.push(s("error", "true"));
        }
        for (k, v) in &self.tags {
            attributes.push(s(k.as_str(), v));
        }
        otlp::Span {
            trace_id: ctx.trace_id.to_be_bytes().to_vec(),
            span_id: ctx.span_id.to_be_bytes().to_vec(),
            trace_state: self.tracestate.clone(),
            parent_span_id: ctx
                .parent_span_id
                .map(|p| p.to_be_bytes().to_vec())
                .unwrap_or_default(),
            name,
            kind: match self.side {
                Side::Outbound => SpanKind::Client as i32,
                Side::Inbound => SpanKind::Server as i32,
            },
            start_time_unix_nano: unix_nanos(self.start_wall),
            end_time_unix_nano: unix_nanos(end_wall),
            attributes,
            status: (status >= 500).then(|| otlp::Status {
                message: String::new(),
                code: otlp::STATUS_ERROR,
            }),
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[cfg(test)]
mod tests;
