//! Mutual TLS between two real sidecars with mounted credentials (made here
//! with rcgen): peer identity in XFCC and metrics, PeerAuthentication modes,
//! DestinationRule TLS modes, AuthorizationPolicy denial and NACKs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use sluice_api::config as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/reviews";

/// Writes `cert-chain.pem`, `key.pem` and `root-cert.pem` for each identity,
/// all signed by one fresh CA; returns the folders in order.
pub fn credential_dirs(net: u8, ids: &[&str]) -> Vec<PathBuf> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test root");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let root_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::from_params(&ca, &ca_key);
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.subject_alt_names = vec![SanType::URI((*id).try_into().unwrap())];
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            let dir = std::env::temp_dir()
                .join(format!("sluice-e2e-creds-{}-{net}-{i}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("cert-chain.pem"), cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
            std::fs::write(dir.join("root-cert.pem"), &root_pem).unwrap();
            dir
        })
        .collect()
}

fn addr(net: u8, host: u8, port: u16) -> SocketAddr {
    format!("127.0.{net}.{host}:{port}").parse().unwrap()
}

pub fn meta(workload: &str, app: &str, sa: &str) -> pb::WorkloadMeta {
    pb::WorkloadMeta {
        workload: workload.to_owned(),
        namespace: "default".to_owned(),
        app: app.to_owned(),
        version: "v1".to_owned(),
        principal: format!("spiffe://cluster.local/ns/default/sa/{sa}"),
        cluster: "Kubernetes".to_owned(),
    }
}

/// The client sidecar: `reviews:9080` over HTTP and `mysql:3306` over TCP,
/// both to the server's sidecar, with `tls` on the reviews cluster.
fn client_config(net: u8, tls: Option<pb::UpstreamTls>) -> pb::ProxyConfig {
    let sidecar = |port| pb::Endpoint {
        sidecar: true,
        ..endpoint(addr(net, 2, port), "reviews-v1", "v1")
    };
    let mut reviews = cluster("reviews", 9080, "", vec![sidecar(9080)]);
    reviews.tls = tls;
    let mut mysql = cluster("mysql", 3306, "", vec![sidecar(3306)]);
    mysql.protocol = pb::Protocol::Tcp as i32;
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![forward(vec![], &[(&cname("reviews", 9080, ""), 1)])],
        )],
        clusters: vec![reviews, mysql],
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
            domains: vec!["mysql".to_owned()],
            ..Default::default()
        }],
        self_: Some(meta("productpage-v1", "productpage", "productpage")),
        ..Default::default()
    }
}

pub fn inbound_port(port: u32, protocol: pb::Protocol, service: &str) -> pb::InboundPort {
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

/// The server sidecar: reviews on 9080 (HTTP), mysql on 3306 (TCP).
fn server_config(mode: pb::MtlsMode, policies: Vec<pb::AuthorizationPolicy>) -> pb::ProxyConfig {
    pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            ports: vec![
                inbound_port(9080, pb::Protocol::Http, "reviews"),
                inbound_port(3306, pb::Protocol::Tcp, "mysql"),
            ],
            rate_limits: vec![],
            security: Some(pb::InboundSecurity {
                mtls: mode as i32,
                policies,
                ..Default::default()
            }),
        }),
        self_: Some(meta("reviews-v1", "reviews", "reviews")),
        ..Default::default()
    }
}

struct Mesh {
    client_ctl: Controller,
    server_ctl: Controller,
    client: Proxy,
    server: Proxy,
}

/// Two sidecars with credentials, their apps, and the given configs (version "1").
async fn mesh(net: u8, client_cfg: pb::ProxyConfig, server_cfg: pb::ProxyConfig) -> Mesh {
    backend(addr(net, 2, 9080), "reviews-app").await;
    tcp_echo(addr(net, 2, 3306), "mysql-app").await;
    let dirs = credential_dirs(net, &[CLIENT_ID, SERVER_ID]);
    let client_ctl = Controller::start(addr(net, 250, 15010)).await;
    let server_ctl = Controller::start(addr(net, 251, 15010)).await;
    let start = |ip: String, ctl: SocketAddr, workload: &'static str, dir: &PathBuf| {
        let dir = dir.to_string_lossy().into_owned();
        async move {
            let args = ["--credentials-dir", dir.as_str()];
            Proxy::start_with(&ip, ctl, workload, &[], &args).await
        }
    };
    let client = start(
        format!("127.0.{net}.1"),
        client_ctl.addr,
        "productpage",
        &dirs[0],
    )
    .await;
    let server = start(
        format!("127.0.{net}.2"),
        server_ctl.addr,
        "reviews",
        &dirs[1],
    )
    .await;
    client_ctl.publish("1", client_cfg);
    server_ctl.publish("1", server_cfg);
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);
    Mesh {
        client_ctl,
        server_ctl,
        client,
        server,
    }
}

