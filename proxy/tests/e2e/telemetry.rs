//! Tracing and access logs end to end: two real sidecars export OTLP spans to
//! an in-test gRPC collector (built on the proxy's own prost types), propagate
//! W3C and B3 context to the app, and print JSON access-log lines.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_api::config as pb;
use sluice_proxy::telemetry::otlp::{ExportTraceServiceRequest, Span, SpanKind, TraceReceiver};
use tokio::net::TcpListener;

use crate::harness::*;
use crate::logged::LoggedProxy;

type Exports = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

/// An OTLP/gRPC trace collector: `TraceService/Export` records every request.
#[derive(Clone, Default)]
struct Collector {
    got: Exports,
}

impl Collector {
    async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind collector");
        let c = Collector::default();
        let got = Arc::clone(&c.got);
        let receiver = TraceReceiver::new(move |req| got.lock().unwrap().push(req));
        tokio::spawn(async move {
            let _ = receiver.serve(listener).await;
        });
        c
    }

    /// Every exported span with its resource's `service.name`.
    fn spans(&self) -> Vec<(String, Span)> {
        let got = self.got.lock().unwrap();
        got.iter()
            .flat_map(|req| &req.resource_spans)
            .flat_map(|rs| {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| kv.as_str())
                    .unwrap_or("")
                    .to_owned();
                rs.scope_spans
                    .iter()
                    .flat_map(|ss| ss.spans.clone())
                    .map(move |s| (service.clone(), s))
            })
            .collect()
    }

    /// Waits until `n` spans of trace `trace` (hex) arrived.
    async fn wait_for(&self, trace: &str, n: usize) -> Vec<(String, Span)> {
        for _ in 0..100 {
            let spans: Vec<_> = self
                .spans()
                .into_iter()
                .filter(|(_, s)| hex(&s.trace_id) == trace)
                .collect();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{n} spans of trace {trace} never arrived: {:?}",
            self.spans()
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tracing(percent: f64, collector: SocketAddr, service: &str) -> pb::Tracing {
    pb::Tracing {
        sampling_percent: percent,
        otlp_endpoint: collector.to_string(),
        service_name: service.to_owned(),
        custom_tags: vec![pb::CustomTag {
            name: "team".to_owned(),
            value: Some(pb::custom_tag::Value::Literal("books".to_owned())),
        }],
        mode: pb::TracingMode::ClientAndServer as i32,
        provider: "otel".to_owned(),
    }
}

fn meta(workload: &str, app: &str) -> pb::WorkloadMeta {
    pb::WorkloadMeta {
        workload: workload.to_owned(),
        namespace: "default".to_owned(),
        app: app.to_owned(),
        version: "v1".to_owned(),
        principal: format!("spiffe://cluster.local/ns/default/sa/{app}"),
        cluster: "Kubernetes".to_owned(),
    }
}

/// Client side: reviews:9080 → the endpoint at `server` (`sidecar` = through its inbound).
fn client_config(server: SocketAddr, sidecar: bool, telemetry: pb::Telemetry) -> pb::ProxyConfig {
    let ep = pb::Endpoint {
        sidecar,
        ..endpoint(server, "reviews-v1", "v1")
    };
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)])],
        )],
        clusters: vec![cluster("reviews", 9080, "v1", vec![ep])],
        self_: Some(meta("productpage-v1", "productpage")),
        telemetry: Some(telemetry),
        ..Default::default()
    }
}

fn server_config(telemetry: pb::Telemetry) -> pb::ProxyConfig {
    pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            ports: vec![pb::InboundPort {
                target_port: 9080,
                service_port: 9080,
                protocol: pb::Protocol::Http as i32,
                service: "reviews.default.svc.cluster.local".to_owned(),
                service_name: "reviews".to_owned(),
                service_namespace: "default".to_owned(),
                app_port: 0,
            }],
            rate_limits: vec![],
            security: None,
        }),
        self_: Some(meta("reviews-v1", "reviews")),
        telemetry: Some(telemetry),
        ..Default::default()
    }
}

