//! Fault injection and mirroring as configured on routes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use sluice_api::config as pb;

use crate::harness::*;

const NET: u8 = 23;

fn on(path: &str, mut route: pb::Route) -> pb::Route {
    route.matches = vec![pb::RouteMatch {
        uri: Some(prefix(path)),
        ..Default::default()
    }];
    route
}

fn fault(delay_ms: u64, http: u32, grpc: &str) -> pb::Fault {
    pb::Fault {
        delay_ms,
        delay_percent: 100.0,
        abort_http_status: http,
        abort_grpc_status: grpc.to_owned(),
        abort_percent: if http > 0 || !grpc.is_empty() {
            100.0
        } else {
            0.0
        },
    }
}

fn config() -> pb::ProxyConfig {
    let v1 = format!("127.0.{NET}.11:9080").parse().unwrap();
    let v2 = format!("127.0.{NET}.12:9080").parse().unwrap();
    let to_v1 = || forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)]);
    let mut abort = on("/abort", to_v1());
    abort.fault = Some(fault(0, 503, ""));
    let mut grpc = on("/grpc-abort", to_v1());
    grpc.fault = Some(fault(0, 0, "UNAVAILABLE"));
    let mut slow = on("/slow", to_v1());
    slow.fault = Some(fault(300, 0, ""));
    let mut mirrored = on("/mirrored", to_v1());
    mirrored.mirrors = vec![pb::Mirror {
        cluster: cname("reviews", 9080, "v2"),
        percent: 100.0,
    }];
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![abort, grpc, slow, mirrored, to_v1()],
        )],
        clusters: vec![
            cluster(
                "reviews",
                9080,
                "v1",
                vec![endpoint(v1, "reviews-v1", "v1")],
            ),
            cluster(
                "reviews",
                9080,
                "v2",
                vec![endpoint(v2, "reviews-v2", "v2")],
            ),
        ],
        ..Default::default()
    }
}

#[tokio::test]
async fn resilience_faults_abort_and_delay_as_configured() {
    let primary = recording_backend(format!("127.0.{NET}.11:9080").parse().unwrap(), "v1").await;
    let _ = recording_backend(format!("127.0.{NET}.12:9080").parse().unwrap(), "v2").await;
    let (_ctl, proxy) = mesh_of_one(NET, config()).await;
    let out = proxy.outbound();

    let aborted = send(out, get("/abort", "reviews:9080")).await.unwrap();
    assert_eq!(aborted.status, 503);
    assert_eq!(aborted.header("x-backend"), "");
    let grpc = send(out, get("/grpc-abort", "reviews:9080")).await.unwrap();
    assert_eq!(grpc.status, 200);
    assert_eq!(grpc.header("grpc-status"), "14");
    assert!(
        primary.lock().unwrap().is_empty(),
        "aborted requests reached the app"
    );

    let start = Instant::now();
    let slow = send(out, get("/slow", "reviews:9080")).await.unwrap();
    assert_eq!(slow.status, 200);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        proxy
            .metric("istio_requests_total", &[("response_flags", "FI")])
            .await,
        2.0
    );
    for _ in 0..50 {
        if proxy
            .metric("istio_requests_total", &[("response_flags", "DI")])
            .await
            == 1.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("delayed request not reported with DI");
}

#[tokio::test]
async fn resilience_mirror_copies_requests_with_bodies_to_the_shadow_host() {
    let net_v1 = format!("127.0.{}.11:9080", NET + 1).parse().unwrap();
    let net_v2 = format!("127.0.{}.12:9080", NET + 1).parse().unwrap();
    let primary = recording_backend(net_v1, "v1").await;
    let shadow = recording_backend(net_v2, "v2").await;
    let mut cfg = config();
    cfg.clusters = vec![
        cluster(
            "reviews",
            9080,
            "v1",
            vec![endpoint(net_v1, "reviews-v1", "v1")],
        ),
        cluster(
            "reviews",
            9080,
            "v2",
            vec![endpoint(net_v2, "reviews-v2", "v2")],
        ),
    ];
    let (_ctl, proxy) = mesh_of_one(NET + 1, cfg).await;
    for i in 0..5 {
        let got = send(
            proxy.outbound(),
            get(&format!("/mirrored/{i}"), "reviews:9080"),
        )
        .await
        .unwrap();
        assert_eq!(got.header("x-backend"), "v1");
    }
    let post = http::Request::builder()
        .method("POST")
        .uri("/mirrored/post")
        .header("host", "reviews:9080")
        .body(Full::new(Bytes::from(vec![b'p'; 5000])))
        .unwrap();
    assert_eq!(
        send(proxy.outbound(), post)
            .await
            .unwrap()
            .header("x-backend"),
        "v1"
    );
    let mut copies = Vec::new();
    for _ in 0..100 {
        copies = shadow.lock().unwrap().clone();
        if copies.len() == 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    copies.sort();
    assert_eq!(copies.len(), 6, "{copies:?}");
    assert!(
        copies.contains(&"reviews-shadow:9080 /mirrored/post 5000".to_owned()),
        "{copies:?}"
    );
    assert!(
        copies.contains(&"reviews-shadow:9080 /mirrored/0 0".to_owned()),
        "{copies:?}"
    );
    assert_eq!(primary.lock().unwrap().len(), 6);
    // Unmirrored routes send no copies.
    send(proxy.outbound(), get("/plain", "reviews:9080"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(shadow.lock().unwrap().len(), 6);
}