/// Sends `path` through the client sidecar until the answer came over mTLS
/// (credentials are read from disk shortly after start).
async fn first_mtls_request(m: &Mesh, path: &str) -> Got {
    for _ in 0..100 {
        if let Ok(got) = send(m.client.outbound(), get(path, "reviews:9080")).await
            && got.body.contains("x-forwarded-client-cert")
        {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no request reached the server over mTLS");
}

/// Opens `mysql:3306` through the client sidecar and checks the echo.
async fn tcp_roundtrip(m: &Mesh) {
    let mut s = TcpStream::connect(m.client.outbound()).await.unwrap();
    s.write_all(b"CONNECT mysql:3306 HTTP/1.1\r\nHost: mysql:3306\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("mysql-app\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "tunnel closed early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
}

#[tokio::test]
async fn security_mtls_between_sidecars_carries_caller_identity_and_strict_refuses_plaintext() {
    let net = 80;
    let m = mesh(
        net,
        client_config(net, None),
        server_config(pb::MtlsMode::Strict, vec![]),
    )
    .await;
    let mut req = get("/reviews/1", "reviews:9080");
    // The app cannot claim an identity or workload: the headers are replaced
    // or dropped.
    req.headers_mut().insert(
        "x-sluice-source-principal",
        "spiffe://cluster.local/ns/default/sa/admin"
            .parse()
            .unwrap(),
    );
    req.headers_mut().insert(
        "x-sluice-source-meta",
        "admin-v1,kube-system,admin,v1".parse().unwrap(),
    );
    let got = first_mtls_request(&m, "/reviews/1").await;
    assert_eq!(got.status, 200);
    let xfcc = got
        .body
        .lines()
        .find_map(|l| l.strip_prefix("x-forwarded-client-cert: "))
        .unwrap();
    let prefix = format!("By={SERVER_ID};Hash=");
    let suffix = format!(";Subject=\"\";URI={CLIENT_ID}");
    assert!(
        xfcc.starts_with(&prefix) && xfcc.ends_with(&suffix),
        "{xfcc}"
    );
    let hash = &xfcc[prefix.len()..xfcc.len() - suffix.len()];
    assert_eq!(hash.len(), 64, "{xfcc}");
    let forged = send(m.client.outbound(), req).await.unwrap();
    assert!(!forged.body.contains("sa/admin"), "{}", forged.body);
    assert!(!forged.body.contains("admin-v1"), "{}", forged.body);
    assert!(!forged.body.contains("x-sluice-source"), "{}", forged.body);

    let destination = [
        ("reporter", "destination"),
        ("connection_security_policy", "mutual_tls"),
        ("source_principal", CLIENT_ID),
        ("destination_principal", SERVER_ID),
        ("source_workload", "productpage-v1"),
        ("response_code", "200"),
    ];
    m.server
        .metric_reaches("istio_requests_total", &destination, 2.0)
        .await;

    // Opaque TCP goes over mTLS too (ALPN sluice-tcp).
    tcp_roundtrip(&m).await;
    let tcp = [
        ("reporter", "destination"),
        ("connection_security_policy", "mutual_tls"),
        ("source_principal", CLIENT_ID),
    ];
    m.server
        .metric_reaches("istio_tcp_connections_opened_total", &tcp, 1.0)
        .await;

    // A plaintext caller straight to the inbound is refused under STRICT.
    let direct = send(m.server.inbound(), get("/reviews/1", "reviews:9080")).await;
    assert!(direct.is_err(), "{direct:?}");
    let refused = [("direction", "inbound"), ("outcome", "plaintext_refused")];
    m.server
        .metric_reaches("sluice_tls_handshakes_total", &refused, 1.0)
        .await;
    assert!(
        m.client
            .metric(
                "sluice_tls_handshakes_total",
                &[("direction", "outbound"), ("outcome", "success")]
            )
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn security_permissive_accepts_plaintext_and_mtls_and_allow_policy_uses_cert_identity() {
    let net = 81;
    // Only the productpage identity may call: plaintext callers have none.
    let allow = pb::AuthorizationPolicy {
        name: "default/only-productpage".to_owned(),
        action: pb::authorization_policy::Action::Allow as i32,
        dry_run: false,
        rules: vec![pb::AuthorizationRule {
            from: vec![pb::PeerMatch {
                principals: vec!["cluster.local/ns/default/sa/productpage".to_owned()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let m = mesh(
        net,
        client_config(net, None),
        server_config(pb::MtlsMode::Permissive, vec![]),
    )
    .await;
    let got = first_mtls_request(&m, "/p").await;
    assert_eq!(got.status, 200);
    let plain = send(m.server.inbound(), get("/direct", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(plain.status, 200);
    assert!(!plain.body.contains("x-forwarded-client-cert"));
    let none = [
        ("reporter", "destination"),
        ("connection_security_policy", "none"),
        ("source_principal", "unknown"),
    ];
    m.server
        .metric_reaches("istio_requests_total", &none, 1.0)
        .await;

    // A sidecar of an older version sends its metadata one header per field;
    // the labels come from them, and the app sees none of them.
    let mut older = get("/older", "reviews:9080");
    for (name, value) in [
        ("x-sluice-source-workload", "ratings-v1"),
        ("x-sluice-source-namespace", "default"),
        ("x-sluice-source-app", "ratings"),
        ("x-sluice-source-version", "v1"),
    ] {
        older.headers_mut().insert(name, value.parse().unwrap());
    }
    let got = send(m.server.inbound(), older).await.unwrap();
    assert_eq!(got.status, 200);
    assert!(!got.body.contains("x-sluice-source"), "{}", got.body);
    let labels = [
        ("reporter", "destination"),
        ("source_workload", "ratings-v1"),
        ("source_app", "ratings"),
        ("source_version", "v1"),
    ];
    m.server
        .metric_reaches("istio_requests_total", &labels, 1.0)
        .await;

    m.server_ctl
        .publish("2", server_config(pb::MtlsMode::Permissive, vec![allow]));
    assert_eq!(m.server_ctl.reply("2").await, Reply::Ack);
    let via_mesh = send(m.client.outbound(), get("/p", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(via_mesh.status, 200, "{}", via_mesh.body);
    let mut forged = get("/direct", "reviews:9080");
    forged
        .headers_mut()
        .insert("x-sluice-source-principal", CLIENT_ID.parse().unwrap());
    let plain = send(m.server.inbound(), forged).await.unwrap();
    assert_eq!(plain.status, 403, "{}", plain.body);
    assert_eq!(plain.body, "RBAC: access denied");
}

#[tokio::test]
async fn security_destination_rule_disable_to_strict_server_fails_with_503() {
    let net = 82;
    let m = mesh(
        net,
        client_config(net, None),
        server_config(pb::MtlsMode::Strict, vec![]),
    )
    .await;
    first_mtls_request(&m, "/before").await;
    let disable = pb::UpstreamTls {
        mode: pb::upstream_tls::Mode::Disable as i32,
        ..Default::default()
    };
    m.client_ctl.publish("2", client_config(net, Some(disable)));
    assert_eq!(m.client_ctl.reply("2").await, Reply::Ack);
    // The pooled mTLS connection is not reused for the plaintext mode.
    let got = send(m.client.outbound(), get("/after", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 503, "{}", got.body);
}

#[tokio::test]
async fn security_istio_mutual_refuses_server_outside_subject_alt_names() {
    let net = 83;
    let tls = |sans: &[&str]| pb::UpstreamTls {
        mode: pb::upstream_tls::Mode::IstioMutual as i32,
        subject_alt_names: sans.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    let right = tls(&["cluster.local/ns/default/sa/reviews"]);
    let m = mesh(
        net,
        client_config(net, Some(right)),
        server_config(pb::MtlsMode::Strict, vec![]),
    )
    .await;
    first_mtls_request(&m, "/ok").await;
    let wrong = tls(&["cluster.local/ns/default/sa/ratings"]);
    m.client_ctl.publish("2", client_config(net, Some(wrong)));
    assert_eq!(m.client_ctl.reply("2").await, Reply::Ack);
    let got = send(m.client.outbound(), get("/wrong", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 503, "{}", got.body);
    let failed = [("direction", "outbound"), ("outcome", "failure")];
    assert!(
        m.client
            .metric("sluice_tls_handshakes_total", &failed)
            .await
            >= 1.0
    );
    let flagged = [
        ("reporter", "source"),
        ("response_code", "503"),
        ("response_flags", "UF"),
    ];
    m.client
        .metric_reaches("istio_requests_total", &flagged, 1.0)
        .await;
}

#[tokio::test]
async fn security_deny_policy_answers_403_and_bad_policy_is_nacked() {
    let net = 84;
    let deny = pb::AuthorizationPolicy {
        name: "default/no-admin".to_owned(),
        action: pb::authorization_policy::Action::Deny as i32,
        dry_run: false,
        rules: vec![pb::AuthorizationRule {
            to: vec![pb::OperationMatch {
                paths: vec!["/admin*".to_owned()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let no_mysql = pb::AuthorizationPolicy {
        name: "default/no-mysql".to_owned(),
        action: pb::authorization_policy::Action::Deny as i32,
        dry_run: false,
        rules: vec![pb::AuthorizationRule {
            to: vec![pb::OperationMatch {
                ports: vec![3306],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let m = mesh(
        net,
        client_config(net, None),
        server_config(pb::MtlsMode::Strict, vec![deny.clone(), no_mysql]),
    )
    .await;
    first_mtls_request(&m, "/reviews").await;

    // A denied TCP port: the connection closes before any byte of the app.
    let mut s = TcpStream::connect(m.client.outbound()).await.unwrap();
    s.write_all(b"CONNECT mysql:3306 HTTP/1.1\r\nHost: mysql:3306\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut seen))
        .await
        .expect("denied tunnel closes")
        .ok();
    let seen = String::from_utf8_lossy(&seen);
    assert!(!seen.contains("mysql-app"), "{seen}");
    // (Istio ignores the HTTP-only fields of DENY rules on TCP, so either policy may decide.)
    let deny_count = [("decision", "deny")];
    m.server
        .metric_reaches("sluice_authorization_decisions_total", &deny_count, 1.0)
        .await;

    let denied = send(m.client.outbound(), get("/admin/users?x=1", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert_eq!(denied.body, "RBAC: access denied");
    assert_eq!(denied.header("content-type"), "text/plain");
    let labels = [("reporter", "destination"), ("response_code", "403")];
    m.server
        .metric_reaches("istio_requests_total", &labels, 1.0)
        .await;
    m.server
        .metric_reaches("sluice_authorization_decisions_total", &deny_count, 2.0)
        .await;
    let decision = [("policy", "default/no-admin"), ("decision", "deny")];
    assert!(
        m.server
            .metric("sluice_authorization_decisions_total", &decision)
            .await
            >= 1.0
    );

    // A policy the proxy cannot evaluate is refused; the last good config keeps serving.
    let bad = pb::AuthorizationPolicy {
        name: "default/bad".to_owned(),
        action: pb::authorization_policy::Action::Allow as i32,
        dry_run: false,
        rules: vec![pb::AuthorizationRule {
            from: vec![pb::PeerMatch {
                ip_blocks: vec!["not-an-ip".to_owned()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    m.server_ctl
        .publish("2", server_config(pb::MtlsMode::Strict, vec![deny, bad]));
    match m.server_ctl.reply("2").await {
        Reply::Nack(msg) => assert!(msg.contains("default/bad"), "{msg}"),
        Reply::Ack => panic!("a policy with ip_blocks [\"not-an-ip\"] was accepted"),
    }
    let still = send(m.client.outbound(), get("/reviews", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(still.status, 200);
    let still_denied = send(m.client.outbound(), get("/admin", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(still_denied.status, 403);
}

/// A PROXY protocol v2 header (TCP over IPv4) announcing `src` → `dst`.
pub fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&s.ip().octets());
    h.extend_from_slice(&d.ip().octets());
    h.extend_from_slice(&s.port().to_be_bytes());
    h.extend_from_slice(&d.port().to_be_bytes());
    h
}

#[tokio::test]
async fn security_open_plaintext_tcp_connection_is_closed_when_port_turns_strict() {
    let net = 85;
    let m = mesh(
        net,
        client_config(net, None),
        server_config(pb::MtlsMode::Permissive, vec![]),
    )
    .await;
    // A plaintext caller without a sidecar, straight to the inbound's TCP port.
    let mut s = TcpStream::connect(m.server.inbound()).await.unwrap();
    s.write_all(&proxy_v2(addr(net, 9, 40000), addr(net, 2, 3306)))
        .await
        .unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    while !seen.contains("mysql-app\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping");

    m.server_ctl
        .publish("2", server_config(pb::MtlsMode::Strict, vec![]));
    assert_eq!(m.server_ctl.reply("2").await, Reply::Ack);
    // The open connection is cut; nothing more is relayed.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = s.write_all(b"pong").await;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "plaintext TCP connection still open under STRICT"
    );
    m.server
        .metric_reaches(
            "sluice_tls_handshakes_total",
            &[("direction", "inbound"), ("outcome", "plaintext_refused")],
            1.0,
        )
        .await;
}

/// The client sidecar of [`client_config`] with a 300 ms route timeout on
/// `/delay/1500`, the endpoint named with the server's real identity (as the
/// controller names it), and HTTP/2 between the sidecars when `h2`.
fn timeout_config(net: u8, h2: bool) -> pb::ProxyConfig {
    let mut cfg = client_config(net, None);
    let reviews = cname("reviews", 9080, "");
    let mut slow = forward(
        vec![pb::RouteMatch {
            uri: Some(prefix("/delay/1500")),
            ..Default::default()
        }],
        &[(&reviews, 1)],
    );
    slow.timeout_ms = 300;
    cfg.virtual_hosts[0].routes.insert(0, slow);
    let cluster = &mut cfg.clusters[0];
    for ep in &mut cluster.endpoints {
        if let Some(w) = ep.workload.as_mut() {
            w.principal = SERVER_ID.to_owned();
        }
    }
    if h2 {
        let mut pool = pb::ConnectionPool::default();
        pool.set_h2_upgrade_policy(pb::connection_pool::H2UpgradePolicy::Upgrade);
        cluster.connection_pool = Some(pool);
    }
    cfg
}

#[tokio::test]
async fn security_unanswered_requests_name_the_endpoint_and_count_on_the_server_as_dc_or_dr() {
    let net = 86;
    let m = mesh(
        net,
        timeout_config(net, false),
        server_config(pb::MtlsMode::Permissive, vec![]),
    )
    .await;
    first_mtls_request(&m, "/warm").await;
    let late = send(m.client.outbound(), get("/delay/1500", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(late.status, 504);
    // No answer came back: the client names the endpoint it picked (its
    // metadata has no app or version labels, as Istio's), and the principals
    // of its mTLS connection.
    let source = [
        ("reporter", "source"),
        ("response_code", "504"),
        ("response_flags", "UT"),
        ("destination_workload", "reviews-v1"),
        ("destination_workload_namespace", "default"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v1"),
        ("destination_cluster", "Kubernetes"),
        ("destination_version", "unknown"),
        ("destination_principal", SERVER_ID),
        ("source_principal", CLIENT_ID),
        ("grpc_response_status", ""),
    ];
    m.client
        .metric_reaches("istio_requests_total", &source, 1.0)
        .await;
    // The server counts the request its caller left: HTTP/1.1 between the
    // sidecars, so the caller closed the connection (DC), code 0.
    let destination = [
        ("reporter", "destination"),
        ("response_code", "0"),
        ("response_flags", "DC"),
        ("source_principal", CLIENT_ID),
        ("destination_principal", SERVER_ID),
        ("connection_security_policy", "mutual_tls"),
    ];
    m.server
        .metric_reaches("istio_requests_total", &destination, 1.0)
        .await;
    m.server
        .metric_reaches(
            "istio_request_duration_milliseconds_count",
            &destination,
            1.0,
        )
        .await;
    // Once, however late the app answers.
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let all = [("reporter", "destination")];
    let before = m.server.metric("istio_requests_total", &all).await;
    assert_eq!(
        m.server.metric("istio_requests_total", &destination).await,
        1.0
    );
    assert_eq!(
        m.server
            .metric("istio_requests_total", &[("response_code", "200")])
            .await
            + 1.0,
        before
    );

    // Over HTTP/2 the client resets the stream instead (DR).
    m.client_ctl.publish("2", timeout_config(net, true));
    assert_eq!(m.client_ctl.reply("2").await, Reply::Ack);
    let start = std::time::Instant::now();
    let late = send(m.client.outbound(), get("/delay/1500", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(late.status, 504, "{:?} {}", start.elapsed(), late.body);
    let reset = [
        ("reporter", "destination"),
        ("response_code", "0"),
        ("response_flags", "DR"),
    ];
    m.server
        .metric_reaches("istio_requests_total", &reset, 1.0)
        .await;

    // The app itself leaves mid-request (no route timeout on this path): the
    // client side counts it too, naming the endpoint the request was at.
    let mut app = TcpStream::connect(m.client.outbound()).await.unwrap();
    app.write_all(b"GET /delay/1400 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(app);
    let gone = [
        ("reporter", "source"),
        ("response_code", "0"),
        ("response_flags", "DC"),
        ("destination_workload", "reviews-v1"),
        ("destination_principal", SERVER_ID),
    ];
    m.client
        .metric_reaches("istio_requests_total", &gone, 1.0)
        .await;
    m.server
        .metric_reaches("istio_requests_total", &reset, 2.0)
        .await;
}
