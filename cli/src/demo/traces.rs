//! The demo's trace view: an OTLP/gRPC collector inside sluicectl that the
//! sidecars export to (named `demo` in the demo's mesh config), and a
//! waterfall of the newest complete trace through two sidecars.

use sluice_proxy::telemetry::otlp::{
    AnyValue, ExportTraceServiceRequest, Span, SpanKind, TraceReceiver, Value,
};
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Traces kept; older ones are dropped. The sidecars of a trace export in
/// their own batches (up to a second apart, hundreds of traces each at the
/// demo's rate), so this must hold a few seconds of traffic for the two
/// halves of one trace to meet.
const KEEP: usize = 2048;

/// The mesh config the demo's controller reads: sidecars export to `addr`.
pub(crate) fn mesh_config(addr: SocketAddr) -> String {
    format!(
        "extensionProviders:\n- name: demo\n  opentelemetry:\n    service: {}\n    port: {}\n",
        addr.ip(),
        addr.port()
    )
}

/// Every sidecar of the demo samples every request and reports to `demo`.
pub(crate) const TELEMETRY: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: mesh-default
  namespace: istio-system
spec:
  tracing:
  - providers:
    - name: demo
    randomSamplingPercentage: 100
";

/// One exported span and the `service.name` of the sidecar that sent it.
#[derive(Clone, Debug)]
pub(crate) struct Reported {
    pub service: String,
    pub span: Span,
}

/// Spans grouped by trace, newest trace last.
#[derive(Default)]
struct Store {
    order: VecDeque<Vec<u8>>,
    traces: BTreeMap<Vec<u8>, Vec<Reported>>,
}

impl Store {
    fn add(&mut self, reported: Reported) {
        let id = reported.span.trace_id.clone();
        if !self.traces.contains_key(&id) {
            self.order.push_back(id.clone());
            if self.order.len() > KEEP
                && let Some(old) = self.order.pop_front()
            {
                self.traces.remove(&old);
            }
        }
        self.traces.entry(id).or_default().push(reported);
    }
}

/// The collector: cheap to clone, shares one store.
#[derive(Clone, Default)]
pub(crate) struct Collector {
    store: Arc<Mutex<Store>>,
}

impl Collector {
    /// Listens on a free loopback port; returns the collector and its address.
    pub(crate) async fn start() -> std::io::Result<(Self, SocketAddr)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let c = Collector::default();
        let store = c.clone();
        let receiver = TraceReceiver::new(move |req| store.record(req));
        tokio::spawn(async move {
            if let Err(e) = receiver.serve(listener).await {
                eprintln!("demo: trace collector stopped: {e}");
            }
        });
        Ok((c, addr))
    }

    fn record(&self, req: ExportTraceServiceRequest) {
        let Ok(mut store) = self.store.lock() else {
            return;
        };
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| kv.as_str())
                .unwrap_or("?")
                .to_owned();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                store.add(Reported {
                    service: service.clone(),
                    span,
                });
            }
        }
    }

    /// How many traces and spans were received (kept ones).
    pub(crate) fn received(&self) -> (usize, usize) {
        self.store.lock().map_or((0, 0), |s| {
            (s.traces.len(), s.traces.values().map(Vec::len).sum())
        })
    }

    /// The newest trace in which a CLIENT span of `client` has a SERVER child
    /// span of `server` (one request through both sidecars), spans in order.
    pub(crate) fn newest_through(&self, client: &str, server: &str) -> Option<Vec<Reported>> {
        let store = self.store.lock().ok()?;
        store
            .order
            .iter()
            .rev()
            .find_map(|id| linked(store.traces.get(id)?, client, server))
    }

    /// Trace `id` when it holds a CLIENT span of `client` parenting a SERVER
    /// span of `server`, spans in order.
    pub(crate) fn trace_through(
        &self,
        id: &[u8],
        client: &str,
        server: &str,
    ) -> Option<Vec<Reported>> {
        let store = self.store.lock().ok()?;
        linked(store.traces.get(id)?, client, server)
    }
}

fn linked(spans: &[Reported], client: &str, server: &str) -> Option<Vec<Reported>> {
    let found = spans.iter().any(|c| {
        c.service == client
            && c.span.kind == SpanKind::Client as i32
            && spans.iter().any(|s| {
                s.service == server
                    && s.span.kind == SpanKind::Server as i32
                    && s.span.parent_span_id == c.span.span_id
            })
    });
    found.then(|| {
        let mut spans = spans.to_vec();
        spans.sort_by_key(|r| r.span.start_time_unix_nano);
        spans
    })
}

/// Hex of an id.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn attribute(span: &Span, key: &str) -> String {
    match span
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
    {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => s.clone(),
        Some(AnyValue {
            value: Some(Value::IntValue(i)),
        }) => i.to_string(),
        _ => "-".into(),
    }
}

/// A waterfall of one trace: one line per span, bars on a shared time axis.
pub(crate) fn render(spans: &[Reported]) -> String {
    const WIDTH: u64 = 40;
    let Some(start) = spans.iter().map(|r| r.span.start_time_unix_nano).min() else {
        return String::new();
    };
    let end = spans
        .iter()
        .map(|r| r.span.end_time_unix_nano)
        .max()
        .unwrap_or(start);
    let total = end.saturating_sub(start).max(1);
    let mut out = String::new();
    if let Some(first) = spans.first() {
        let _ = writeln!(
            out,
            "trace {}  {} {}",
            hex(&first.span.trace_id),
            attribute(&first.span, "http.method"),
            attribute(&first.span, "http.url"),
        );
    }
    for r in spans {
        let s = &r.span;
        let from = (s.start_time_unix_nano.saturating_sub(start)) * WIDTH / total;
        let to = (s.end_time_unix_nano.saturating_sub(start) * WIDTH)
            .div_ceil(total)
            .max(from + 1);
        let kind = if s.kind == SpanKind::Client as i32 {
            "CLIENT"
        } else {
            "SERVER"
        };
        let bar: String = (0..WIDTH)
            .map(|i| if i >= from && i < to { '█' } else { '·' })
            .collect();
        let ms = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
        let _ = writeln!(
            out,
            "  {:<22} {kind}  {bar} {ms:>7.2} ms  {}  span {} ← parent {}",
            r.service,
            attribute(s, "http.status_code"),
            hex(&s.span_id),
            if s.parent_span_id.is_empty() {
                "-".to_string()
            } else {
                hex(&s.parent_span_id)
            },
        );
    }
    out
}
