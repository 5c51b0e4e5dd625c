//! Per-request metrics reporting: labels are prepared when the destination is
//! known and recorded when the response body ends (streamed) or at once (local).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use http::Response;
use http_body::Body as _;

use crate::body::{self, Body, End, Finishing};
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

/// A request being reported.
pub struct Report {
    metrics: Arc<Metrics>,
    labels: RequestLabels,
    start: Instant,
    request_bytes: Arc<AtomicU64>,
    /// What label expressions read of the request (only when some do).
    facts: Option<Box<TagFacts>>,
}

impl Report {
    /// Starts reporting with `labels` (code and flags are filled in at the end).
    pub fn new(
        metrics: Arc<Metrics>,
        labels: RequestLabels,
        start: Instant,
        request_bytes: Arc<AtomicU64>,
    ) -> Self {
        Report {
            metrics,
            labels,
            start,
            request_bytes,
            facts: None,
        }
    }

    /// Keeps `facts` of the request for a Telemetry's label expressions.
    pub fn with_facts(mut self, facts: Option<Box<TagFacts>>) -> Self {
        self.facts = facts;
        self
    }

    /// Sets the response flags reported for a response that streams from upstream.
    pub fn with_flags(mut self, flags: &Text) -> Self {
        self.labels.response_flags = flags.clone();
        self
    }

    /// Records a reply the proxy generated itself.
    pub fn local(mut self, resp: Response<Body>, flags: &Text) -> Response<Body> {
        self.labels.response_code = resp.status().as_u16();
        self.labels.response_flags = flags.clone();
        let size = resp.body().size_hint().exact().unwrap_or(0);
        let millis = self.start.elapsed().as_secs_f64() * 1000.0;
        let req = self.request_bytes.load(Ordering::Relaxed);
        let facts = self.facts.as_deref();
        self.metrics
            .record_request(&self.labels, facts, millis, req, size);
        resp
    }

    /// Records an upstream response when its body ends; `guard` lives as long.
    pub fn streamed<G: Send + Unpin + 'static>(
        mut self,
        resp: Response<Body>,
        guard: G,
    ) -> Response<Body> {
        self.labels.response_code = resp.status().as_u16();
        if let Some(s) = resp
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
        {
            self.labels.grpc_response_status = Text::from(s);
        }
        resp.map(move |b| {
            body::boxed(Finishing::new(b, move |end: End| {
                let _guard = guard;
                if let Some(s) = end.grpc_status.as_ref().and_then(|v| v.to_str().ok()) {
                    self.labels.grpc_response_status = Text::from(s);
                }
                let millis = self.start.elapsed().as_secs_f64() * 1000.0;
                let req = self.request_bytes.load(Ordering::Relaxed);
                let facts = self.facts.as_deref();
                self.metrics
                    .record_request(&self.labels, facts, millis, req, end.bytes);
            }))
        })
    }
}
