//! Distributed tracing end to end: sidecars of a real local mesh export spans over OTLP/gRPC to a
//! real Jaeger (`scripts/tracing-tools` builds it), configured the Istio way (MeshConfig
//! `extensionProviders` + `Telemetry`), and the spans are read back from Jaeger's query API.
//! Needs `cargo build --workspace --bins` and the Jaeger binary (`$SLUICE_JAEGER_BIN`).
use bytes::Bytes;
use sluice_conformance::client::{self, Call, Outcome, Via};
use sluice_conformance::jaeger::{Jaeger, Span, Trace};
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::scenario::Workload;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long spans may take from a request to Jaeger's store (sidecar batch + Jaeger batch).
const EXPORT_WAIT: Duration = Duration::from_secs(20);
/// After a later span arrived, how much longer an earlier (unwanted) span is given to show up.
const ABSENCE_GRACE: Duration = Duration::from_secs(3);

const WORKLOADS: &str = "[{service: productpage, port: 9080}, {service: sleep, port: 9080}, \
                         {service: reviews, port: 9080}]";

/// Istio MeshConfig naming Jaeger's OTLP/gRPC receiver as the `otel` provider.
fn mesh_config(jaeger: &Jaeger, sampling: f64, default_provider: bool) -> String {
    let otlp = jaeger.otlp_grpc_addr();
    let defaults = if default_provider {
        "defaultProviders:\n  tracing: [otel]\n"
    } else {
        ""
    };
    format!(
        "enableTracing: true
defaultConfig:
  tracing:
    sampling: {sampling}
extensionProviders:
- name: otel
  opentelemetry:
    service: \"{ip}\"
    port: {port}
{defaults}",
        ip = otlp.ip(),
        port = otlp.port(),
    )
}

