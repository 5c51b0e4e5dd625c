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

/// `--concurrency 1` (Istio's `ProxyConfig.concurrency`) runs the sidecar on
/// one thread: it still serves a fast request while a slow one is in flight,
/// reports one worker, and drains on SIGTERM. Unset, it takes the CPUs it may
/// use, at most two. (This setup resolves no names and reads no files, so no
/// blocking-pool thread starts either.)
#[tokio::test]
async fn lifecycle_concurrency_one_serves_on_a_single_thread() {
    let net = 24;
    backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    let ctl = Controller::start(format!("127.0.{net}.250:15010").parse().unwrap()).await;
    let mut single = Proxy::start_with(
        &format!("127.0.{net}.1"),
        ctl.addr,
        "client",
        &["app=client", "version=v1"],
        &["--concurrency", "1"],
    )
    .await;
    ctl.publish("1", config(net, 0));
    assert_eq!(ctl.reply("1").await, Reply::Ack);
    assert_eq!(single.metric("sluice_worker_threads", &[]).await, 1.0);
    // The proxy process runs exactly one thread: no worker beside the main one.
    let threads = std::fs::read_dir(format!("/proc/{}/task", single.pid()))
        .map(|d| d.count())
        .expect("/proc/<pid>/task");
    assert_eq!(threads, 1, "threads of the --concurrency 1 sidecar");

    let out = single.outbound();
    let slow = tokio::spawn(async move { send(out, get("/delay/600", "reviews:9080")).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fast = send(out, get("/", "reviews:9080"))
        .await
        .expect("fast request");
    assert_eq!(fast.status, 200, "{}", fast.body);
    assert!(
        !slow.is_finished(),
        "the fast request was answered only after the slow one"
    );
    single.terminate();
    let slow = slow.await.unwrap().expect("slow request");
    assert_eq!(slow.status, 200, "in-flight request was cut: {}", slow.body);
    assert!(
        single.wait_exit(Duration::from_secs(6)).await,
        "proxy did not exit after SIGTERM"
    );

    let default = Proxy::start(
        &format!("127.0.{net}.2"),
        ctl.addr,
        "client",
        &["app=client", "version=v1"],
    )
    .await;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        default.metric("sluice_worker_threads", &[]).await,
        cpus.min(2) as f64
    );
}
