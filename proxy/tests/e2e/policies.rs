//! Retries, timeouts, circuit breaking, outlier ejection and inbound rate
//! limits, against scripted backends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_api::config as pb;
use tokio::net::TcpListener;

use crate::harness::*;

/// A backend answering `script(n, path)` to its n-th request (0-based); paths
/// `/delay/<ms>` wait first. Returns the request counter.
async fn scripted(
    addr: SocketAddr,
    name: &'static str,
    script: fn(usize, &str) -> u16,
) -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await;
                        let bytes = body.map(|b| b.to_bytes().len()).unwrap_or(0);
                        if let Some(ms) = path
                            .strip_prefix("/delay/")
                            .and_then(|d| d.split('/').next()?.parse().ok())
                        {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        let mut resp = Response::new(Full::new(Bytes::from(name)));
                        *resp.status_mut() = StatusCode::from_u16(script(n, &path)).unwrap();
                        resp.headers_mut()
                            .insert("x-backend", name.parse().unwrap());
                        resp.headers_mut().insert("x-body-bytes", bytes.into());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    count
}

fn addr(net: u8, host: u8) -> SocketAddr {
    format!("127.0.{net}.{host}:9080").parse().unwrap()
}

fn route(path: &str, subset: &str, retries: Option<pb::RetryPolicy>, timeout_ms: u64) -> pb::Route {
    let mut r = forward(
        vec![pb::RouteMatch {
            uri: Some(prefix(path)),
            ..Default::default()
        }],
        &[(&cname("reviews", 9080, subset), 1)],
    );
    r.retries = retries;
    r.timeout_ms = timeout_ms;
    r
}

fn retry(attempts: u32, on: &str) -> pb::RetryPolicy {
    pb::RetryPolicy {
        attempts,
        retry_on: on.to_owned(),
        backoff_base_ms: 5,
        ..Default::default()
    }
}

fn istio_default_retry() -> pb::RetryPolicy {
    pb::RetryPolicy {
        is_default: true,
        ..retry(
            2,
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        )
    }
}