/// The value of header `name` in a `backend` body (its request's headers).
fn seen_header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[tokio::test]
async fn telemetry_two_sidecars_export_linked_spans_and_log_json() {
    const NET: u8 = 120;
    let collector_addr: SocketAddr = format!("127.0.{NET}.200:4317").parse().unwrap();
    let collector = Collector::start(collector_addr).await;
    let app: SocketAddr = format!("127.0.{NET}.2:9080").parse().unwrap();
    backend(app, "reviews-app").await;
    let client_ctl = Controller::start(format!("127.0.{NET}.250:15010").parse().unwrap()).await;
    let server_ctl = Controller::start(format!("127.0.{NET}.251:15010").parse().unwrap()).await;
    let client =
        LoggedProxy::start(&format!("127.0.{NET}.1"), client_ctl.addr, "productpage-v1").await;
    let _server = Proxy::start(
        &format!("127.0.{NET}.2"),
        server_ctl.addr,
        "reviews-v1",
        &[],
    )
    .await;
    let client_telemetry = pb::Telemetry {
        tracing: Some(tracing(100.0, collector_addr, "productpage.default")),
        access_log: Some(pb::AccessLog {
            encoding: pb::AccessLogEncoding::Json as i32,
            provider: "envoy".to_owned(),
            mode: pb::TracingMode::ClientAndServer as i32,
            filter: String::new(),
        }),
        ..Default::default()
    };
    let server_telemetry = pb::Telemetry {
        tracing: Some(tracing(100.0, collector_addr, "reviews.default")),
        access_log: None,
        ..Default::default()
    };
    client_ctl.publish("1", client_config(app, true, client_telemetry));
    server_ctl.publish("1", server_config(server_telemetry));
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);

    let mut req = get("/reviews/1?q=2", "reviews:9080");
    req.headers_mut()
        .insert("user-agent", "telemetry-test".parse().unwrap());
    let got = send(SocketAddr::new([127, 0, NET, 1].into(), 15001), req)
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{}", got.body);

    // The app sees the server sidecar's span as its parent, in both formats.
    let traceparent = seen_header(&got.body, "traceparent").expect("traceparent forwarded");
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    let (trace, app_parent) = (fields[1].to_owned(), fields[2].to_owned());
    assert_eq!(fields[3], "01");
    assert_eq!(seen_header(&got.body, "x-b3-traceid"), Some(trace.as_str()));
    assert_eq!(
        seen_header(&got.body, "x-b3-spanid"),
        Some(app_parent.as_str())
    );
    assert_eq!(seen_header(&got.body, "x-b3-sampled"), Some("1"));
    let app_request_id = seen_header(&got.body, "x-request-id").expect("x-request-id");
    assert_eq!(app_request_id.len(), 36);

    let spans = collector.wait_for(&trace, 2).await;
    let find = |kind: SpanKind| {
        spans
            .iter()
            .find(|(_, s)| s.kind == kind as i32)
            .unwrap_or_else(|| panic!("no {kind:?} span: {spans:?}"))
    };
    let (client_service, client_span) = find(SpanKind::Client);
    let (server_service, server_span) = find(SpanKind::Server);
    assert_eq!(client_service, "productpage.default");
    assert_eq!(server_service, "reviews.default");
    assert!(
        client_span.parent_span_id.is_empty(),
        "new trace: client span is the root"
    );
    assert_eq!(server_span.parent_span_id, client_span.span_id);
    assert_eq!(hex(&server_span.span_id), app_parent);
    for s in [client_span, server_span] {
        assert_eq!(s.name, "reviews.default.svc.cluster.local:9080/*");
        assert_eq!(s.attribute("http.status_code"), Some("200"));
        assert_eq!(s.attribute("http.method"), Some("GET"));
        assert_eq!(s.attribute("user_agent"), Some("telemetry-test"));
        assert_eq!(s.attribute("guid:x-request-id"), Some(app_request_id));
        assert_eq!(s.attribute("team"), Some("books"));
        assert!(s.end_time_unix_nano >= s.start_time_unix_nano);
        assert!(s.start_time_unix_nano > 1_600_000_000_000_000_000);
        assert!(s.status.is_none());
    }
    assert_eq!(
        client_span.attribute("http.url"),
        Some("http://reviews:9080/reviews/1?q=2")
    );
    assert_eq!(
        client_span.attribute("upstream_cluster"),
        Some(cname("reviews", 9080, "v1").as_str())
    );
    assert_eq!(
        client_span.attribute("istio.canonical_service"),
        Some("productpage")
    );
    assert_eq!(
        server_span.attribute("istio.canonical_service"),
        Some("reviews")
    );
    assert_eq!(
        server_span.attribute("upstream_cluster"),
        Some("inbound|9080||")
    );

    let entry = client.log_entry(&trace).await;
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["path"], "/reviews/1?q=2");
    assert_eq!(entry["protocol"], "HTTP/1.1");
    assert_eq!(entry["response_code"], 200);
    assert_eq!(entry["response_flags"], "-");
    assert_eq!(entry["response_code_details"], "via_upstream");
    assert_eq!(entry["authority"], "reviews:9080");
    assert_eq!(entry["user_agent"], "telemetry-test");
    assert_eq!(entry["request_id"], app_request_id);
    assert_eq!(entry["upstream_cluster"], cname("reviews", 9080, "v1"));
    assert_eq!(entry["upstream_host"], app.to_string());
    assert_eq!(entry["route_name"], "default");
    assert_eq!(
        entry["upstream_peer_principal"],
        "spiffe://cluster.local/ns/default/sa/reviews-v1"
    );
    assert!(entry["bytes_sent"].as_u64().unwrap() > 0);
    assert!(entry["duration"].is_u64());
    let start = entry["start_time"].as_str().unwrap();
    assert!(start.len() == 24 && start.ends_with('Z'), "{start}");

    // A failing upstream: 5xx marks both spans as errors.
    let got = send(
        SocketAddr::new([127, 0, NET, 1].into(), 15001),
        get("/status/503", "reviews:9080"),
    )
    .await
    .unwrap();
    assert_eq!(got.status, 503);
    let trace = seen_header(&got.body, "x-b3-traceid").unwrap().to_owned();
    for (_, s) in collector.wait_for(&trace, 2).await {
        assert_eq!(s.attribute("http.status_code"), Some("503"));
        assert_eq!(s.status.as_ref().map(|st| st.code), Some(2), "{s:?}");
    }
}