/// A `Telemetry` document naming the `otel` provider (else relying on `defaultProviders`);
/// `namespace: istio-system` is the mesh-wide (root) scope.
fn telemetry(
    name: &str,
    namespace: &str,
    selector: Option<&str>,
    percent: f64,
    otel: bool,
) -> String {
    let providers = if otel {
        "providers: [{name: otel}]\n    "
    } else {
        ""
    };
    let selector = selector
        .map(|app| format!("  selector:\n    matchLabels: {{app: {app}}}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
{selector}  tracing:
  - {providers}randomSamplingPercentage: {percent}
"
    )
}

/// The main test's mesh-wide Telemetry: `otel` at 100%, with a literal and a header tag.
const ROOT_TELEMETRY: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 100
    customTags:
      suite: {literal: {value: sluice-conformance}}
      user: {header: {name: x-test-user, defaultValue: anonymous}}
";

/// Prints the tail of every log in the work dir when the test fails, so a red run shows what
/// the controller, the sidecars and Jaeger said.
struct LogsOnFailure(PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return;
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("----- {} (last 40 lines) -----", log.display());
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// Starts Jaeger in `work`; a missing binary fails with the message telling how to build it.
async fn start_jaeger(work: &Path) -> Jaeger {
    Jaeger::start(work).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn start(
    work: &Path,
    workloads: &str,
    mesh_yaml: &str,
    config: &str,
) -> (LogsOnFailure, LocalMesh) {
    let guard = LogsOnFailure(work.to_path_buf());
    let mesh_file = work.join("mesh-config.yaml");
    std::fs::write(&mesh_file, mesh_yaml).unwrap();
    let workloads: Vec<Workload> = serde_yaml::from_str(workloads).unwrap();
    let mut opts = MeshOptions::new(work.to_path_buf());
    opts.start_timeout = Duration::from_secs(60);
    opts.controller_args = vec!["--mesh-config".into(), mesh_file.display().to_string()];
    let mesh = LocalMesh::start(&workloads, config, opts)
        .await
        .unwrap_or_else(|e| panic!("mesh did not start: {e}"));
    assert!(mesh.instances().iter().all(|i| i.namespace == "default"));
    (guard, mesh)
}

/// `GET http://{to}:9080{path}` through `from`'s sidecar, with extra headers.
async fn call(
    mesh: &LocalMesh,
    from: &str,
    to: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Outcome {
    let via = mesh.instances()[mesh.select(from, None, None)[0]].outbound_addr();
    client::send(&Call {
        via: Via::Outbound(via),
        url: format!("http://{to}:9080{path}"),
        method: "GET".into(),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        body: Bytes::new(),
        h2: false,
        timeout: Duration::from_secs(5),
    })
    .await
}

/// The trace context headers the echo app received.
#[derive(Debug)]
struct Seen {
    /// `traceparent`: (trace id, parent span id, flags).
    traceparent: Option<(String, String, String)>,
    b3_trace_id: Option<String>,
    b3_span_id: Option<String>,
}

fn seen(o: &Outcome) -> Seen {
    assert!(o.status.is_some(), "no response: {:?}", o.error);
    let v: serde_json::Value = serde_json::from_slice(&o.body)
        .unwrap_or_else(|e| panic!("echo answer is not JSON ({e}): {:?}", o.body));
    let h = |k: &str| v["headers"][k].as_str().map(str::to_string);
    let traceparent = h("traceparent").map(|tp| {
        let parts: Vec<&str> = tp.split('-').collect();
        assert!(
            parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16,
            "malformed traceparent {tp:?}"
        );
        (
            parts[1].to_string(),
            parts[2].to_string(),
            parts[3].to_string(),
        )
    });
    Seen {
        traceparent,
        b3_trace_id: h("x-b3-traceid"),
        b3_span_id: h("x-b3-spanid"),
    }
}

/// Sends a request, checks its status and that the app got both W3C and B3 context with one
/// trace id; returns that trace id and the parent span id the app was given.
async fn traced_call(
    mesh: &LocalMesh,
    from: &str,
    to: &str,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
) -> (String, String) {
    let o = call(mesh, from, to, path, headers).await;
    assert_eq!(o.status, Some(status), "GET {path}: {:?}", o.error);
    let s = seen(&o);
    let (trace_id, parent, flags) = s
        .traceparent
        .clone()
        .unwrap_or_else(|| panic!("the app got no traceparent: {s:?}"));
    assert_eq!(flags, "01", "a sampled request must carry the sampled flag");
    assert_eq!(
        s.b3_trace_id.as_deref(),
        Some(trace_id.as_str()),
        "x-b3-traceid must carry the same trace as traceparent"
    );
    assert_eq!(s.b3_span_id.as_deref(), Some(parent.as_str()));
    (trace_id, parent)
}

/// Waits until Jaeger holds `trace_id` with productpage-side CLIENT and reviews-side SERVER
/// spans (`client_service` names the caller's `service.name`).
async fn client_server(jaeger: &Jaeger, trace_id: &str, client_service: &str) -> (Span, Span) {
    let deadline = tokio::time::Instant::now() + EXPORT_WAIT;
    let mut last: Option<Trace> = None;
    loop {
        if let Some(t) = jaeger.trace(trace_id).await.unwrap() {
            let c: Vec<&Span> = t.spans_of(client_service, "client").collect();
            let s: Vec<&Span> = t.spans_of("reviews.default", "server").collect();
            if c.len() == 1 && s.len() == 1 {
                return (c[0].clone(), s[0].clone());
            }
            assert!(
                c.len() <= 1 && s.len() <= 1,
                "one request must give one client and one server span: {t:#?}"
            );
            last = Some(t);
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "trace {trace_id} has no {client_service} CLIENT + reviews.default SERVER span pair within {EXPORT_WAIT:?}; last seen: {last:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn random_hex(digits: usize) -> String {
    (0..digits)
        .map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)]))
        .collect()
}

/// Trace ids Jaeger holds for `service`.
async fn trace_ids(jaeger: &Jaeger, service: &str) -> BTreeSet<String> {
    jaeger
        .traces(service)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.trace_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_stores_an_otlp_span_and_answers_queries() {
    let work = tempfile::tempdir().unwrap();
    let jaeger = start_jaeger(work.path()).await;
    let _logs = LogsOnFailure(work.path().to_path_buf());
    assert!(jaeger.services().await.unwrap().is_empty());
    // Leading zero on purpose: Jaeger's JSON drops it, the parser must restore it.
    let trace_id = format!("0{}", random_hex(31));
    // Queries look back from now, so the spans must be recent.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let at = |us: u128| (now + us * 1000).to_string();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "probe.default"}}
        ]},
        "scopeSpans": [{"spans": [
            {"traceId": trace_id, "spanId": "00000000000000c1", "name": "outbound",
             "kind": 3, "startTimeUnixNano": at(0),
             "endTimeUnixNano": at(1000),
             "attributes": [{"key": "http.status_code", "value": {"intValue": "503"}}]},
            {"traceId": trace_id, "spanId": "00000000000000c2", "parentSpanId": "00000000000000c1",
             "name": "inbound", "kind": 2, "startTimeUnixNano": at(100),
             "endTimeUnixNano": at(900)}
        ]}]
    }]});
    let resp = client::http_post_json(jaeger.otlp_http_addr(), "/v1/traces", body.to_string())
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    let found = jaeger
        .wait_traces("probe.default", EXPORT_WAIT, |ts| {
            ts.iter().find(|t| t.trace_id == trace_id).cloned()
        })
        .await
        .unwrap()
        .expect("the span posted over OTLP shows up in /api/traces");
    assert_eq!(jaeger.services().await.unwrap(), ["probe.default"]);
    let client = found.spans_of("probe.default", "client").next().unwrap();
    let server = found.spans_of("probe.default", "server").next().unwrap();
    assert_eq!(client.span_id, "00000000000000c1");
    assert_eq!(client.operation_name, "outbound");
    assert_eq!(client.tag("http.status_code"), Some("503"));
    assert_eq!(server.parent_span_id.as_deref(), Some("00000000000000c1"));
    assert_eq!(jaeger.trace(&trace_id).await.unwrap(), Some(found));
    assert_eq!(jaeger.trace(&random_hex(32)).await.unwrap(), None);
    assert!(jaeger.traces("nobody.default").await.unwrap().is_empty());
}

