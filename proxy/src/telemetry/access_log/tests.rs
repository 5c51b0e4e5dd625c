use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::metrics::Metrics;

fn entry() -> Entry<'static> {
    Entry {
        // 2023-11-14T22:13:20.123Z
        start_time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        method: Some("GET"),
        path: Some("/reviews/1?x=1"),
        protocol: Some("HTTP/1.1"),
        response_code: 200,
        response_flags: "-",
        response_code_details: Some("via_upstream"),
        connection_termination_details: None,
        upstream_transport_failure_reason: None,
        bytes_received: 3,
        bytes_sent: 1234,
        duration: Duration::from_millis(17),
        upstream_service_time: Some(Duration::from_millis(15)),
        x_forwarded_for: None,
        user_agent: Some("curl/8"),
        request_id: Some("abc"),
        authority: Some("reviews:9080"),
        upstream_host: Some("10.0.0.2:9080"),
        upstream_cluster: Some("outbound|9080|v1|reviews.default.svc.cluster.local"),
        upstream_local_address: None,
        downstream_local_address: Some("10.0.0.1:9080"),
        downstream_remote_address: Some("10.0.0.1:40000"),
        requested_server_name: None,
        route_name: Some("default"),
        upstream_peer_principal: None,
        downstream_peer_principal: None,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    }
}

#[test]
fn text_line_follows_envoys_default_format() {
    let line = text(&entry());
    assert_eq!(
        line,
        "[2023-11-14T22:13:20.123Z] \"GET /reviews/1?x=1 HTTP/1.1\" 200 - via_upstream - \"-\" \
         3 1234 17 15 \"-\" \"curl/8\" \"abc\" \"reviews:9080\" \"10.0.0.2:9080\" \
         outbound|9080|v1|reviews.default.svc.cluster.local - 10.0.0.1:9080 10.0.0.1:40000 - default\n"
    );
}

#[test]
fn json_line_carries_istio_field_names() {
    let line = json(&entry());
    assert!(line.ends_with('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["start_time"], "2023-11-14T22:13:20.123Z");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/reviews/1?x=1");
    assert_eq!(v["response_code"], 200);
    assert_eq!(v["response_flags"], "-");
    assert_eq!(v["bytes_sent"], 1234);
    assert_eq!(v["duration"], 17);
    assert_eq!(v["upstream_service_time"], 15);
    assert_eq!(v["x_forwarded_for"], serde_json::Value::Null);
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    for key in [
        "protocol",
        "response_code_details",
        "connection_termination_details",
        "upstream_transport_failure_reason",
        "bytes_received",
        "user_agent",
        "request_id",
        "authority",
        "upstream_host",
        "upstream_cluster",
        "upstream_local_address",
        "downstream_local_address",
        "downstream_remote_address",
        "requested_server_name",
        "route_name",
        "upstream_peer_principal",
        "downstream_peer_principal",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {line}");
    }
}

#[test]
fn start_time_handles_leap_years() {
    let mut out = String::new();
    // 2024-02-29T23:59:59.999Z
    super::super::time::write_rfc3339_millis(
        &mut out,
        UNIX_EPOCH + Duration::from_millis(1_709_251_199_999),
    );
    assert_eq!(out, "2024-02-29T23:59:59.999Z");
}

#[tokio::test]
async fn writer_writes_every_line_and_counts_them() {
    let metrics = Metrics::new();
    let (tx, rx) = mpsc::channel(8);
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(run_writer(rx, client, metrics.telemetry.clone()));
    tx.send("one\n".to_owned()).await.unwrap();
    tx.send("two\n".to_owned()).await.unwrap();
    drop(tx);
    task.await.unwrap();
    let mut got = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut server, &mut got)
        .await
        .unwrap();
    assert_eq!(got, "one\ntwo\n");
    let text = metrics.encode();
    assert!(
        text.contains("sluice_access_log_entries_total{outcome=\"written\"} 2"),
        "{text}"
    );
}