#[tokio::test]
async fn policies_retry_5xx_recovers_codeless_retriable_status_codes_skips_503() {
    let net = 40;
    // Fails its first two requests, then answers.
    let flaky = scripted(addr(net, 11), "flaky", |n, _| if n < 2 { 503 } else { 200 }).await;
    let down = scripted(addr(net, 12), "down", |_, _| 503).await;
    // Fails every other request.
    let odd = scripted(
        addr(net, 13),
        "odd",
        |n, _| if n % 2 == 0 { 503 } else { 200 },
    )
    .await;
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![
                route("/flaky", "flaky", Some(retry(3, "5xx")), 0),
                route("/default", "down", Some(istio_default_retry()), 0),
                route("/exhaust", "down", Some(retry(2, "gateway-error")), 0),
                route("/post", "odd", Some(retry(1, "503")), 0),
            ],
        )],
        clusters: vec![
            cluster(
                "reviews",
                9080,
                "flaky",
                vec![endpoint(addr(net, 11), "reviews-v1", "v1")],
            ),
            cluster(
                "reviews",
                9080,
                "odd",
                vec![endpoint(addr(net, 13), "reviews-v3", "v3")],
            ),
            cluster(
                "reviews",
                9080,
                "down",
                vec![endpoint(addr(net, 12), "reviews-v2", "v2")],
            ),
        ],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    let got = send(out, get("/flaky", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(flaky.load(Ordering::SeqCst), 3, "two retries");
    assert_eq!(
        proxy
            .metric("sluice_retries_total", &[("outcome", "success")])
            .await,
        1.0
    );

    let got = send(out, get("/default", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 503);
    assert_eq!(
        down.load(Ordering::SeqCst),
        1,
        "retriable-status-codes without listed codes retries no 503"
    );

    let got = send(out, get("/exhaust", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 503);
    assert_eq!(down.load(Ordering::SeqCst), 4, "first try and two retries");
    assert_eq!(
        proxy
            .metric("sluice_retries_total", &[("outcome", "exhausted")])
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric(
                "istio_requests_total",
                &[("response_flags", "URX"), ("response_code", "503")]
            )
            .await,
        1.0
    );

    // A body within the replay buffer goes again on the retry; a larger one is sent once.
    let post = |size: usize| {
        Request::builder()
            .method("POST")
            .uri("/post")
            .header("host", "reviews:9080")
            .body(Full::new(Bytes::from(vec![b'p'; size])))
            .unwrap()
    };
    let got = send(out, post(5000)).await.unwrap();
    assert_eq!(
        (got.status.as_u16(), got.header("x-body-bytes")),
        (200, "5000")
    );
    assert_eq!(odd.load(Ordering::SeqCst), 2);
    let got = send(out, post(100_000)).await.unwrap();
    assert_eq!(got.status, 503, "a body past 64 KiB is not retried");
    assert_eq!(odd.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn policies_per_try_and_route_timeouts_answer_504() {
    let net = 41;
    let slow = scripted(addr(net, 11), "slow", |_, _| 200).await;
    let mut per_try = retry(1, "5xx");
    per_try.per_try_timeout_ms = 100;
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![
                route("/delay/400/per-try", "v1", Some(per_try), 0),
                route("/delay/600/route", "v1", None, 150),
                route("/delay", "v1", None, 0),
            ],
        )],
        clusters: vec![cluster(
            "reviews",
            9080,
            "v1",
            vec![endpoint(addr(net, 11), "reviews-v1", "v1")],
        )],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    let start = Instant::now();
    let got = send(out, get("/delay/400/per-try", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 504);
    assert!(
        start.elapsed() < Duration::from_millis(390),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        slow.load(Ordering::SeqCst),
        2,
        "the timed-out try was retried once"
    );
    assert_eq!(
        proxy
            .metric("istio_requests_total", &[("response_flags", "UT,URX")])
            .await,
        1.0
    );

    let start = Instant::now();
    let got = send(out, get("/delay/600/route", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 504);
    assert_eq!(got.body.trim(), "upstream request timeout");
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );

    let got = send(out, get("/delay/50", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 200, "no timeout configured");
}

#[tokio::test]
async fn policies_connection_pool_overflow_answers_503_uo() {
    let net = 42;
    let _b = scripted(addr(net, 11), "v1", |_, _| 200).await;
    let mut c = cluster(
        "reviews",
        9080,
        "v1",
        vec![endpoint(addr(net, 11), "reviews-v1", "v1")],
    );
    c.connection_pool = Some(pb::ConnectionPool {
        max_connections: 1,
        http1_max_pending_requests: 1,
        ..Default::default()
    });
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost("reviews", 9080, vec![route("/", "v1", None, 0)])],
        clusters: vec![c],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    // One at a time (fortio -c 1): all pass.
    for _ in 0..3 {
        assert_eq!(
            send(out, get("/delay/20", "reviews:9080"))
                .await
                .unwrap()
                .status,
            200
        );
    }
    // Four at once: one on the connection, one pending, the rest overflow.
    let all =
        futures::future::join_all((0..4).map(|_| send(out, get("/delay/300", "reviews:9080"))))
            .await;
    let mut ok = 0;
    let mut overloaded = 0;
    for got in all {
        let got = got.unwrap();
        match got.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(got.header("x-envoy-overloaded"), "true");
                overloaded += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    // Normally 2 and 2; a slow machine may stagger arrivals past the 300 ms.
    assert!(
        ok >= 2 && overloaded >= 1,
        "{ok} ok, {overloaded} overloaded"
    );
    let overloaded = f64::from(overloaded);
    assert_eq!(
        proxy
            .metric("sluice_upstream_overflow_total", &[("kind", "pending")])
            .await,
        overloaded
    );
    assert_eq!(
        proxy
            .metric("istio_requests_total", &[("response_flags", "UO")])
            .await,
        overloaded
    );
}

#[tokio::test]
async fn policies_outlier_ejects_failing_endpoint_and_returns_it_after_base_time() {
    let net = 43;
    let bad = scripted(addr(net, 11), "bad", |_, _| 500).await;
    let good = scripted(addr(net, 12), "good", |_, _| 200).await;
    let mut c = cluster(
        "reviews",
        9080,
        "v1",
        vec![
            endpoint(addr(net, 11), "reviews-v1", "v1"),
            endpoint(addr(net, 12), "reviews-v2", "v1"),
        ],
    );
    c.load_balancer = Some(pb::LoadBalancer {
        simple: pb::load_balancer::Simple::RoundRobin as i32,
        ..Default::default()
    });
    c.outlier_detection = Some(pb::OutlierDetection {
        consecutive_5xx_errors: 2,
        interval_ms: 1000,
        base_ejection_time_ms: 1500,
        max_ejection_percent: 100,
        ..Default::default()
    });
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost("reviews", 9080, vec![route("/", "v1", None, 0)])],
        clusters: vec![c],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    for _ in 0..4 {
        send(out, get("/", "reviews:9080")).await.unwrap();
    }
    assert_eq!(
        bad.load(Ordering::SeqCst),
        2,
        "round robin: every other request"
    );
    let before = good.load(Ordering::SeqCst);
    for _ in 0..10 {
        let got = send(out, get("/", "reviews:9080")).await.unwrap();
        assert_eq!(
            got.header("x-backend"),
            "good",
            "ejected endpoint got traffic"
        );
    }
    assert_eq!(good.load(Ordering::SeqCst), before + 10);
    assert_eq!(
        proxy.metric("sluice_outlier_ejections_total", &[]).await,
        1.0
    );
    assert_eq!(proxy.metric("sluice_endpoints_ejected", &[]).await, 1.0);

    tokio::time::sleep(Duration::from_millis(1600)).await;
    for _ in 0..4 {
        send(out, get("/", "reviews:9080")).await.unwrap();
    }
    assert!(
        bad.load(Ordering::SeqCst) > 2,
        "endpoint back after the ejection time"
    );
}

fn inbound_config(net: u8, limit: pb::RateLimit) -> pb::ProxyConfig {
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
            rate_limits: vec![limit],
            security: None,
        }),
        clusters: vec![cluster(
            "reviews",
            9080,
            "v1",
            vec![endpoint(addr(net, 1), "x", "v1")],
        )],
        ..Default::default()
    }
}

fn limit(fill_interval_ms: u64) -> pb::RateLimit {
    pb::RateLimit {
        name: "default/RateLimitPolicy/reviews".to_owned(),
        max_tokens: 3,
        tokens_per_fill: 3,
        fill_interval_ms,
        enabled_percent: 100.0,
        enforced_percent: 100.0,
        x_ratelimit_headers: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn policies_rate_limit_429_after_burst_then_refills_and_invalid_is_nacked() {
    let net = 44;
    let app = scripted(addr(net, 1), "app", |_, _| 200).await;
    let (ctl, proxy) = mesh_of_one(net, inbound_config(net, limit(2000))).await;
    let inbound = proxy.inbound();

    for left in ["2", "1", "0"] {
        let got = send(inbound, get("/", "reviews:9080")).await.unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-ratelimit-remaining"), left);
    }
    let got = send(inbound, get("/", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 429);
    assert_eq!(got.body, "local_rate_limited");
    assert_eq!(got.header("x-ratelimit-limit"), "3");
    assert_eq!(got.header("x-envoy-ratelimited"), "true");
    assert!(
        ["1", "2"].contains(&got.header("x-ratelimit-reset")),
        "{got:?}"
    );
    assert_eq!(
        app.load(Ordering::SeqCst),
        3,
        "refused request reached the app"
    );
    let limited = [
        ("decision", "limited"),
        ("limit", "default/RateLimitPolicy/reviews"),
    ];
    assert_eq!(
        proxy
            .metric("sluice_rate_limit_decisions_total", &limited)
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric(
                "istio_requests_total",
                &[("response_flags", "RL"), ("response_code", "429")]
            )
            .await,
        1.0
    );

    tokio::time::sleep(Duration::from_millis(2050)).await;
    assert_eq!(
        send(inbound, get("/", "reviews:9080"))
            .await
            .unwrap()
            .status,
        200
    );

    ctl.publish("2", inbound_config(net, limit(0)));
    match ctl.reply("2").await {
        Reply::Nack(e) => assert!(e.contains("fill_interval_ms"), "{e}"),
        Reply::Ack => panic!("fill_interval 0 was accepted"),
    }
    // The last good config keeps running, buckets included.
    let got = send(inbound, get("/", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn policies_retry_other_host_and_budget_limits_retries() {
    let net = 45;
    let bad = scripted(addr(net, 11), "bad", |_, _| 503).await;
    let _good = scripted(addr(net, 12), "good", |_, _| 200).await;
    let mut other_host = retry(1, "5xx");
    other_host.retry_ignore_previous_hosts = true;
    let mut no_budget = retry(3, "5xx");
    no_budget.budget = Some(pb::RetryBudget {
        percent: 0.0,
        min_retries_per_second: 0,
    });
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![
                route("/budget", "bad", Some(no_budget), 0),
                route("/", "both", Some(other_host), 0),
            ],
        )],
        clusters: vec![
            cluster(
                "reviews",
                9080,
                "both",
                vec![
                    endpoint(addr(net, 11), "reviews-v1", "v1"),
                    endpoint(addr(net, 12), "reviews-v2", "v2"),
                ],
            ),
            cluster(
                "reviews",
                9080,
                "bad",
                vec![endpoint(addr(net, 11), "reviews-v1", "v1")],
            ),
        ],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    // Random picks would hit the failing endpoint twice in a row now and then.
    for _ in 0..12 {
        let got = send(out, get("/", "reviews:9080")).await.unwrap();
        assert_eq!(got.status, 200, "retry went back to the failing endpoint");
    }
    let before = bad.load(Ordering::SeqCst);
    let got = send(out, get("/budget", "reviews:9080")).await.unwrap();
    assert_eq!(got.status, 503);
    assert_eq!(
        bad.load(Ordering::SeqCst),
        before + 1,
        "empty budget allows no retry"
    );
    assert_eq!(
        proxy
            .metric("sluice_retry_budget_exhausted_total", &[])
            .await,
        1.0
    );
}
