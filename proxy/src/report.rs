//! Per-request metrics reporting: labels are prepared when the request comes
//! in and recorded when the response body ends (streamed), at once (local), or
//! when the request is dropped unanswered (its caller went away).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use http::Response;
use http_body::Body as _;

use crate::body::{self, Body, Direction, End, Finishing, GrpcFrames, GrpcMessages};
use crate::metrics::{Metrics, RequestLabels, TagFacts};
use crate::model::Text;

/// Counts a request against an endpoint while it is in flight.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Increments `counter` until dropped.
    pub fn start(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request being reported. Every request is recorded once: with its
/// answer, or, when it is dropped before one went out (the caller went away,
/// so the proxy stopped handling it), with response code 0 and Envoy's
/// downstream flag, as Envoy's stats run for every stream.
pub struct Report {
    metrics: Arc<Metrics>,
    labels: RequestLabels,
    start: Instant,
    request_bytes: Arc<AtomicU64>,
    /// What label expressions read of the request (only when some do).
    facts: Option<Box<TagFacts>>,
    /// The messages of a gRPC call (`None` for other requests).
    messages: Option<Arc<GrpcMessages>>,
    /// Stops the periodic reports of a gRPC call's messages when dropped.
    _ticking: Option<tokio::sync::oneshot::Sender<()>>,
    /// Not recorded yet.
    pending: bool,
    /// The caller's request came on an HTTP/2 stream (which it resets:
    /// `DR`), not an HTTP/1 connection (which it closes: `DC`).
    caller_h2: bool,
}

impl Report {
    /// Starts reporting with `labels` (code and flags are filled in at the
    /// end) a request that came in over `caller`'s HTTP version.
    pub fn new(
        metrics: Arc<Metrics>,
        labels: RequestLabels,
        start: Instant,
        request_bytes: Arc<AtomicU64>,
        caller: http::Version,
    ) -> Self {
        Report {
            metrics,
            labels,
            start,
            request_bytes,
            facts: None,
            messages: None,
            _ticking: None,
            pending: true,
            caller_h2: caller == http::Version::HTTP_2,
        }
    }

    /// Keeps `facts` of the request for a Telemetry's label expressions.
    pub fn with_facts(mut self, facts: Option<Box<TagFacts>>) -> Self {
        self.facts = facts;
        self
    }

    /// Counts the messages of a gRPC call (`messages`, whose request side
    /// the request body's [`GrpcFrames`] fills); the response body is
    /// counted here.
    pub fn with_messages(mut self, messages: Option<Arc<GrpcMessages>>) -> Self {
        self.messages = messages;
        self
    }

    /// Sets the response flags reported for a response that streams from
    /// upstream (or for the request, if its caller leaves before the answer).
    pub fn with_flags(mut self, flags: &Text) -> Self {
        self.labels.response_flags = flags.clone();
        self
    }

    /// Leaves out the destination labels Istio's client side does not have
    /// without an answer ([`Metrics::endpoint_metadata_only`]).
    pub fn endpoint_metadata_only(&mut self) {
        self.metrics.endpoint_metadata_only(&mut self.labels);
    }

    fn grpc(&self) -> bool {
        self.labels.request_protocol.as_str() == self.metrics.words.grpc.as_str()
    }

    /// Records a reply the proxy generated itself. An error answer to a
    /// gRPC request goes out in gRPC's form, as Envoy sends local replies
    /// ([`grpc_local`]).
    pub fn local(mut self, resp: Response<Body>, flags: &Text) -> Response<Body> {
        let grpc = self.grpc();
        let resp = if grpc { grpc_local(resp) } else { resp };
        let code = resp.status().as_u16();
        self.labels.response_code = code;
        if grpc {
            self.labels.grpc_response_status = match resp.headers().get("grpc-status") {
                Some(v) => self.metrics.grpc_status_label(v),
                None => self.metrics.grpc_status_of_http(code),
            };
        }
        self.labels.response_flags = flags.clone();
        let size = resp.body().size_hint().exact().unwrap_or(0);
        self.record(size);
        resp
    }

    /// Records an upstream response when its body ends; `guard` lives as long.
    pub fn streamed<G: Send + Unpin + 'static>(
        mut self,
        resp: Response<Body>,
        guard: G,
    ) -> Response<Body> {
        let code = resp.status().as_u16();
        self.labels.response_code = code;
        let grpc = self.grpc();
        if grpc && let Some(v) = resp.headers().get("grpc-status") {
            self.labels.grpc_response_status = self.metrics.grpc_status_label(v);
        }
        self.tick_messages();
        let counted = self.messages.clone();
        resp.map(move |b| {
            let b = match counted {
                Some(m) => body::boxed(GrpcFrames::new(b, m, Direction::Response)),
                None => b,
            };
            body::boxed(Finishing::new(b, move |end: End| {
                let _guard = guard;
                let mut report = self;
                // Envoy's order: trailers, headers, then the HTTP status.
                if grpc {
                    let m = &report.metrics;
                    if let Some(v) = &end.grpc_status {
                        report.labels.grpc_response_status = m.grpc_status_label(v);
                    } else if report.labels.grpc_response_status.as_str().is_empty() {
                        report.labels.grpc_response_status = m.grpc_status_of_http(code);
                    }
                }
                report.record(end.bytes);
            }))
        })
    }

    fn record(&mut self, response_bytes: u64) {
        self.pending = false;
        let millis = self.start.elapsed().as_secs_f64() * 1000.0;
        let req = self.request_bytes.load(Ordering::Relaxed);
        let facts = self.facts.as_deref();
        self.metrics
            .record_request(&self.labels, facts, millis, req, response_bytes);
        if let Some(m) = &self.messages {
            self.metrics
                .record_messages(&self.labels, facts, (req, response_bytes), m.take());
        }
    }

    /// Adds a gRPC call's messages every [`MESSAGES_INTERVAL`] until it is
    /// recorded, as Istio's stats filter reports a gRPC stream's counts
    /// periodically once it has the peer's metadata (the client side: with
    /// the response headers), so long-lived streams show their messages.
    fn tick_messages(&mut self) {
        let Some(messages) = &self.messages else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let messages = Arc::clone(messages);
        let metrics = Arc::clone(&self.metrics);
        let labels = self.labels.clone();
        let facts = self.facts.clone();
        let request_bytes = Arc::clone(&self.request_bytes);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(MESSAGES_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once.
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = ticks.tick() => {
                        let req = request_bytes.load(Ordering::Relaxed);
                        let counts = messages.take();
                        metrics.record_messages(&labels, facts.as_deref(), (req, 0), counts);
                    }
                }
            }
        });
        self._ticking = Some(stop);
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.pending {
            return;
        }
        // No answer went out: code 0, no gRPC status, and the request's
        // duration and bytes up to now, as Envoy logs a stream reset by its
        // downstream. The flags keep what was already set (a fault delay).
        let w = &self.metrics.words;
        let gone = if self.caller_h2 { &w.dr } else { &w.dc };
        self.labels.response_flags = join_flags(&self.labels.response_flags, gone);
        self.labels.response_code = 0;
        self.labels.grpc_response_status = w.empty.clone();
        self.record(0);
    }
}

