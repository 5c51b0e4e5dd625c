//! The span exporter: batches finished spans from the bounded queue and sends
//! them with OTLP/gRPC `TraceService/Export` to the collector the running
//! config names (read per batch, so a config swap redirects the next batch).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::FinishedSpan;
use super::otlp::{self, ExportTraceServiceRequest, ExportTraceServiceResponse, KeyValue};
use crate::metrics::{SpanOutcome, TelemetryMetrics};
use crate::model::Text;
use crate::state::ConfigRx;

/// Spans per export call at most.
pub const MAX_BATCH: usize = 512;
/// A batch goes out this long after its first span at the latest.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// One export call (connect included) may take this long.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why one export call failed.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("bad collector endpoint {0:?}")]
    BadEndpoint(String),
    #[error("collector unreachable: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("collector answered {0}")]
    Status(#[from] tonic::Status),
    #[error("export timed out")]
    Timeout,
}

/// The collector connection, rebuilt when the configured endpoint changes.
struct Collector {
    endpoint: String,
    channel: Channel,
}

impl Collector {
    fn connect(endpoint: &str) -> Result<Self, ExportError> {
        let uri = format!("http://{endpoint}");
        let channel = Endpoint::from_shared(uri)
            .map_err(|_| ExportError::BadEndpoint(endpoint.to_owned()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(EXPORT_TIMEOUT)
            // Resolves the name (DNS) at each (re)connect, not once here.
            .connect_lazy();
        Ok(Collector {
            endpoint: endpoint.to_owned(),
            channel,
        })
    }

    async fn export(&self, request: ExportTraceServiceRequest) -> Result<(), ExportError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await?;
        let codec: tonic_prost::ProstCodec<ExportTraceServiceRequest, ExportTraceServiceResponse> =
            tonic_prost::ProstCodec::default();
        let path = http::uri::PathAndQuery::from_static(otlp::EXPORT_PATH);
        grpc.unary(tonic::Request::new(request), path, codec)
            .await?;
        Ok(())
    }
}

/// The export request for `batch`: one `ResourceSpans` per `service.name`.
pub fn export_request(batch: Vec<FinishedSpan>) -> ExportTraceServiceRequest {
    let mut by_service: BTreeMap<Text, Vec<otlp::Span>> = BTreeMap::new();
    for s in batch {
        by_service.entry(s.service_name).or_default().push(s.span);
    }
    let resource_spans = by_service
        .into_iter()
        .map(|(service, spans)| otlp::ResourceSpans {
            resource: Some(otlp::Resource {
                attributes: vec![KeyValue::string("service.name", service.as_str())],
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: Some(otlp::InstrumentationScope {
                    name: "sluice-proxy".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                }),
                spans,
            }],
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn configured_endpoint(config: &ConfigRx) -> Option<String> {
    config
        .borrow()
        .as_ref()
        .and_then(|r| r.config.telemetry.tracing.as_ref())
        .map(|t| t.otlp_endpoint.clone())
        .filter(|e| !e.is_empty())
}

/// Exports queued spans until the queue closes. A failed call drops its
/// batch; later batches are dropped without a call until a backoff (doubling
/// up to 30 s) has passed, so a dead collector costs nothing per request.
pub async fn run_exporter(
    mut spans: mpsc::Receiver<FinishedSpan>,
    config: ConfigRx,
    metrics: TelemetryMetrics,
) {
    let mut collector: Option<Collector> = None;
    let mut backoff = Duration::ZERO;
    let mut resume_at: Option<Instant> = None;
    loop {
        let Some(first) = spans.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + FLUSH_INTERVAL;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, spans.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let Some(endpoint) = configured_endpoint(&config) else {
            // Tracing was switched off while these waited.
            metrics.spans(SpanOutcome::DroppedExportFailed, n);
            continue;
        };
        if collector.as_ref().is_none_or(|c| c.endpoint != endpoint) {
            // A new collector gets a chance at once, whatever the old one did.
            backoff = Duration::ZERO;
            resume_at = None;
            collector = match Collector::connect(&endpoint) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "span export disabled");
                    None
                }
            };
        }
        if resume_at.is_some_and(|t| Instant::now() < t) {
            metrics.spans(SpanOutcome::DroppedExportFailed, n);
            continue;
        }
        let result = match &collector {
            Some(c) => tokio::time::timeout(EXPORT_TIMEOUT, c.export(export_request(batch)))
                .await
                .unwrap_or(Err(ExportError::Timeout)),
            None => Err(ExportError::BadEndpoint(endpoint.clone())),
        };
        match result {
            Ok(()) => {
                metrics.spans(SpanOutcome::Exported, n);
                backoff = Duration::ZERO;
                resume_at = None;
            }
            Err(e) => {
                metrics.spans(SpanOutcome::DroppedExportFailed, n);
                if backoff.is_zero() {
                    tracing::warn!(%endpoint, error = %e, "span export failed; dropping spans");
                }
                backoff = (backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                resume_at = Some(Instant::now() + backoff);
            }
        }
    }
}
