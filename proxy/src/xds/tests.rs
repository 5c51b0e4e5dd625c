use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sluice_api::config as pb;

use super::*;
use crate::config::Identity;

fn snapshot(version: &str, cluster_port: u32) -> Snapshot {
    Snapshot {
        version: version.to_owned(),
        delta: None,
        config: Some(pb::ProxyConfig {
            clusters: vec![pb::Cluster {
                name: "c".to_owned(),
                port: cluster_port,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

#[test]
fn backoff_doubles_up_to_the_cap_and_jitter_stays_within_half() {
    let mut b = BACKOFF_MIN;
    let mut seen = Vec::new();
    for _ in 0..8 {
        seen.push(b);
        b = next_backoff(b);
    }
    assert_eq!(seen[..4], [100, 200, 400, 800].map(Duration::from_millis));
    assert_eq!(b, BACKOFF_MAX);
    for _ in 0..100 {
        let j = jittered(Duration::from_secs(2));
        assert!(
            j >= Duration::from_secs(1) && j <= Duration::from_secs(2),
            "{j:?}"
        );
    }
}

#[test]
fn apply_acks_valid_and_nacks_invalid_keeping_the_last_good_config() {
    let (tx, rx) = watch::channel(None);
    let metrics = Metrics::new();
    let mut last = Applied::default();
    let ack = apply(snapshot("1", 80), &mut last, &tx, &metrics);
    assert!(
        matches!(ack.kind, Some(proxy_message::Kind::Ack(Ack { ref version })) if version == "1")
    );
    let nack = apply(snapshot("2", 99_999), &mut last, &tx, &metrics);
    match nack.kind {
        Some(proxy_message::Kind::Nack(n)) => {
            assert_eq!(n.version, "2");
            assert_eq!(n.error, "cluster c: port 99999 out of range");
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
    assert_eq!(
        rx.borrow().as_ref().map(|r| r.version.clone()),
        Some("1".to_owned())
    );
    let text = metrics.encode();
    assert!(
        text.contains("sluice_config_updates_total{outcome=\"nack\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sluice_config_version_info{version=\"1\"} 1"),
        "{text}"
    );
}

fn settings(controller: &str) -> Settings {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addr = SocketAddr::new(ip, 0);
    Settings {
        controller: controller.to_owned(),
        identity: Identity {
            id: "t".to_owned(),
            workload: "t".to_owned(),
            namespace: "default".to_owned(),
            service_account: "t".to_owned(),
            labels: Default::default(),
            trust_domain: "cluster.local".to_owned(),
            ip,
        },
        outbound: addr,
        inbound: addr,
        admin: addr,
        health: addr,
        stats: addr,
        connect_timeout: Duration::from_secs(1),
        app_ip: ip,
        ca: None,
        credentials_dir: None,
        controller_auth: Default::default(),
    }
}

#[tokio::test(start_paused = true)]
async fn run_keeps_retrying_an_absent_controller_until_shutdown() {
    // Bind then drop a listener so the port is closed: every connect is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (tx, rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let task = tokio::spawn(run(
        settings(&format!("http://127.0.0.1:{port}")),
        tx,
        Arc::clone(&metrics),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!task.is_finished(), "the stream loop gave up");
    assert!(rx.borrow().is_none());
    assert_eq!(metrics.config_connected.get(), 0);
    stop_tx.send_replace(true);
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
}

fn delta(version: &str, base: &str, cluster_port: u32) -> Snapshot {
    Snapshot {
        version: version.to_owned(),
        config: None,
        delta: Some(pb::ConfigDelta {
            base_version: base.to_owned(),
            clusters: vec![pb::Cluster {
                name: "c".to_owned(),
                port: cluster_port,
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn running_port(rx: &watch::Receiver<Option<Arc<Running>>>) -> (String, u16) {
    let r = rx.borrow().clone().expect("a config");
    let port = r.config.clusters.first().expect("cluster c").port;
    (r.version.clone(), port)
}

#[test]
fn apply_delta_on_its_base_acks_and_serves_the_merged_config() {
    let (tx, rx) = watch::channel(None);
    let metrics = Metrics::new();
    let mut last = Applied::default();
    apply(snapshot("1", 80), &mut last, &tx, &metrics);
    let ack = apply(delta("2", "1", 81), &mut last, &tx, &metrics);
    assert!(
        matches!(ack.kind, Some(proxy_message::Kind::Ack(Ack { ref version })) if version == "2")
    );
    assert_eq!(running_port(&rx), ("2".to_owned(), 81));
    assert_eq!(last.version(), Some("2"));
}

#[test]
fn apply_delta_with_wrong_base_nacks_and_keeps_the_last_good_config() {
    let (tx, rx) = watch::channel(None);
    let metrics = Metrics::new();
    let mut last = Applied::default();
    apply(snapshot("1", 80), &mut last, &tx, &metrics);
    let nack = apply(delta("3", "2", 99), &mut last, &tx, &metrics);
    match nack.kind {
        Some(proxy_message::Kind::Nack(n)) => {
            assert_eq!(n.version, "3");
            assert_eq!(n.error, "delta base 2 but applied 1");
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
    assert_eq!(running_port(&rx), ("1".to_owned(), 80));
    // The base is still version 1: a delta on it applies.
    apply(delta("4", "1", 82), &mut last, &tx, &metrics);
    assert_eq!(running_port(&rx), ("4".to_owned(), 82));
}

#[test]
fn apply_delta_that_makes_an_invalid_config_nacks_and_keeps_the_base() {
    let (tx, rx) = watch::channel(None);
    let metrics = Metrics::new();
    let mut last = Applied::default();
    apply(snapshot("1", 80), &mut last, &tx, &metrics);
    let nack = apply(delta("2", "1", 99_999), &mut last, &tx, &metrics);
    assert!(matches!(nack.kind, Some(proxy_message::Kind::Nack(_))));
    assert_eq!(last.version(), Some("1"));
    assert_eq!(running_port(&rx), ("1".to_owned(), 80));
}

#[test]
fn apply_delta_before_any_config_nacks() {
    let (tx, _rx) = watch::channel(None);
    let mut last = Applied::default();
    let nack = apply(delta("2", "1", 81), &mut last, &tx, &Metrics::new());
    match nack.kind {
        Some(proxy_message::Kind::Nack(n)) => {
            assert_eq!(n.error, "delta base 1 but no configuration applied yet")
        }
        other => panic!("expected a NACK, got {other:?}"),
    }
}

#[test]
fn apply_delta_with_telemetry_swaps_it_and_keeps_the_rest() {
    let (tx, rx) = watch::channel(None);
    let metrics = Metrics::new();
    let mut last = Applied::default();
    apply(snapshot("1", 80), &mut last, &tx, &metrics);
    let telemetry = pb::Telemetry {
        tracing: Some(pb::Tracing {
            sampling_percent: 50.0,
            otlp_endpoint: "collector:4317".to_owned(),
            ..Default::default()
        }),
        access_log: None,
        ..Default::default()
    };
    let delta = Snapshot {
        version: "2".to_owned(),
        config: None,
        delta: Some(pb::ConfigDelta {
            base_version: "1".to_owned(),
            telemetry: Some(telemetry),
            ..Default::default()
        }),
    };
    let reply = apply(delta, &mut last, &tx, &metrics);
    assert!(matches!(reply.kind, Some(proxy_message::Kind::Ack(_))));
    let running = rx.borrow().clone().unwrap();
    assert_eq!(running.version, "2");
    let tracing = running.config.telemetry.tracing.as_ref().unwrap();
    assert_eq!(tracing.otlp_endpoint, "collector:4317");
    assert_eq!(running.config.clusters.len(), 1);
    // The next complete config without telemetry turns it off again.
    apply(snapshot("3", 80), &mut last, &tx, &metrics);
    let running = rx.borrow().clone().unwrap();
    assert!(running.config.telemetry.tracing.is_none());
}
