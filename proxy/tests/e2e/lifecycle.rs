//! Process lifecycle and time limits: SIGTERM drains in-flight requests, route
//! timeouts answer 504, request bodies stream through.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use sluice_api::config as pb;

use crate::harness::*;

fn config(net: u8, timeout_ms: u64) -> pb::ProxyConfig {
    let addr = format!("127.0.{net}.11:9080").parse().unwrap();
    let mut limited = forward(
        vec![pb::RouteMatch {
            uri: Some(prefix("/limited/")),
            ..Default::default()
        }],
        &[(&cname("reviews", 9080, "v1"), 1)],
    );
    limited.timeout_ms = timeout_ms;
    limited.rewrite = Some(pb::Rewrite {
        uri: "/".to_owned(),
        ..Default::default()
    });
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![
                limited,
                forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)]),
            ],
        )],
        clusters: vec![cluster(
            "reviews",
            9080,
            "v1",
            vec![endpoint(addr, "reviews-v1", "v1")],
        )],
        ..Default::default()
    }
}

#[tokio::test]
async fn lifecycle_sigterm_finishes_in_flight_requests_then_exits() {
    let net = 20;
    backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    let (_ctl, mut proxy) = mesh_of_one(net, config(net, 0)).await;
    let out = proxy.outbound();
    let slow = tokio::spawn(async move { send(out, get("/delay/700", "reviews:9080")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.terminate();
    let got = slow.await.unwrap().unwrap();
    assert_eq!(got.status, 200, "in-flight request was cut: {}", got.body);
    assert!(
        proxy.wait_exit(Duration::from_secs(6)).await,
        "proxy did not exit after SIGTERM"
    );
}

#[tokio::test]
async fn lifecycle_route_timeout_answers_504_and_bodies_stream_through() {
    let net = 21;
    backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    let (_ctl, proxy) = mesh_of_one(net, config(net, 150)).await;
    let start = Instant::now();
    let late = send(proxy.outbound(), get("/limited/delay/2000", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(late.status, 504);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        proxy
            .metric("istio_requests_total", &[("response_flags", "UT")])
            .await,
        1.0
    );

    let body = Bytes::from(vec![b'x'; 300_000]);
    let post = http::Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "reviews:9080")
        .body(Full::new(body))
        .unwrap();
    let got = send(proxy.outbound(), post).await.unwrap();
    assert_eq!(got.status, 200);
    assert!(got.body.contains("body-bytes: 300000"), "{}", got.body);
}