/// Mesh-wide Telemetry at 100% (the mesh default is 0%): every request gives a CLIENT span on
/// the caller's sidecar and a SERVER span on reviews' sidecar, linked; an incoming sampled
/// `traceparent` is joined; a selector-scoped Telemetry at 0% stops one workload's spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_export_linked_client_and_server_spans() {
    let work = tempfile::tempdir().unwrap();
    let jaeger = start_jaeger(work.path()).await;
    let (_logs, mut mesh) = start(
        work.path(),
        WORKLOADS,
        &mesh_config(&jaeger, 0.0, false),
        ROOT_TELEMETRY,
    )
    .await;

    // Statuses on the spans come from the real answers.
    let mut ok = Vec::new();
    for _ in 0..3 {
        ok.push(traced_call(&mesh, "productpage", "reviews", "/headers", &[], 200).await);
    }
    let failed = traced_call(&mesh, "productpage", "reviews", "/status/503", &[], 503).await;
    let ids: BTreeSet<&String> = ok.iter().map(|(t, _)| t).collect();
    assert_eq!(ids.len(), 3, "each request starts its own trace");

    for ((trace_id, app_parent), status) in
        ok.iter().chain([&failed]).zip(["200", "200", "200", "503"])
    {
        let (c, s) = client_server(&jaeger, trace_id, "productpage.default").await;
        assert_eq!(c.trace_id, *trace_id);
        assert_eq!(s.trace_id, *trace_id);
        assert_eq!(
            c.parent_span_id, None,
            "the client span is the root: {c:#?}"
        );
        assert_eq!(
            s.parent_span_id.as_ref(),
            Some(&c.span_id),
            "server span's parent is the client span"
        );
        assert_eq!(
            *app_parent, s.span_id,
            "the app is called in the server span's context"
        );
        assert_eq!(c.tag("http.status_code"), Some(status), "{c:#?}");
        assert_eq!(s.tag("http.status_code"), Some(status), "{s:#?}");
        for span in [&c, &s] {
            assert_eq!(
                span.tag("suite"),
                Some("sluice-conformance"),
                "literal tag: {span:#?}"
            );
            assert_eq!(
                span.tag("user"),
                Some("anonymous"),
                "header tag default: {span:#?}"
            );
        }
    }
    let services = jaeger.services().await.unwrap();
    for svc in ["productpage.default", "reviews.default"] {
        assert!(
            services.iter().any(|s| s == svc),
            "{svc} missing from {services:?}"
        );
    }

    // An incoming sampled context is joined, not replaced.
    let (tid, pid) = (random_hex(32), random_hex(16));
    let tp = format!("00-{tid}-{pid}-01");
    let (seen_tid, _) = traced_call(
        &mesh,
        "productpage",
        "reviews",
        "/headers",
        &[("traceparent", &tp), ("x-test-user", "alice")],
        200,
    )
    .await;
    assert_eq!(seen_tid, tid, "the incoming trace id is kept");
    let (c, s) = client_server(&jaeger, &tid, "productpage.default").await;
    assert_eq!(
        c.parent_span_id.as_deref(),
        Some(pid.as_str()),
        "client span continues the caller's span"
    );
    assert_eq!(s.parent_span_id.as_ref(), Some(&c.span_id));
    for span in [&c, &s] {
        assert_eq!(span.tag("user"), Some("alice"), "header tag: {span:#?}");
    }

    // productpage at 0% by a selector-scoped Telemetry; sleep keeps the mesh-wide 100%.
    mesh.apply(&telemetry(
        "productpage-off",
        "default",
        Some("productpage"),
        0.0,
        true,
    ))
    .await
    .unwrap();
    let before = trace_ids(&jaeger, "productpage.default").await;
    for _ in 0..5 {
        let o = call(&mesh, "productpage", "reviews", "/headers", &[]).await;
        assert_eq!(o.status, Some(200), "{:?}", o.error);
        if let Some((_, _, flags)) = seen(&o).traceparent {
            assert_eq!(
                flags, "00",
                "an unsampled request must not claim to be sampled"
            );
        }
    }
    // A later sampled request through the same server sidecar shows its exporter has flushed.
    let (marker, _) = traced_call(&mesh, "sleep", "reviews", "/headers", &[], 200).await;
    client_server(&jaeger, &marker, "sleep.default").await;
    tokio::time::sleep(ABSENCE_GRACE).await;
    let after = trace_ids(&jaeger, "productpage.default").await;
    assert_eq!(after, before, "productpage at 0% exported new traces");
    let reviews = jaeger.traces("reviews.default").await.unwrap();
    let unexpected: Vec<&Trace> = reviews
        .iter()
        .filter(|t| !before.contains(&t.trace_id) && t.trace_id != marker)
        .collect();
    assert!(
        unexpected.is_empty(),
        "reviews exported spans of unsampled requests: {unexpected:#?}"
    );
}