/// How often a gRPC call's messages are reported while it lasts: Istio's
/// stats filter's default (`tcp_reporting_duration`, 5 s).
pub const MESSAGES_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// `a,b` (Envoy's order when `a` comes first in it), or just the one that is not "-".
pub fn join_flags(a: &Text, b: &Text) -> Text {
    match (a.as_str(), b.as_str()) {
        ("-", _) => b.clone(),
        (_, "-") => a.clone(),
        (x, y) => Text::from(format!("{x},{y}")),
    }
}

/// The text of a reply the proxy made, kept (as a response extension) for
/// its gRPC form's `grpc-message`.
#[derive(Clone, Debug)]
pub struct LocalMessage(pub Arc<str>);

/// Envoy's mapping of a local reply's HTTP status to a gRPC status
/// (`Grpc::Utility::httpToGrpcStatus`).
pub fn grpc_status_of(status: http::StatusCode) -> u16 {
    match status.as_u16() {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// A gRPC request's error answer from the proxy in gRPC's form, as Envoy's
/// local replies to gRPC requests: trailers-only (HTTP 200,
/// `content-type: application/grpc`), `grpc-status` mapped from the HTTP
/// status, `grpc-message` the reply's text; its other headers kept. Answers
/// below 400, and those already in gRPC's form, are left as they are.
pub fn grpc_local(resp: Response<Body>) -> Response<Body> {
    if resp.status().as_u16() < 400 || resp.headers().contains_key("grpc-status") {
        return resp;
    }
    let (mut parts, _) = resp.into_parts();
    let code = grpc_status_of(parts.status);
    let message = parts
        .extensions
        .get::<LocalMessage>()
        .map(|m| m.0.to_string())
        .unwrap_or_else(|| parts.status.canonical_reason().unwrap_or("").to_owned());
    parts.status = http::StatusCode::OK;
    let h = &mut parts.headers;
    h.remove(http::header::CONTENT_LENGTH);
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", http::HeaderValue::from(code));
    if let Ok(v) = http::HeaderValue::from_str(&grpc_message(&message)) {
        h.insert("grpc-message", v);
    }
    Response::from_parts(parts, body::empty())
}

/// `grpc-message` is percent-encoded (gRPC's HTTP/2 mapping): bytes outside
/// printable ASCII, and `%`.
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.trim_end().bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
