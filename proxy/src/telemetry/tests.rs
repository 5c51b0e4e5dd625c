use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sluice_api::config as pb;
use tokio::sync::watch;

use super::*;
use crate::metrics::{Metrics, TcpLog as _};
use crate::model::{ProxyConfig, Running};

fn sinks(metrics: &Metrics) -> (Arc<Sinks>, Workers) {
    let (s, w) = Sinks::new(metrics.telemetry.clone(), "node".into(), "mesh".into());
    (Arc::new(s), w)
}

fn finished() -> FinishedSpan {
    FinishedSpan {
        service_name: "s".into(),
        span: otlp::Span::default(),
    }
}

#[test]
fn sinks_full_span_queue_drops_and_counts() {
    let metrics = Metrics::new();
    let (sinks, _workers) = sinks(&metrics);
    for _ in 0..SPAN_QUEUE + 3 {
        sinks.span(finished());
    }
    let text = metrics.encode();
    assert!(
        text.contains("sluice_tracing_spans_total{outcome=\"dropped_queue_full\"} 3"),
        "{text}"
    );
}

fn running(access_log: Option<pb::AccessLog>) -> Running {
    let config = pb::ProxyConfig {
        telemetry: Some(pb::Telemetry {
            tracing: None,
            access_log,
            ..Default::default()
        }),
        ..Default::default()
    };
    Running {
        version: "1".to_owned(),
        config: ProxyConfig::try_from(&config).unwrap(),
    }
}

#[test]
fn tcp_access_log_writes_a_line_only_while_configured() {
    let metrics = Metrics::new();
    let (sinks, mut workers) = sinks(&metrics);
    let json = pb::AccessLog {
        encoding: pb::AccessLogEncoding::Json as i32,
        provider: String::new(),
        mode: pb::TracingMode::ClientAndServer as i32,
        filter: String::new(),
    };
    let (tx, rx) = watch::channel(Some(Arc::new(running(Some(json)))));
    let log = TcpAccessLog::new(Arc::clone(&sinks), rx);
    let mut labels = metrics.tcp_labels(
        &metrics.words.source,
        &Default::default(),
        &Default::default(),
        &Default::default(),
        &metrics.words.unknown,
        None,
    );
    labels.destination_service = "mysql.default.svc.cluster.local".into();
    log.closed(&labels, SystemTime::now(), Duration::from_millis(5), 10, 20);
    let line = workers.lines.try_recv().expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["bytes_received"], 10);
    assert_eq!(v["bytes_sent"], 20);
    assert_eq!(v["upstream_cluster"], "mysql.default.svc.cluster.local");
    assert_eq!(v["method"], serde_json::Value::Null);

    tx.send_replace(Some(Arc::new(running(None))));
    log.closed(&labels, SystemTime::now(), Duration::ZERO, 1, 1);
    assert!(workers.lines.try_recv().is_err());
}

#[test]
fn tcp_access_log_client_only_mode_skips_destination_reports() {
    let metrics = Metrics::new();
    let (sinks, mut workers) = sinks(&metrics);
    let client_only = pb::AccessLog {
        encoding: pb::AccessLogEncoding::Json as i32,
        provider: String::new(),
        mode: pb::TracingMode::Client as i32,
        filter: String::new(),
    };
    let (_tx, rx) = watch::channel(Some(Arc::new(running(Some(client_only)))));
    let log = TcpAccessLog::new(Arc::clone(&sinks), rx);
    let label = |reporter| {
        metrics.tcp_labels(
            reporter,
            &Default::default(),
            &Default::default(),
            &Default::default(),
            &metrics.words.unknown,
            None,
        )
    };
    log.closed(
        &label(&metrics.words.destination),
        SystemTime::now(),
        Duration::ZERO,
        1,
        1,
    );
    assert!(
        workers.lines.try_recv().is_err(),
        "inbound side must not log"
    );
    log.closed(
        &label(&metrics.words.source),
        SystemTime::now(),
        Duration::ZERO,
        1,
        1,
    );
    assert!(workers.lines.try_recv().is_ok(), "outbound side logs");
}

#[test]
fn tcp_access_log_filter_decides_per_connection() {
    let metrics = Metrics::new();
    let (sinks, mut workers) = sinks(&metrics);
    let with_filter = |filter: &str| pb::AccessLog {
        encoding: pb::AccessLogEncoding::Json as i32,
        provider: String::new(),
        mode: pb::TracingMode::ClientAndServer as i32,
        filter: filter.to_owned(),
    };
    let mut labels = metrics.tcp_labels(
        &metrics.words.source,
        &Default::default(),
        &Default::default(),
        &Default::default(),
        &metrics.words.unknown,
        None,
    );
    labels.destination_service = "mysql.default.svc.cluster.local".into();
    // TCP has no response code: the attribute is absent, so this never logs.
    let (tx, rx) = watch::channel(Some(Arc::new(running(Some(with_filter(
        "response.code >= 400",
    ))))));
    let log = TcpAccessLog::new(Arc::clone(&sinks), rx);
    log.closed(&labels, SystemTime::now(), Duration::ZERO, 1, 1);
    assert!(workers.lines.try_recv().is_err());
    tx.send_replace(Some(Arc::new(running(Some(with_filter(
        "xds.cluster_name.startsWith('mysql.') && request.size > 0",
    ))))));
    log.closed(&labels, SystemTime::now(), Duration::ZERO, 1, 1);
    assert!(workers.lines.try_recv().is_ok());
    log.closed(&labels, SystemTime::now(), Duration::ZERO, 0, 1);
    assert!(
        workers.lines.try_recv().is_err(),
        "request.size 0 is filtered out"
    );
}

#[test]
fn access_log_filter_outside_the_subset_is_refused_by_conversion() {
    let config = pb::ProxyConfig {
        telemetry: Some(pb::Telemetry {
            tracing: None,
            access_log: Some(pb::AccessLog {
                filter: "request.time > 0".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let Err(e) = ProxyConfig::try_from(&config) else {
        panic!("a filter outside the subset must be refused");
    };
    assert!(e.to_string().contains("request.time"), "{e}");
}
