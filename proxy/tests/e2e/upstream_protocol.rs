//! The HTTP version between two sidecars over mutual TLS follows Istio's
//! cluster rules: HTTP/1.1 for a port declared HTTP (`DO_NOT_UPGRADE`, the
//! default), HTTP/2 with `h2UpgradePolicy: UPGRADE`, and the caller's own
//! version with `useClientProtocol`. The server sidecar's access log shows the
//! version it received (`protocol`), matched to each request by its trace id.

use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_api::config as pb;

use crate::harness::*;
use crate::logged::LoggedProxy;
use crate::security::{credential_dirs, inbound_port, meta};

const NET: u8 = 93;

fn addr(host: u8, port: u16) -> SocketAddr {
    format!("127.0.{NET}.{host}:{port}").parse().unwrap()
}

/// The client side: reviews:9080 (declared HTTP) → the server's sidecar, with `pool`.
fn client_config(pool: Option<pb::ConnectionPool>) -> pb::ProxyConfig {
    let ep = pb::Endpoint {
        sidecar: true,
        ..endpoint(addr(2, 9080), "reviews-v1", "v1")
    };
    let mut reviews = cluster("reviews", 9080, "", vec![ep]);
    reviews.connection_pool = pool;
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![forward(vec![], &[(&cname("reviews", 9080, ""), 1)])],
        )],
        clusters: vec![reviews],
        self_: Some(meta("productpage-v1", "productpage", "productpage")),
        ..Default::default()
    }
}