#[tokio::test]
async fn telemetry_sampling_zero_exports_only_requests_sampled_upstream() {
    const NET: u8 = 121;
    let collector_addr: SocketAddr = format!("127.0.{NET}.200:4317").parse().unwrap();
    let collector = Collector::start(collector_addr).await;
    let app: SocketAddr = format!("127.0.{NET}.2:9080").parse().unwrap();
    backend(app, "reviews-app").await;
    let telemetry = pb::Telemetry {
        tracing: Some(tracing(0.0, collector_addr, "productpage.default")),
        access_log: None,
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(NET, client_config(app, false, telemetry)).await;

    // No decision upstream and 0 %: not sampled, nothing exported.
    let got = send(proxy.outbound(), get("/one", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(seen_header(&got.body, "x-b3-sampled"), Some("0"));
    let tp = seen_header(&got.body, "traceparent").unwrap();
    assert!(tp.ends_with("-00"), "{tp}");

    // Sampled upstream: kept, with the caller's trace id and span as parent.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut req = get("/two", "reviews:9080");
    req.headers_mut().insert(
        "traceparent",
        format!("00-{trace}-b7ad6b7169203331-01").parse().unwrap(),
    );
    req.headers_mut()
        .insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
    let got = send(proxy.outbound(), req).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(seen_header(&got.body, "x-b3-traceid"), Some(trace));
    assert_eq!(
        seen_header(&got.body, "x-b3-parentspanid"),
        Some("b7ad6b7169203331")
    );
    assert_eq!(
        seen_header(&got.body, "tracestate"),
        Some("congo=t61rcWkgMzE")
    );
    let spans = collector.wait_for(trace, 1).await;
    assert_eq!(spans.len(), 1);
    let span = &spans[0].1;
    assert_eq!(hex(&span.parent_span_id), "b7ad6b7169203331");
    assert_eq!(span.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(span.kind, SpanKind::Client as i32);

    // B3 debug from the caller is a sampling decision too.
    let mut req = get("/three", "reviews:9080");
    req.headers_mut().insert("x-b3-flags", "1".parse().unwrap());
    let got = send(proxy.outbound(), req).await.unwrap();
    let debug_trace = seen_header(&got.body, "x-b3-traceid").unwrap().to_owned();
    assert_eq!(seen_header(&got.body, "x-b3-flags"), Some("1"));
    collector.wait_for(&debug_trace, 1).await;

    // Two sampled requests, and only those, were exported.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(collector.spans().len(), 2, "{:?}", collector.spans());
    assert_eq!(
        proxy
            .metric("sluice_tracing_spans_total", &[("outcome", "exported")])
            .await,
        2.0
    );
}

#[tokio::test]
async fn telemetry_collector_down_drops_spans_and_config_swap_redirects_export() {
    const NET: u8 = 122;
    let dead: SocketAddr = format!("127.0.{NET}.200:4317").parse().unwrap();
    let app: SocketAddr = format!("127.0.{NET}.2:9080").parse().unwrap();
    backend(app, "reviews-app").await;
    let telemetry = |collector| pb::Telemetry {
        tracing: Some(tracing(100.0, collector, "productpage.default")),
        access_log: None,
        ..Default::default()
    };
    let (ctl, proxy) = mesh_of_one(NET, client_config(app, false, telemetry(dead))).await;
    for i in 0..5 {
        let got = send(proxy.outbound(), get(&format!("/r/{i}"), "reviews:9080"))
            .await
            .unwrap();
        assert_eq!(got.status, 200, "a dead collector never fails requests");
    }
    let mut dropped = 0.0;
    for _ in 0..100 {
        dropped = proxy
            .metric(
                "sluice_tracing_spans_total",
                &[("outcome", "dropped_export_failed")],
            )
            .await;
        if dropped >= 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dropped, 5.0);

    // The new endpoint takes effect with the next config, backoff or not.
    let live: SocketAddr = format!("127.0.{NET}.201:4317").parse().unwrap();
    let collector = Collector::start(live).await;
    ctl.publish("2", client_config(app, false, telemetry(live)));
    assert_eq!(ctl.reply("2").await, Reply::Ack);
    let got = send(proxy.outbound(), get("/after", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    let trace = seen_header(&got.body, "x-b3-traceid").unwrap().to_owned();
    collector.wait_for(&trace, 1).await;

    // The running config shows what is in force.
    let dump = send(
        SocketAddr::new([127, 0, NET, 1].into(), 15000),
        get("/config_dump", "admin"),
    )
    .await
    .unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    assert_eq!(
        dump["config"]["telemetry"]["tracing"]["otlp_endpoint"],
        live.to_string()
    );
}
