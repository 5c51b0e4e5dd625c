//! Distributed tracing and access logs: W3C / B3 trace context on every
//! request, spans exported over OTLP/gRPC, and Envoy-style access-log lines.
//!
//! The request paths call [`begin`] (always: parse and rewrite the trace
//! headers) and, only when the request is sampled or logged, build an
//! [`Observed`] that [`Observed::finish`] turns into a span and a log line
//! when the response body ends. Spans and lines go through bounded queues to
//! background tasks ([`Sinks`]); a full queue drops and counts, never waits.

pub mod access_log;
pub mod context;
mod export;
mod filter;
mod observe;
pub mod otlp;
mod outcome;
mod tcp_log;
mod time;

use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;

use crate::metrics::{LogOutcome, SpanOutcome, TelemetryMetrics};
use crate::model::Text;

pub use context::{Sampling, TraceContext};
pub use export::run_exporter;
pub use observe::{Begun, Observed, RequestFacts, Side, begin, protocol_name};
pub use outcome::{Outcome, route_name};
pub use tcp_log::TcpAccessLog;

/// Spans waiting for export at most; more are dropped (and counted).
pub const SPAN_QUEUE: usize = 2048;
/// Access-log lines waiting for stdout at most; more are dropped (and counted).
pub const LOG_QUEUE: usize = 4096;

/// What this proxy records about the requests it handles (the running
/// config's `telemetry`); the default records nothing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TelemetryConfig {
    /// Span sampling and export; `None`: no spans (context is still propagated).
    pub tracing: Option<Tracing>,
    /// One line per request or TCP connection; `None`: no access log.
    pub access_log: Option<AccessLog>,
    /// Standard metrics switched off per side.
    pub disabled_metrics: crate::metrics::DisabledMetrics,
    /// Label changes of standard metrics (`tagOverrides`); `None`: none.
    pub metric_tags: Option<std::sync::Arc<crate::metrics::TagPlans>>,
}

/// Span sampling and export settings.
#[derive(Clone, Debug, Serialize)]
pub struct Tracing {
    /// Share (0..=100) of requests without an incoming decision that are sampled.
    pub sampling_percent: f64,
    /// OTLP/gRPC collector `host:port`; empty: spans are not built.
    pub otlp_endpoint: String,
    /// Resource attribute `service.name`.
    pub service_name: Text,
    /// Extra span attributes.
    pub custom_tags: Vec<CustomTag>,
    /// Which side creates spans.
    pub mode: TracingMode,
    /// Extension provider name (config dump only).
    pub provider: String,
}

impl Tracing {
    /// Whether the `side` listener creates spans under this mode.
    pub fn spans_on(&self, side: Side) -> bool {
        match self.mode {
            TracingMode::ClientAndServer => true,
            TracingMode::Client => side == Side::Outbound,
            TracingMode::Server => side == Side::Inbound,
        }
    }
}

/// Which side of a call creates spans (Istio's Tracing mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TracingMode {
    ClientAndServer,
    Client,
    Server,
}

/// An extra span attribute.
#[derive(Clone, Debug, Serialize)]
pub struct CustomTag {
    /// Attribute key.
    pub name: Text,
    /// Where the value comes from.
    pub value: TagValue,
}

/// The source of a custom tag's value.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagValue {
    /// A fixed value.
    Literal(Text),
    /// A request header (lower-case name), or `default` when absent.
    Header { name: String, default: Text },
    /// An environment variable of the proxy, read when the config is applied.
    Environment { name: String, value: Text },
}

/// Access-log settings.
#[derive(Clone, Debug, Serialize)]
pub struct AccessLog {
    /// Line format.
    pub encoding: LogEncoding,
    /// Extension provider name (config dump only).
    pub provider: String,
    /// Which listener writes lines.
    pub mode: TracingMode,
    /// CEL filter as written (config dump).
    pub filter: String,
    /// The parsed filter; a line is written only when it holds.
    #[serde(skip)]
    pub filter_expr: Option<Arc<sluice_api::cel::Expr>>,
    /// Request headers the filter reads (kept until the request is logged).
    #[serde(skip)]
    pub filter_headers: Vec<String>,
}

impl AccessLog {
    /// Whether the `side` listener writes lines under this mode.
    pub fn logs_on(&self, side: Side) -> bool {
        match self.mode {
            TracingMode::ClientAndServer => true,
            TracingMode::Client => side == Side::Outbound,
            TracingMode::Server => side == Side::Inbound,
        }
    }
}

/// Access-log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogEncoding {
    /// Envoy's default text line (Istio's `TEXT`).
    Text,
    /// One JSON object per line with Istio's default field names.
    Json,
}

/// A finished span and the `service.name` it is exported under.
#[derive(Debug)]
pub struct FinishedSpan {
    pub service_name: Text,
    pub span: otlp::Span,
}

/// The request paths' handles on the span exporter and the access-log writer.
pub struct Sinks {
    spans: mpsc::Sender<FinishedSpan>,
    lines: mpsc::Sender<String>,
    metrics: TelemetryMetrics,
    /// Istio's `node_id` span attribute of this proxy.
    pub node_id: Text,
    /// Istio's `istio.mesh_id` span attribute (the trust domain).
    pub mesh_id: Text,
}

/// The receiving ends of [`Sinks`], to be run by [`Workers::spawn`].
pub struct Workers {
    spans: mpsc::Receiver<FinishedSpan>,
    lines: mpsc::Receiver<String>,
    metrics: TelemetryMetrics,
}

impl Sinks {
    /// The queues and their consumers; nothing runs until the workers are spawned.
    pub fn new(metrics: TelemetryMetrics, node_id: Text, mesh_id: Text) -> (Sinks, Workers) {
        let (span_tx, span_rx) = mpsc::channel(SPAN_QUEUE);
        let (line_tx, line_rx) = mpsc::channel(LOG_QUEUE);
        let sinks = Sinks {
            spans: span_tx,
            lines: line_tx,
            metrics: metrics.clone(),
            node_id,
            mesh_id,
        };
        let workers = Workers {
            spans: span_rx,
            lines: line_rx,
            metrics,
        };
        (sinks, workers)
    }

    /// Queues a span for export; a full queue drops it.
    pub fn span(&self, span: FinishedSpan) {
        if self.spans.try_send(span).is_err() {
            self.metrics.spans(SpanOutcome::DroppedQueueFull, 1);
        }
    }

    /// Queues an access-log line (with its newline); a full queue drops it.
    pub fn line(&self, line: String) {
        if self.lines.try_send(line).is_err() {
            self.metrics.log_entries(LogOutcome::Dropped, 1);
        }
    }
}

impl Workers {
    /// Starts the exporter (reading the endpoint from `config` at each batch)
    /// and the stdout writer; both end when their queues close.
    pub fn spawn(self, config: crate::state::ConfigRx) {
        tokio::spawn(run_exporter(self.spans, config, self.metrics.clone()));
        tokio::spawn(access_log::run_writer(
            self.lines,
            tokio::io::stdout(),
            self.metrics,
        ));
    }
}

#[cfg(test)]
mod tests;