/// MeshConfig alone (`defaultProviders.tracing` + `defaultConfig.tracing.sampling: 0`): nothing
/// is exported; a root Telemetry raising the sampling to 100% then turns export on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_default_sampling_zero_exports_nothing() {
    let work = tempfile::tempdir().unwrap();
    let jaeger = start_jaeger(work.path()).await;
    let (_logs, mut mesh) =
        start(work.path(), WORKLOADS, &mesh_config(&jaeger, 0.0, true), "").await;
    for _ in 0..5 {
        let o = call(&mesh, "productpage", "reviews", "/headers", &[]).await;
        assert_eq!(o.status, Some(200), "{:?}", o.error);
        if let Some((_, _, flags)) = seen(&o).traceparent {
            assert_eq!(
                flags, "00",
                "an unsampled request must not claim to be sampled"
            );
        }
    }
    mesh.apply(&telemetry(
        "mesh-default",
        "istio-system",
        None,
        100.0,
        false,
    ))
    .await
    .unwrap();
    // Default providers apply to a Telemetry that names none.
    let (marker, _) = traced_call(&mesh, "productpage", "reviews", "/headers", &[], 200).await;
    client_server(&jaeger, &marker, "productpage.default").await;
    tokio::time::sleep(ABSENCE_GRACE).await;
    for svc in ["productpage.default", "reviews.default"] {
        let ids = trace_ids(&jaeger, svc).await;
        assert_eq!(
            ids,
            BTreeSet::from([marker.clone()]),
            "{svc}: only the sampled request's trace"
        );
    }
}

