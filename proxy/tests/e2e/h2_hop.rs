//! The HTTP/2 hop between two sidecars (`h2UpgradePolicy: UPGRADE`) under many
//! requests on one connection:
//! request bodies end cleanly, so the server sidecar never resets streams and
//! never sends GOAWAY for "too many internal resets" (h2 counts those per
//! connection, 1024 by default): every request succeeds on the first connection.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sluice_api::config as pb;
use tokio::net::TcpStream;

use crate::harness::*;

const NET: u8 = 91;
/// More than h2's default cap on locally reset streams per connection (1024).
const REQUESTS: usize = 1100;

fn server_addr(port: u16) -> SocketAddr {
    format!("127.0.{NET}.2:{port}").parse().unwrap()
}

fn client_config() -> pb::ProxyConfig {
    let mut vh = vhost(
        "reviews",
        9080,
        vec![forward(vec![], &[(&cname("reviews", 9080, ""), 1)])],
    );
    // Istio's default retry policy, as the controller sends it: the body goes
    // through the replayable path.
    for route in &mut vh.routes {
        route.retries = Some(pb::RetryPolicy {
            attempts: 2,
            retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
                .to_owned(),
            retry_ignore_previous_hosts: true,
            is_default: true,
            ..Default::default()
        });
    }
    let ep = pb::Endpoint {
        sidecar: true,
        ..endpoint(server_addr(9080), "reviews-v1", "v1")
    };
    // HTTP/1.1 callers reach an HTTP port as HTTP/1.1 unless the cluster upgrades.
    let mut reviews = cluster("reviews", 9080, "", vec![ep]);
    let mut pool = pb::ConnectionPool::default();
    pool.set_h2_upgrade_policy(pb::connection_pool::H2UpgradePolicy::Upgrade);
    reviews.connection_pool = Some(pool);
    pb::ProxyConfig {
        virtual_hosts: vec![vh],
        clusters: vec![reviews],
        ..Default::default()
    }
}

fn server_config() -> pb::ProxyConfig {
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
        ..Default::default()
    }
}

async fn inbound_connections(server: &Proxy) -> f64 {
    server
        .metric(
            "sluice_connections_accepted_total",
            &[("listener", "inbound")],
        )
        .await
}

#[tokio::test]
async fn h2_hop_many_posts_through_pair_stay_on_one_connection() {
    backend(server_addr(9080), "reviews-app").await;
    let client_ctl = Controller::start(format!("127.0.{NET}.250:15010").parse().unwrap()).await;
    let server_ctl = Controller::start(format!("127.0.{NET}.251:15010").parse().unwrap()).await;
    let client = Proxy::start(
        &format!("127.0.{NET}.1"),
        client_ctl.addr,
        "productpage-v1",
        &[],
    )
    .await;
    let server = Proxy::start(
        &format!("127.0.{NET}.2"),
        server_ctl.addr,
        "reviews-v1",
        &[],
    )
    .await;
    client_ctl.publish("1", client_config());
    server_ctl.publish("1", server_config());
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);

    // One keep-alive HTTP/1.1 connection from the app, 1 KB bodies, as fortio sends them.
    let stream = TcpStream::connect(client.outbound()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let payload = Bytes::from(vec![b'x'; 1024]);
    for i in 0..REQUESTS {
        let req = Request::post("/echo")
            .header("host", "reviews:9080")
            .body(Full::new(payload.clone()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        let status = resp.status();
        resp.into_body().collect().await.unwrap();
        assert_eq!(status, 200, "request {i}");
    }
    assert_eq!(
        inbound_connections(&server).await,
        1.0,
        "the sidecar-to-sidecar h2 connection was closed and reopened (GOAWAY)"
    );
}
