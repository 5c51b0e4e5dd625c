//! `sluice_*` metrics of tracing and access logging: what happened to every
//! finished span and every access-log line.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// What became of a span handed to the exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanOutcome {
    /// Accepted by the collector.
    Exported,
    /// The export queue was full; dropped on the request path.
    DroppedQueueFull,
    /// The export call failed (or was skipped while backing off); dropped.
    DroppedExportFailed,
}

/// What became of an access-log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOutcome {
    /// Written to stdout.
    Written,
    /// The writer's queue was full (or stdout failed); dropped.
    Dropped,
}

/// Writes the access-log line of a closed TCP connection. TCP relays only
/// carry the metrics, so the access log reaches them through here.
pub trait TcpLog: Send + Sync {
    /// A connection with `labels` opened at `start` closed after `duration`.
    fn closed(
        &self,
        labels: &super::TcpLabels,
        start: SystemTime,
        duration: Duration,
        received: u64,
        sent: u64,
    );
}

/// The tracing and access-log metrics.
#[derive(Clone, Default)]
pub struct TelemetryMetrics {
    spans: Family<OutcomeLabels, Counter>,
    log_entries: Family<OutcomeLabels, Counter>,
    tcp_log: Arc<OnceLock<Box<dyn TcpLog>>>,
}

impl TelemetryMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = TelemetryMetrics::default();
        registry.register(
            "sluice_tracing_spans",
            "Finished spans by outcome: exported, dropped_queue_full, dropped_export_failed",
            m.spans.clone(),
        );
        registry.register(
            "sluice_access_log_entries",
            "Access-log lines by outcome: written, dropped",
            m.log_entries.clone(),
        );
        m
    }

    /// Counts `n` spans that ended as `outcome`.
    pub fn spans(&self, outcome: SpanOutcome, n: u64) {
        let outcome = match outcome {
            SpanOutcome::Exported => "exported",
            SpanOutcome::DroppedQueueFull => "dropped_queue_full",
            SpanOutcome::DroppedExportFailed => "dropped_export_failed",
        };
        self.spans
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n);
    }

    /// Counts `n` access-log lines that ended as `outcome`.
    pub fn log_entries(&self, outcome: LogOutcome, n: u64) {
        let outcome = match outcome {
            LogOutcome::Written => "written",
            LogOutcome::Dropped => "dropped",
        };
        self.log_entries
            .get_or_create(&OutcomeLabels { outcome })
            .inc_by(n);
    }

    /// Installs the TCP access-log writer (once; later calls are ignored).
    pub fn install_tcp_log(&self, log: Box<dyn TcpLog>) {
        let _ = self.tcp_log.set(log);
    }

    /// Reports a closed TCP connection to the access log, if one is installed.
    pub fn tcp_closed(
        &self,
        labels: &super::TcpLabels,
        start: SystemTime,
        duration: Duration,
        received: u64,
        sent: u64,
    ) {
        if let Some(log) = self.tcp_log.get() {
            log.closed(labels, start, duration, received, sent);
        }
    }
}