/// Root Telemetry tracing only the SERVER side.
const SERVER_ONLY: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - match: {mode: SERVER}
    providers: [{name: otel}]
    randomSamplingPercentage: 100
";

/// Silences reviews' spans; the provider and sampling still come from the root Telemetry.
const REVIEWS_SILENT: &str = "apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-silent, namespace: default}
spec:
  selector:
    matchLabels: {app: reviews}
  tracing:
  - disableSpanReporting: true
";

/// Waits until Jaeger holds `trace_id` with a span of `service`, then gives other spans of the
/// trace `ABSENCE_GRACE` to arrive and returns the trace.
async fn settled_trace(jaeger: &Jaeger, trace_id: &str, service: &str) -> Trace {
    jaeger
        .wait_traces(service, EXPORT_WAIT, |ts| {
            ts.iter().find(|t| t.trace_id == trace_id).cloned()
        })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no trace {trace_id} from {service} within {EXPORT_WAIT:?}"));
    tokio::time::sleep(ABSENCE_GRACE).await;
    jaeger.trace(trace_id).await.unwrap().unwrap()
}

/// `match.mode: SERVER`: only inbound sides report, and as the caller's sidecar traces
/// nothing (Envoy's outbound listener then has no tracer), the server span starts the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mode_reports_inbound_spans_only() {
    let work = tempfile::tempdir().unwrap();
    let jaeger = start_jaeger(work.path()).await;
    let mesh_yaml = mesh_config(&jaeger, 0.0, false);
    let (_logs, mesh) = start(work.path(), WORKLOADS, &mesh_yaml, SERVER_ONLY).await;
    let (trace_id, app_parent) =
        traced_call(&mesh, "productpage", "reviews", "/headers", &[], 200).await;
    let trace = settled_trace(&jaeger, &trace_id, "reviews.default").await;
    assert_eq!(
        trace.spans.len(),
        1,
        "only reviews' server span: {trace:#?}"
    );
    let server = &trace.spans[0];
    assert_eq!(server.kind(), Some("server"));
    assert_eq!(server.span_id, app_parent);
    assert_eq!(jaeger.services().await.unwrap(), ["reviews.default"]);
    assert_eq!(
        server.parent_span_id, None,
        "the server span starts the trace (its parent would be a span nobody reports)"
    );
}

/// `disableSpanReporting` on reviews: its sidecar reports nothing and passes the context on,
/// while sampling and propagation go on (the caller's client span of the same trace arrives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_span_reporting_silences_one_workload() {
    let work = tempfile::tempdir().unwrap();
    let jaeger = start_jaeger(work.path()).await;
    let mesh_yaml = mesh_config(&jaeger, 0.0, false);
    let config = format!("{ROOT_TELEMETRY}---\n{REVIEWS_SILENT}");
    let (_logs, mesh) = start(work.path(), WORKLOADS, &mesh_yaml, &config).await;
    let (trace_id, app_parent) =
        traced_call(&mesh, "productpage", "reviews", "/headers", &[], 200).await;
    let trace = settled_trace(&jaeger, &trace_id, "productpage.default").await;
    assert_eq!(
        trace.spans.len(),
        1,
        "only productpage's client span: {trace:#?}"
    );
    let client = &trace.spans[0];
    assert_eq!(client.kind(), Some("client"));
    // Reviews' sidecar reports no span, so it makes none either: the app's
    // parent is productpage's client span, and calls the app makes stay
    // linked to a span that exists.
    assert_eq!(
        client.span_id, app_parent,
        "reviews passes the caller's context on unchanged"
    );
    assert_eq!(jaeger.services().await.unwrap(), ["productpage.default"]);
}
