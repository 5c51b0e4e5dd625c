//! Outlier detection fed by timeouts: what a route timeout that cuts a
//! request counts for the endpoint it went to, as Envoy's router reports it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice_api::config as pb;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::harness::*;

/// An endpoint that accepts connections, reads what comes and never answers.
/// Returns how many connections it accepted.
async fn hanging(addr: SocketAddr) -> Arc<AtomicUsize> {
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    accepted
}

fn addr(net: u8, host: u8) -> SocketAddr {
    format!("127.0.{net}.{host}:9080").parse().unwrap()
}

fn timed_route(path: &str, subset: &str, timeout_ms: u64) -> pb::Route {
    let mut r = forward(
        vec![pb::RouteMatch {
            uri: Some(prefix(path)),
            ..Default::default()
        }],
        &[(&cname("reviews", 9080, subset), 1)],
    );
    r.timeout_ms = timeout_ms;
    r
}

/// A round-robin cluster of `endpoints` with `outlier` detection.
fn watched(subset: &str, endpoints: &[SocketAddr], outlier: pb::OutlierDetection) -> pb::Cluster {
    let eps = endpoints
        .iter()
        .enumerate()
        .map(|(i, a)| endpoint(*a, &format!("reviews-{subset}{i}"), subset))
        .collect();
    let mut c = cluster("reviews", 9080, subset, eps);
    c.load_balancer = Some(pb::LoadBalancer {
        simple: pb::load_balancer::Simple::RoundRobin as i32,
        ..Default::default()
    });
    c.outlier_detection = Some(pb::OutlierDetection {
        interval_ms: 10_000,
        base_ejection_time_ms: 60_000,
        max_ejection_percent: 100,
        ..outlier
    });
    c
}

fn ejections(subset: &str) -> [(&'static str, String); 1] {
    [("cluster", cname("reviews", 9080, subset))]
}

async fn ejected(proxy: &Proxy, subset: &str) -> f64 {
    let labels = ejections(subset);
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
    proxy
        .metric("sluice_outlier_ejections_total", &labels)
        .await
}

#[tokio::test]
async fn outlier_route_timeout_in_flight_counts_as_504_and_ejects() {
    let net = 46;
    let hung = hanging(addr(net, 11)).await;
    let _good = backend(addr(net, 12), "good").await;
    let c = watched(
        "v1",
        &[addr(net, 11), addr(net, 12)],
        pb::OutlierDetection {
            consecutive_5xx_errors: 2,
            ..Default::default()
        },
    );
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost("reviews", 9080, vec![timed_route("/", "v1", 200)])],
        clusters: vec![c],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    let mut timed_out = 0;
    for _ in 0..4 {
        let got = send(out, get("/", "reviews:9080")).await.unwrap();
        if got.status == 504 {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 2, "round robin: every other request hangs");
    assert_eq!(hung.load(Ordering::SeqCst), 2);
    assert_eq!(ejected(&proxy, "v1").await, 1.0, "two 504s in a row eject");
    for _ in 0..6 {
        let start = Instant::now();
        let got = send(out, get("/", "reviews:9080")).await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-backend"), "good");
        assert!(start.elapsed() < Duration::from_millis(150));
    }
}

#[tokio::test]
async fn outlier_split_route_timeout_is_local_origin_and_each_connection_resets_it() {
    let net = 47;
    let _hung_one = hanging(addr(net, 11)).await;
    let _good_one = backend(addr(net, 12), "good-one").await;
    let hung_two = hanging(addr(net, 13)).await;
    let _good_two = backend(addr(net, 14), "good-two").await;
    let split = |local: u32| pb::OutlierDetection {
        split_external_local_origin_errors: true,
        consecutive_local_origin_failures: local,
        // With the split a timeout is no 5xx: a threshold of 1 stays untouched.
        consecutive_5xx_errors: 1,
        consecutive_gateway_errors: 1,
        ..Default::default()
    };
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![
                timed_route("/one", "one", 200),
                timed_route("/two", "two", 200),
            ],
        )],
        clusters: vec![
            watched("one", &[addr(net, 11), addr(net, 12)], split(1)),
            watched("two", &[addr(net, 13), addr(net, 14)], split(2)),
        ],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    // Each attempt gets its connection before it hangs, and Envoy reports
    // that connection as a local-origin success: the count never passes 1.
    let mut timed_out = 0;
    for _ in 0..8 {
        let got = send(out, get("/two", "reviews:9080")).await.unwrap();
        if got.status == 504 {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 4);
    assert_eq!(hung_two.load(Ordering::SeqCst), 4);
    assert_eq!(ejected(&proxy, "two").await, 0.0);

    // A threshold of 1: the first timeout ejects.
    let mut timed_out = 0;
    for _ in 0..2 {
        if send(out, get("/one", "reviews:9080")).await.unwrap().status == 504 {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 1);
    assert_eq!(ejected(&proxy, "one").await, 1.0);
    for _ in 0..4 {
        let got = send(out, get("/one", "reviews:9080")).await.unwrap();
        assert_eq!(got.header("x-backend"), "good-one");
    }
}

#[tokio::test]
async fn outlier_route_timeout_while_waiting_for_a_connection_slot_counts_nothing() {
    let net = 48;
    let hung = hanging(addr(net, 11)).await;
    let mut c = watched(
        "v1",
        &[addr(net, 11)],
        pb::OutlierDetection {
            consecutive_5xx_errors: 2,
            ..Default::default()
        },
    );
    c.connection_pool = Some(pb::ConnectionPool {
        max_connections: 1,
        ..Default::default()
    });
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![
                timed_route("/hold", "v1", 1000),
                timed_route("/wait", "v1", 200),
            ],
        )],
        clusters: vec![c],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    // `/hold` takes the only connection slot; `/wait` times out queued behind
    // it, before any endpoint had it: Envoy's router has no host to report.
    let hold = tokio::spawn(async move { send(out, get("/hold", "reviews:9080")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waited = send(out, get("/wait", "reviews:9080")).await.unwrap();
    assert_eq!(waited.status, 504);
    assert_eq!(hold.await.unwrap().unwrap().status, 504);
    assert_eq!(
        hung.load(Ordering::SeqCst),
        1,
        "the queued request never left"
    );
    assert_eq!(ejected(&proxy, "v1").await, 0.0, "only one timeout counted");

    // One more timeout of a request in flight makes two.
    let got = send(out, get("/wait", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 504);
    assert_eq!(ejected(&proxy, "v1").await, 1.0);
}
