use http::HeaderMap;

use super::*;
use crate::telemetry::{AccessLog, Tracing, TracingMode};

fn tracing(percent: f64, mode: TracingMode) -> TelemetryConfig {
    TelemetryConfig {
        tracing: Some(Tracing {
            sampling_percent: percent,
            otlp_endpoint: "collector:4317".to_owned(),
            service_name: "svc.ns".into(),
            custom_tags: vec![],
            mode,
            provider: "otel".to_owned(),
        }),
        access_log: None,
        ..Default::default()
    }
}

#[test]
fn begin_without_config_propagates_but_observes_nothing() {
    let mut h = HeaderMap::new();
    let b = begin(&TelemetryConfig::default(), Side::Outbound, &mut h);
    assert!(!b.observed());
    assert!(!b.context.sampled);
    assert!(h.contains_key("traceparent"));
    assert!(h.contains_key("x-b3-traceid"));
    assert_eq!(h.get("x-b3-sampled").unwrap(), "0");
    let id = h.get("x-request-id").unwrap().to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4");
}

#[test]
fn begin_keeps_an_existing_request_id() {
    let mut h = HeaderMap::new();
    h.insert("x-request-id", "mine".parse().unwrap());
    begin(&TelemetryConfig::default(), Side::Inbound, &mut h);
    assert_eq!(h.get("x-request-id").unwrap(), "mine");
}

#[test]
fn begin_samples_all_or_nothing_by_percent() {
    for _ in 0..20 {
        let mut h = HeaderMap::new();
        assert!(
            begin(
                &tracing(100.0, TracingMode::ClientAndServer),
                Side::Outbound,
                &mut h
            )
            .export
        );
        let mut h = HeaderMap::new();
        assert!(
            !begin(
                &tracing(0.0, TracingMode::ClientAndServer),
                Side::Outbound,
                &mut h
            )
            .export
        );
    }
}

#[test]
fn begin_keeps_the_incoming_decision_over_the_percent() {
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01").parse().unwrap(),
    );
    let b = begin(
        &tracing(0.0, TracingMode::ClientAndServer),
        Side::Inbound,
        &mut h,
    );
    assert!(b.export);
    assert_eq!(format!("{:032x}", b.context.trace_id), trace);
    assert_eq!(b.context.parent_span_id, Some(0x00f067aa0ba902b7));
    let tp = h.get("traceparent").unwrap().to_str().unwrap();
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-01"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "own span id expected: {tp}"
    );

    let mut h = HeaderMap::new();
    h.insert("x-b3-sampled", "0".parse().unwrap());
    let b = begin(
        &tracing(100.0, TracingMode::ClientAndServer),
        Side::Inbound,
        &mut h,
    );
    assert!(!b.export);
    assert_eq!(h.get("x-b3-sampled").unwrap(), "0");
}

#[test]
fn begin_respects_the_tracing_mode() {
    let mut h = HeaderMap::new();
    assert!(!begin(&tracing(100.0, TracingMode::Client), Side::Inbound, &mut h).export);
    let mut h = HeaderMap::new();
    assert!(begin(&tracing(100.0, TracingMode::Client), Side::Outbound, &mut h).export);
    // A side without spans passes the caller's span on unchanged.
    let mut h = HeaderMap::new();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    h.insert("traceparent", tp.parse().unwrap());
    let b = begin(&tracing(100.0, TracingMode::Server), Side::Outbound, &mut h);
    assert!(!b.export);
    assert_eq!(h.get("traceparent").unwrap(), tp);
}

#[test]
fn begin_with_access_log_observes_unsampled_requests() {
    let cfg = TelemetryConfig {
        tracing: None,
        access_log: Some(AccessLog {
            encoding: LogEncoding::Json,
            provider: "envoy".to_owned(),
            mode: TracingMode::ClientAndServer,
            filter: String::new(),
            filter_expr: None,
            filter_headers: Vec::new(),
        }),
        ..Default::default()
    };
    let mut h = HeaderMap::new();
    let b = begin(&cfg, Side::Outbound, &mut h);
    assert!(b.observed() && b.log && !b.export);
}

#[test]
fn begin_with_server_only_access_log_logs_inbound_not_outbound() {
    let cfg = TelemetryConfig {
        tracing: None,
        access_log: Some(AccessLog {
            encoding: LogEncoding::Json,
            provider: "envoy".to_owned(),
            mode: TracingMode::Server,
            filter: String::new(),
            filter_expr: None,
            filter_headers: Vec::new(),
        }),
        ..Default::default()
    };
    assert!(!begin(&cfg, Side::Outbound, &mut HeaderMap::new()).log);
    assert!(begin(&cfg, Side::Inbound, &mut HeaderMap::new()).log);
}

#[test]
fn begin_on_a_side_without_spans_adds_no_trace_headers_but_passes_incoming_ones() {
    let cfg = TelemetryConfig {
        tracing: Some(Tracing {
            sampling_percent: 100.0,
            otlp_endpoint: "127.0.0.1:4317".into(),
            service_name: "productpage.default".into(),
            custom_tags: Vec::new(),
            mode: TracingMode::Server,
            provider: "otel".into(),
        }),
        access_log: None,
        ..Default::default()
    };
    let mut none = HeaderMap::new();
    begin(&cfg, Side::Outbound, &mut none);
    assert!(none.get("traceparent").is_none() && none.get("x-b3-traceid").is_none());
    let mut incoming = HeaderMap::new();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    incoming.insert("traceparent", tp.parse().unwrap());
    begin(&cfg, Side::Outbound, &mut incoming);
    assert_eq!(incoming.get("traceparent").unwrap(), tp);
}

#[test]
fn begin_without_tracing_passes_a_complete_context_on_untouched_and_fills_a_missing_format() {
    let cfg = TelemetryConfig {
        tracing: None,
        access_log: None,
        ..Default::default()
    };
    // What a peer sidecar sends: both formats, same ids.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut both = HeaderMap::new();
    both.insert("traceparent", tp.parse().unwrap());
    both.insert(
        "x-b3-traceid",
        "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap(),
    );
    both.insert("x-b3-spanid", "00f067aa0ba902b7".parse().unwrap());
    let b = begin(&cfg, Side::Inbound, &mut both);
    assert_eq!(both.get("traceparent").unwrap(), tp);
    assert!(both.get("x-b3-sampled").is_none(), "nothing rewritten");
    assert!(!b.export);
    // Only W3C from the app: B3 is added with the same ids.
    let mut w3c = HeaderMap::new();
    w3c.insert("traceparent", tp.parse().unwrap());
    begin(&cfg, Side::Outbound, &mut w3c);
    assert_eq!(
        w3c.get("x-b3-traceid").unwrap(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(w3c.get("x-b3-spanid").unwrap(), "00f067aa0ba902b7");
    assert_eq!(w3c.get("x-b3-sampled").unwrap(), "1");
    // Nothing at all: a new trace.
    let mut none = HeaderMap::new();
    begin(&cfg, Side::Outbound, &mut none);
    assert!(none.get("traceparent").is_some() && none.get("x-request-id").is_some());
}
