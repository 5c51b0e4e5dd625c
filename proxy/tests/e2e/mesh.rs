//! Two sidecars: client outbound → (PROXY v2 + h2c) → server inbound → app,
//! for HTTP/1 apps, gRPC-style trailers and TCP; metrics on both sides.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use sluice_api::config as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

const NET: u8 = 15;

fn server_addr(port: u16) -> SocketAddr {
    format!("127.0.{NET}.2:{port}").parse().unwrap()
}

fn sidecar_endpoint(port: u16) -> pb::Endpoint {
    pb::Endpoint {
        sidecar: true,
        ..endpoint(server_addr(port), "reviews-v1", "v1")
    }
}

fn client_config() -> pb::ProxyConfig {
    let mut grpc_vh = vhost(
        "greeter",
        9090,
        vec![forward(vec![], &[(&cname("greeter", 9090, ""), 1)])],
    );
    grpc_vh.protocol = pb::Protocol::Grpc as i32;
    let mut grpc_cluster = cluster("greeter", 9090, "", vec![sidecar_endpoint(9090)]);
    grpc_cluster.protocol = pb::Protocol::Grpc as i32;
    let mut tcp_cluster = cluster("mysql", 3306, "", vec![sidecar_endpoint(3306)]);
    tcp_cluster.protocol = pb::Protocol::Tcp as i32;
    let mut virtual_hosts = vec![
        vhost(
            "reviews",
            9080,
            vec![forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)])],
        ),
        grpc_vh,
    ];
    // Every route carries Istio's default retry policy, as the controller sends it,
    // so peer traffic goes through the replayable-body path.
    for route in virtual_hosts.iter_mut().flat_map(|v| v.routes.iter_mut()) {
        route.retries = Some(pb::RetryPolicy {
            attempts: 2,
            retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
                .to_owned(),
            retry_ignore_previous_hosts: true,
            is_default: true,
            ..Default::default()
        });
    }
    pb::ProxyConfig {
        virtual_hosts,
        clusters: vec![
            cluster("reviews", 9080, "v1", vec![sidecar_endpoint(9080)]),
            grpc_cluster,
            tcp_cluster,
        ],
        tcp_services: vec![pb::TcpService {
            name: "mysql.default.svc.cluster.local:3306".to_owned(),
            port: 3306,
            routes: vec![pb::TcpRoute {
                forward: Some(pb::WeightedClusters {
                    clusters: vec![pb::WeightedCluster {
                        cluster: cname("mysql", 3306, ""),
                        weight: 1,
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }],
            service: "mysql.default.svc.cluster.local".to_owned(),
            domains: vec![
                "mysql".to_owned(),
                "mysql.default.svc.cluster.local".to_owned(),
            ],
            ..Default::default()
        }],
        self_: Some(pb::WorkloadMeta {
            workload: "productpage-v1".to_owned(),
            namespace: "default".to_owned(),
            app: "productpage".to_owned(),
            version: "v1".to_owned(),
            principal: "spiffe://cluster.local/ns/default/sa/productpage".to_owned(),
            cluster: "Kubernetes".to_owned(),
        }),
        ..Default::default()
    }
}

fn inbound_port(port: u32, protocol: pb::Protocol, service: &str) -> pb::InboundPort {
    pb::InboundPort {
        target_port: port,
        service_port: port,
        protocol: protocol as i32,
        service: format!("{service}.default.svc.cluster.local"),
        service_name: service.to_owned(),
        service_namespace: "default".to_owned(),
        app_port: 0,
    }
}

fn server_config() -> pb::ProxyConfig {
    pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            ports: vec![
                inbound_port(9080, pb::Protocol::Http, "reviews"),
                inbound_port(9090, pb::Protocol::Grpc, "greeter"),
                inbound_port(3306, pb::Protocol::Tcp, "mysql"),
            ],
            rate_limits: vec![],
            security: None,
        }),
        self_: Some(pb::WorkloadMeta {
            workload: "reviews-v1".to_owned(),
            namespace: "default".to_owned(),
            app: "reviews".to_owned(),
            version: "v1".to_owned(),
            principal: "spiffe://cluster.local/ns/default/sa/reviews".to_owned(),
            cluster: "Kubernetes".to_owned(),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn mesh_two_sidecars_carry_http1_grpc_trailers_and_tcp() {
    backend(server_addr(9080), "reviews-app").await;
    backend(server_addr(9090), "greeter-app").await;
    tcp_echo(server_addr(3306), "mysql-app").await;
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

    // HTTP/1 app behind the peer sidecar.
    for _ in 0..3 {
        let got = send(client.outbound(), get("/reviews/1", "reviews:9080"))
            .await
            .unwrap();
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.header("x-backend"), "reviews-app");
        assert_eq!(got.header("x-seen-version"), "HTTP/1.1");
        assert_eq!(got.header("x-seen-host"), "reviews:9080");
        assert!(
            !got.body.contains("x-sluice-source"),
            "identity headers must be stripped: {}",
            got.body
        );
        // Without certificates the caller is not authenticated: no XFCC.
        assert!(
            !got.body.contains("x-forwarded-client-cert"),
            "{}",
            got.body
        );
    }

    // A caller without a sidecar reaches the inbound directly: port from Host, source unknown.
    let mut forged = get("/direct", "reviews:9080");
    forged.headers_mut().insert(
        "x-forwarded-client-cert",
        "URI=spiffe://evil".parse().unwrap(),
    );
    let direct = send(server.inbound(), forged).await.unwrap();
    assert_eq!(direct.status, 200);
    assert_eq!(direct.header("x-backend"), "reviews-app");
    assert!(!direct.body.contains("evil"), "{}", direct.body);

    // gRPC-style call: h2 from the client, trailers all the way back.
    let grpc = http::Request::builder()
        .method("POST")
        .uri("http://greeter:9090/grpc.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))
        .unwrap();
    let got = send_h2(client.outbound(), grpc).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-backend"), "greeter-app");
    assert_eq!(got.header("x-seen-version"), "HTTP/2.0");
    let trailers = got.trailers.expect("grpc trailers");
    assert_eq!(trailers.get("grpc-status").unwrap(), "0");
    assert_eq!(trailers.get("grpc-message").unwrap(), "fine");

    // TCP through CONNECT, then through the peer's inbound TCP relay.
    let mut s = TcpStream::connect(client.outbound()).await.unwrap();
    s.write_all(b"CONNECT mysql:3306 HTTP/1.1\r\nHost: mysql:3306\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let mut seen = String::new();
    while !seen.contains("mysql-app\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "tunnel closed early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen:?}");
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
    drop(s);

    // Metrics with Istio's labels on both sides.
    let source = [
        ("reporter", "source"),
        ("source_workload", "productpage-v1"),
        ("destination_workload", "reviews-v1"),
        ("destination_version", "v1"),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("response_code", "200"),
        ("request_protocol", "http"),
        // Only gRPC requests have a gRPC status (Istio writes it empty).
        ("grpc_response_status", ""),
        // No mutual TLS between these sidecars: no principals.
        ("source_principal", "unknown"),
        ("destination_principal", "unknown"),
    ];
    client
        .metric_reaches("istio_requests_total", &source, 3.0)
        .await;
    let destination = [
        ("reporter", "destination"),
        ("source_workload", "productpage-v1"),
        // Plaintext: the principal header of the peer is not trusted, and
        // without a certificate this side has none either.
        ("source_principal", "unknown"),
        ("destination_principal", "unknown"),
        ("connection_security_policy", "none"),
        ("source_app", "productpage"),
        ("destination_workload", "reviews-v1"),
        ("destination_service_name", "reviews"),
        ("response_code", "200"),
    ];
    server
        .metric_reaches("istio_requests_total", &destination, 3.0)
        .await;
    let unknown = [
        ("reporter", "destination"),
        ("source_workload", "unknown"),
        ("response_code", "200"),
    ];
    server
        .metric_reaches("istio_requests_total", &unknown, 1.0)
        .await;
    let grpc_labels = [
        ("reporter", "destination"),
        ("request_protocol", "grpc"),
        ("grpc_response_status", "0"),
    ];
    server
        .metric_reaches("istio_requests_total", &grpc_labels, 1.0)
        .await;
    server
        .metric_reaches(
            "istio_request_duration_milliseconds_count",
            &destination,
            3.0,
        )
        .await;
    client
        .metric_reaches(
            "istio_tcp_connections_closed_total",
            &[("destination_service_name", "mysql")],
            1.0,
        )
        .await;
    server
        .metric_reaches(
            "istio_tcp_received_bytes_total",
            &[("reporter", "destination")],
            4.0,
        )
        .await;
}

#[tokio::test]
async fn mesh_concurrent_requests_share_pooled_connections_without_errors() {
    const NET2: u8 = 22;
    let app: SocketAddr = format!("127.0.{NET2}.2:9080").parse().unwrap();
    backend(app, "reviews-app").await;
    let client_ctl = Controller::start(format!("127.0.{NET2}.250:15010").parse().unwrap()).await;
    let server_ctl = Controller::start(format!("127.0.{NET2}.251:15010").parse().unwrap()).await;
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
    let ep = pb::Endpoint {
        sidecar: true,
        ..endpoint(app, "reviews-v1", "v1")
    };
    client_ctl.publish(
        "1",
        pb::ProxyConfig {
            virtual_hosts: vec![vhost(
                "reviews",
                9080,
                vec![forward(vec![], &[(&cname("reviews", 9080, ""), 1)])],
            )],
            clusters: vec![cluster("reviews", 9080, "", vec![ep])],
            ..Default::default()
        },
    );
    server_ctl.publish("1", server_config());
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);
    let out = client.outbound();
    let workers: Vec<_> = (0..32)
        .map(|w| {
            tokio::spawn(async move {
                for i in 0..20 {
                    let got = send(out, get(&format!("/w{w}/r{i}"), "reviews:9080"))
                        .await
                        .unwrap();
                    assert_eq!(got.status, 200, "{}", got.body);
                    assert_eq!(got.header("x-seen-path"), format!("/w{w}/r{i}"));
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    server
        .metric_reaches(
            "istio_requests_total",
            &[("reporter", "destination"), ("response_code", "200")],
            640.0,
        )
        .await;
    // HTTP/1.1 between the sidecars (an HTTP port, no upgrade): keep-alive
    // connections are pooled, so there are never more than the 32 requests in
    // flight at once, far fewer than the 640 requests.
    let accepted = server
        .metric(
            "sluice_connections_accepted_total",
            &[("listener", "inbound")],
        )
        .await;
    assert!(
        accepted <= 32.0,
        "inbound accepted {accepted} connections for 640 requests from 32 callers"
    );
}

/// A Sidecar ingress listener's `defaultEndpoint`: requests arriving for
/// port 9080 reach the app at 8080, while a port without one stays as it is.
#[tokio::test]
async fn inbound_port_passes_to_its_app_port() {
    let ip = format!("127.0.{NET}.3");
    let app = |port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
    backend(app(8080), "moved-app").await;
    backend(app(9090), "same-port-app").await;
    let ctl = Controller::start(format!("127.0.{NET}.252:15010").parse().unwrap()).await;
    let server = Proxy::start(&ip, ctl.addr, "reviews-v1", &[]).await;
    let mut config = server_config();
    if let Some(inbound) = config.inbound.as_mut() {
        inbound.ports = vec![
            pb::InboundPort {
                app_port: 8080,
                ..inbound_port(9080, pb::Protocol::Http, "reviews")
            },
            inbound_port(9090, pb::Protocol::Http, "ratings"),
        ];
    }
    ctl.publish("1", config);
    assert_eq!(ctl.reply("1").await, Reply::Ack);

    let got = send(server.inbound(), get("/r", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("x-backend"), "moved-app");
    let got = send(server.inbound(), get("/r", "ratings:9090"))
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("x-backend"), "same-port-app");

    // An app port the proxy cannot use is refused, and the last good config stays.
    let mut bad = server_config();
    if let Some(inbound) = bad.inbound.as_mut() {
        inbound.ports = vec![pb::InboundPort {
            app_port: 70000,
            ..inbound_port(9080, pb::Protocol::Http, "reviews")
        }];
    }
    ctl.publish("2", bad);
    assert!(matches!(ctl.reply("2").await, Reply::Nack(_)));
    let got = send(server.inbound(), get("/r", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.header("x-backend"), "moved-app");
}