/// The server side: reviews on 9080, STRICT mTLS, JSON access log.
fn server_config() -> pb::ProxyConfig {
    pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            ports: vec![inbound_port(9080, pb::Protocol::Http, "reviews")],
            rate_limits: vec![],
            security: Some(pb::InboundSecurity {
                mtls: pb::MtlsMode::Strict as i32,
                ..Default::default()
            }),
        }),
        self_: Some(meta("reviews-v1", "reviews", "reviews")),
        telemetry: Some(pb::Telemetry {
            tracing: None,
            access_log: Some(pb::AccessLog {
                encoding: pb::AccessLogEncoding::Json as i32,
                provider: "envoy".to_owned(),
                mode: pb::TracingMode::ClientAndServer as i32,
                filter: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pool(policy: pb::connection_pool::H2UpgradePolicy, client_protocol: bool) -> pb::ConnectionPool {
    let mut p = pb::ConnectionPool {
        use_client_protocol: client_protocol,
        ..Default::default()
    };
    p.set_h2_upgrade_policy(policy);
    p
}

/// Sends one request through the client sidecar (HTTP/2 when `h2`) and returns
/// the HTTP version the server sidecar logged for it.
async fn version_between(client: &Proxy, server: &LoggedProxy, n: u32, h2: bool) -> String {
    let trace = format!("{n:032x}");
    let mut req = get("/reviews", "reviews:9080");
    req.headers_mut().insert(
        "traceparent",
        format!("00-{trace}-00000000000000a1-01").parse().unwrap(),
    );
    let got = if h2 {
        send_h2(client.outbound(), req).await
    } else {
        send(client.outbound(), req).await
    }
    .unwrap();
    assert_eq!(got.status, 200, "request {n}: {}", got.body);
    // STRICT: the request only got through over mutual TLS.
    assert!(got.body.contains("x-forwarded-client-cert"), "{}", got.body);
    let entry = server.log_entry(&trace).await;
    entry["protocol"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn upstream_protocol_between_sidecars_follows_h2_upgrade_policy() {
    use pb::connection_pool::H2UpgradePolicy::{Default as Unset, DoNotUpgrade, Upgrade};
    backend(addr(2, 9080), "reviews-app").await;
    let dirs = credential_dirs(
        NET,
        &[
            "spiffe://cluster.local/ns/default/sa/productpage",
            "spiffe://cluster.local/ns/default/sa/reviews",
        ],
    );
    let creds = |d: &PathBuf| d.to_string_lossy().into_owned();
    let (client_dir, server_dir) = (creds(&dirs[0]), creds(&dirs[1]));
    let client_ctl = Controller::start(addr(250, 15010)).await;
    let server_ctl = Controller::start(addr(251, 15010)).await;
    let client = Proxy::start_with(
        &format!("127.0.{NET}.1"),
        client_ctl.addr,
        "productpage-v1",
        &[],
        &["--credentials-dir", &client_dir],
    )
    .await;
    let server = LoggedProxy::start_with(
        &format!("127.0.{NET}.2"),
        server_ctl.addr,
        "reviews-v1",
        &["--credentials-dir", &server_dir],
    )
    .await;
    server_ctl.publish("1", server_config());
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);

    // No connectionPool at all: Istio's default, HTTP/1.1 for an HTTP port,
    // even when the caller speaks HTTP/2. Credentials load shortly after
    // start, so the first requests may still be refused by STRICT.
    client_ctl.publish("1", client_config(None));
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(got) = send(client.outbound(), get("/", "reviews:9080")).await
            && got.status == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "no request got through over mTLS");
    assert_eq!(
        version_between(&client, &server, 1, false).await,
        "HTTP/1.1"
    );
    assert_eq!(version_between(&client, &server, 2, true).await, "HTTP/1.1");

    client_ctl.publish("2", client_config(Some(pool(Upgrade, false))));
    assert_eq!(client_ctl.reply("2").await, Reply::Ack);
    assert_eq!(version_between(&client, &server, 3, false).await, "HTTP/2");

    client_ctl.publish("3", client_config(Some(pool(DoNotUpgrade, true))));
    assert_eq!(client_ctl.reply("3").await, Reply::Ack);
    assert_eq!(version_between(&client, &server, 4, true).await, "HTTP/2");
    assert_eq!(
        version_between(&client, &server, 5, false).await,
        "HTTP/1.1"
    );

    // A pool that sets other fields but no policy is still the default.
    client_ctl.publish("4", client_config(Some(pool(Unset, false))));
    assert_eq!(client_ctl.reply("4").await, Reply::Ack);
    assert_eq!(version_between(&client, &server, 6, true).await, "HTTP/1.1");
}

#[tokio::test]
async fn upstream_protocol_http1_between_sidecars_reuses_one_pooled_connection() {
    const NET2: u8 = 94;
    let at = |host: u8, port: u16| -> SocketAddr {
        format!("127.0.{NET2}.{host}:{port}").parse().unwrap()
    };
    backend(at(2, 9080), "reviews-app").await;
    let client_ctl = Controller::start(at(250, 15010)).await;
    let server_ctl = Controller::start(at(251, 15010)).await;
    let client = Proxy::start(
        &format!("127.0.{NET2}.1"),
        client_ctl.addr,
        "productpage-v1",
        &[],
    )
    .await;
    let server = Proxy::start(
        &format!("127.0.{NET2}.2"),
        server_ctl.addr,
        "reviews-v1",
        &[],
    )
    .await;
    let mut client_cfg = client_config(None);
    client_cfg.clusters[0].endpoints[0].address = "127.0.94.2".to_owned();
    let mut server_cfg = server_config();
    server_cfg.telemetry = None;
    server_cfg.inbound.as_mut().unwrap().security = None;
    client_ctl.publish("1", client_cfg);
    server_ctl.publish("1", server_cfg);
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);
    // One caller, one request at a time: each request finds the connection
    // the last one used back in the pool, even right after its response.
    for i in 0..200 {
        let got = send(client.outbound(), get(&format!("/r{i}"), "reviews:9080"))
            .await
            .unwrap();
        assert_eq!(got.status, 200, "request {i}: {}", got.body);
    }
    let accepted = server
        .metric(
            "sluice_connections_accepted_total",
            &[("listener", "inbound")],
        )
        .await;
    assert_eq!(
        accepted, 1.0,
        "sidecar-to-sidecar connections for 200 requests"
    );
}
