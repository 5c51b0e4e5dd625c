//! The real controller binary in `--config-dir` mode, driven over real
//! sockets by a gRPC client playing a proxy.

use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{
    Ack, Nack, Node, ProxyConfig, ProxyMessage, Snapshot, VirtualHost, proxy_message,
};
use sluice_control_plane::server::delta;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Controller, VS_V1, WORKLOADS};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[path = "support.rs"]
mod support;

async fn start(dir: &Path) -> Controller {
    Controller::start_config_dir(dir).await
}

struct FakeProxy {
    tx: mpsc::Sender<ProxyMessage>,
    snapshots: tonic::Streaming<Snapshot>,
    /// The last config resolved (version, complete config): the base of deltas.
    applied: Option<(String, ProxyConfig)>,
}

impl FakeProxy {
    async fn connect(c: &Controller, id: &str) -> Self {
        let mut client = ConfigDiscoveryClient::connect(format!("http://{}", c.grpc))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(8);
        tx.send(ProxyMessage {
            kind: Some(proxy_message::Kind::Hello(Node {
                id: id.into(),
                workload: "productpage-v1".into(),
                namespace: "default".into(),
                service_account: "productpage".into(),
                ips: vec!["127.0.9.9".into()],
                ..Default::default()
            })),
        })
        .await
        .expect("hello");
        let snapshots = client
            .stream(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        Self {
            tx,
            snapshots,
            applied: None,
        }
    }

    /// The complete config `s` stands for, applying a delta to the last one.
    fn resolve(&mut self, s: &Snapshot) -> ProxyConfig {
        let config = match (&s.config, &s.delta) {
            (Some(c), None) => c.clone(),
            (None, Some(d)) => {
                let (version, base) = self.applied.as_ref().expect("a base for the delta");
                assert_eq!(&d.base_version, version, "delta against the last ACKed");
                delta::apply(base, d).expect("delta applies")
            }
            other => panic!(
                "snapshot {} must carry a config or a delta: {other:?}",
                s.version
            ),
        };
        self.applied = Some((s.version.clone(), config.clone()));
        config
    }

    async fn next(&mut self) -> Snapshot {
        tokio::time::timeout(Duration::from_secs(10), self.snapshots.message())
            .await
            .expect("snapshot in time")
            .expect("stream ok")
            .expect("a snapshot")
    }

    async fn ack(&self, version: &str) {
        self.tx
            .send(ProxyMessage {
                kind: Some(proxy_message::Kind::Ack(Ack {
                    version: version.into(),
                })),
            })
            .await
            .expect("ack");
    }

    async fn nack(&self, version: &str, error: &str) {
        self.tx
            .send(ProxyMessage {
                kind: Some(proxy_message::Kind::Nack(Nack {
                    version: version.into(),
                    error: error.into(),
                })),
            })
            .await
            .expect("nack");
    }
}

fn first_route_cluster(config: &ProxyConfig) -> String {
    let vh = config
        .virtual_hosts
        .iter()
        .find(|v| v.service == "reviews.default.svc.cluster.local")
        .expect("reviews vhost");
    match &vh.routes[0].action {
        Some(sluice_api::config::route::Action::Forward(w)) => w.clusters[0].cluster.clone(),
        other => panic!("unexpected action {other:?}"),
    }
}

async fn get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

async fn wait_for<F: Fn(&str) -> bool>(addr: SocketAddr, path: &str, ok: F) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        last = get(addr, path).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never satisfied the condition; last answer:\n{last}");
}

#[tokio::test]
async fn controller_pushes_snapshots_and_tracks_acks() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("00-workloads.yaml"), WORKLOADS).expect("write");
    let c = start(dir.path()).await;
    let mut proxy = FakeProxy::connect(&c, "productpage-v1-0.default").await;

    let first = proxy.next().await;
    assert_eq!(first.version, "1");
    assert!(first.delta.is_none(), "the first snapshot is complete");
    let config = proxy.resolve(&first);
    assert_eq!(
        first_route_cluster(&config),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    proxy.ack(&first.version).await;
    wait_for(c.admin, "/debug/syncz", |b| {
        b.contains("\"versionAcked\": \"1\"")
    })
    .await;

    // A new file is picked up and, after the ACK, sent as a delta: only the
    // reviews virtual host and the clusters it now uses.
    std::fs::write(dir.path().join("10-vs.yaml"), VS_V1).expect("write");
    let second = proxy.next().await;
    assert_eq!(second.version, "2");
    assert!(second.config.is_none(), "{second:?}");
    let d = second.delta.as_ref().expect("a delta");
    assert_eq!(d.base_version, "1");
    let names = |v: &[VirtualHost]| v.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&d.virtual_hosts),
        ["reviews.default.svc.cluster.local:9080"]
    );
    assert!(d.inbound.is_none() && d.self_.is_none(), "{d:?}");
    // Only referenced clusters exist: the subset's replaces the default one.
    let cluster_names: Vec<_> = d.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        cluster_names,
        ["outbound|9080|v1|reviews.default.svc.cluster.local"]
    );
    assert_eq!(
        d.removed_clusters,
        ["outbound|9080||reviews.default.svc.cluster.local"]
    );
    let config = proxy.resolve(&second);
    assert_eq!(
        first_route_cluster(&config),
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    proxy.ack(&second.version).await;
    let metrics = wait_for(c.admin, "/metrics", |b| {
        b.contains("sluice_proxy_convergence_seconds_count 1")
    })
    .await;
    assert!(metrics.contains("sluice_connected_proxies 1"), "{metrics}");

    // A NACK is recorded with its reason and answered with a complete config.
    std::fs::remove_file(dir.path().join("10-vs.yaml")).expect("rm");
    let third = proxy.next().await;
    assert_eq!(third.version, "3");
    assert_eq!(
        third.delta.as_ref().map(|d| d.base_version.as_str()),
        Some("2")
    );
    proxy.nack(&third.version, "route #0: bad regex").await;
    let resent = proxy.next().await;
    assert_eq!(resent.version, "3");
    assert!(
        resent.delta.is_none(),
        "a NACK is answered with a complete config"
    );
    let config = proxy.resolve(&resent);
    assert_eq!(
        first_route_cluster(&config),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    let syncz = wait_for(c.admin, "/debug/syncz", |b| b.contains("bad regex")).await;
    assert!(syncz.contains("\"versionSent\": \"3\""), "{syncz}");
    assert!(syncz.contains("\"versionAcked\": \"2\""), "{syncz}");
    // A refused complete config is not sent again until something changes.
    proxy.nack(&resent.version, "still bad").await;
    let again = tokio::time::timeout(Duration::from_millis(500), proxy.snapshots.message()).await;
    assert!(
        again.is_err(),
        "no resend of a refused complete config: {again:?}"
    );
    let metrics = get(c.admin, "/metrics").await;
    assert!(
        metrics.contains("sluice_config_pushes_total{kind=\"full\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_config_pushes_total{kind=\"delta\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn controller_keeps_last_good_object_when_new_version_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("00-workloads.yaml"), WORKLOADS).expect("write");
    std::fs::write(dir.path().join("10-vs.yaml"), VS_V1).expect("write");
    let c = start(dir.path()).await;
    let mut proxy = FakeProxy::connect(&c, "p-1.default").await;
    let first = proxy.next().await;
    assert_eq!(
        first_route_cluster(&proxy.resolve(&first)),
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    proxy.ack(&first.version).await;

    // Broken YAML in the file: the earlier VirtualService stays in force and
    // the problem is reported.
    std::fs::write(
        dir.path().join("10-vs.yaml"),
        "kind: VirtualService\nmetadata: {name: reviews\n",
    )
    .expect("write");
    let configz = wait_for(c.admin, "/debug/configz", |b| b.contains("10-vs.yaml")).await;
    assert!(
        configz.contains("VirtualService default/reviews"),
        "{configz}"
    );
    // An unknown field is refused with its path; still no change for proxies.
    let typo = VS_V1.replace("subset: v1", "subset: v1, hots: x");
    std::fs::write(dir.path().join("10-vs.yaml"), typo).expect("write");
    let configz = wait_for(c.admin, "/debug/configz", |b| b.contains("hots")).await;
    assert!(
        configz.contains("VirtualService default/reviews"),
        "{configz}"
    );
    let again = tokio::time::timeout(Duration::from_millis(500), proxy.snapshots.message()).await;
    assert!(
        again.is_err(),
        "no new snapshot for an invalid change: {again:?}"
    );
}

/// Istio's bookinfo-gateway.yaml: a Gateway and a VirtualService bound only to it.
const BOOKINFO_GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
"#;

#[tokio::test]
async fn controller_applies_the_other_kinds_of_a_file_holding_a_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("00-workloads.yaml"), WORKLOADS).expect("write");
    std::fs::write(
        dir.path().join("10-bookinfo.yaml"),
        format!("{BOOKINFO_GATEWAY}---{VS_V1}"),
    )
    .expect("write");
    let c = start(dir.path()).await;
    let mut proxy = FakeProxy::connect(&c, "productpage-v1-0.default").await;
    let first = proxy.next().await;
    // The reviews VirtualService next to the Gateway applies.
    assert_eq!(
        first_route_cluster(&proxy.resolve(&first)),
        "outbound|9080|v1|reviews.default.svc.cluster.local"
    );
    proxy.ack(&first.version).await;
    let configz = get(c.admin, "/debug/configz").await;
    for accepted in [
        "Gateway default/bookinfo-gateway",
        "VirtualService default/bookinfo",
        "VirtualService default/reviews",
    ] {
        assert!(configz.contains(accepted), "{accepted}: {configz}");
    }
    assert!(
        configz.contains("\"rejected\": []"),
        "nothing refused: {configz}"
    );
    let metrics = get(c.admin, "/metrics").await;
    assert!(
        metrics.contains("sluice_config_objects{kind=\"Gateway\"} 1"),
        "{metrics}"
    );

    // The reviews VirtualService taken out of the file: deleted, while the
    // Gateway stays.
    std::fs::write(dir.path().join("10-bookinfo.yaml"), BOOKINFO_GATEWAY).expect("write");
    let second = proxy.next().await;
    assert_eq!(
        first_route_cluster(&proxy.resolve(&second)),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    wait_for(c.admin, "/debug/configz", |b| {
        b.contains("Gateway default/bookinfo-gateway")
            && !b.contains("VirtualService default/reviews")
    })
    .await;
}

#[tokio::test]
async fn controller_refuses_stream_without_hello() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(dir.path()).await;
    let mut client = ConfigDiscoveryClient::connect(format!("http://{}", c.grpc))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(1);
    tx.send(ProxyMessage {
        kind: Some(proxy_message::Kind::Ack(Ack {
            version: "1".into(),
        })),
    })
    .await
    .expect("send");
    let err = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("hello"), "{}", err.message());
}

fn csr_for(uri: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        uri.to_string().try_into().expect("uri"),
    )];
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

async fn secure_channel(c: &Controller, dir: &Path) -> tonic::transport::Channel {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let root = std::fs::read_to_string(dir.join(".sluice/ca/root-cert.pem")).expect("root kept");
    Endpoint::from_shared(format!("https://{}", c.secure))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(root))
                .domain_name("sluice-controller"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("TLS connect to the controller")
}

fn token(dir: &Path, who: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
        .arg("--config-dir")
        .arg(dir)
        .arg("--print-token")
        .arg(who)
        .output()
        .expect("print token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn with_bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    req
}

#[tokio::test]
async fn controller_signs_csr_for_token_identity_only() {
    use sluice_api::ca::CertificateRequest;
    use sluice_api::ca::certificate_service_client::CertificateServiceClient;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = start(dir.path()).await;
    let mut client = CertificateServiceClient::new(secure_channel(&c, dir.path()).await);
    let reviews = token(dir.path(), "default/reviews");
    let me = "spiffe://cluster.local/ns/default/sa/reviews";

    let issued = client
        .create_certificate(with_bearer(
            CertificateRequest {
                csr: csr_for(me),
                validity_seconds: 3600,
            },
            &reviews,
        ))
        .await
        .expect("issued")
        .into_inner();
    assert_eq!(issued.cert_chain.len(), 1);
    assert_eq!(issued.trust_bundle.len(), 1);
    let leaf = pem::parse(&issued.cert_chain[0]).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.contents()).expect("x509 certificate");
    let sans = cert
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    assert!(
        sans.value
            .general_names
            .iter()
            .any(|g| matches!(g, x509_parser::extensions::GeneralName::URI(u) if *u == me)),
        "{sans:?}"
    );

    // A CSR for somebody else's identity is refused.
    let other = client
        .create_certificate(with_bearer(
            CertificateRequest {
                csr: csr_for("spiffe://cluster.local/ns/default/sa/frontend"),
                validity_seconds: 0,
            },
            &reviews,
        ))
        .await
        .expect_err("refused");
    assert_eq!(other.code(), tonic::Code::PermissionDenied);
    // No token, or a forged one: unauthenticated.
    let anonymous = client
        .create_certificate(tonic::Request::new(CertificateRequest {
            csr: csr_for(me),
            validity_seconds: 0,
        }))
        .await
        .expect_err("refused");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let forged = reviews.replace("reviews", "frontend");
    let forged = client
        .create_certificate(with_bearer(
            CertificateRequest {
                csr: csr_for("spiffe://cluster.local/ns/default/sa/frontend"),
                validity_seconds: 0,
            },
            &forged,
        ))
        .await
        .expect_err("refused");
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);
    let metrics = wait_for(c.admin, "/metrics", |b| {
        b.contains("sluice_csr_requests_total{outcome=\"issued\"} 1")
    })
    .await;
    assert!(
        metrics.contains("sluice_csr_requests_total{outcome=\"denied\"} 1"),
        "{metrics}"
    );
}

/// A key set server: `/keys` answers 503 until `ready` is set.
async fn key_server(ready: std::sync::Arc<std::sync::atomic::AtomicBool>) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let ready = ready.clone();
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => n += m,
                    }
                }
                let (status, body) = if ready.load(std::sync::atomic::Ordering::SeqCst) {
                    ("200 OK", KEY_SET)
                } else {
                    ("503 Service Unavailable", "")
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

const KEY_SET: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"AQ","y":"AQ"}]}"#;

fn jwt_rule(config: &ProxyConfig) -> sluice_api::config::JwtRule {
    config
        .inbound
        .as_ref()
        .and_then(|i| i.security.as_ref())
        .and_then(|s| s.jwt_rules.first().cloned())
        .expect("a jwt rule")
}

#[tokio::test]
async fn controller_fetches_a_jwks_uri_and_pushes_the_keys_when_they_arrive() {
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keys = key_server(ready.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("00-workloads.yaml"), WORKLOADS).expect("write");
    let ra = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: default}}\nspec:\n  jwtRules:\n  - issuer: https://idp.example\n    jwksUri: http://{keys}/keys\n"
    );
    std::fs::write(dir.path().join("10-ra.yaml"), ra).expect("write");
    let c = start(dir.path()).await;
    let mut proxy = FakeProxy::connect(&c, "productpage-v1-0.default").await;

    // The key server fails: the proxy is told there are no keys, and why.
    let mut snapshot = proxy.next().await;
    let mut config = proxy.resolve(&snapshot);
    proxy.ack(&snapshot.version).await;
    while !jwt_rule(&config).jwks_error.contains("503") {
        snapshot = proxy.next().await;
        config = proxy.resolve(&snapshot);
        proxy.ack(&snapshot.version).await;
    }
    let rule = jwt_rule(&config);
    assert_eq!(rule.issuer, "https://idp.example");
    assert!(rule.jwks.is_empty(), "{rule:?}");
    let metrics = wait_for(c.admin, "/metrics", |b| {
        b.contains("sluice_jwks_fetches_total{outcome=\"failure\"}")
    })
    .await;
    assert!(metrics.contains("sluice_jwks_unavailable 1"), "{metrics}");

    // The server recovers: the retry fetches the keys and a new revision
    // carries them, with no change to any file.
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    let before: u64 = snapshot.version.parse().expect("numeric version");
    loop {
        snapshot = proxy.next().await;
        config = proxy.resolve(&snapshot);
        proxy.ack(&snapshot.version).await;
        if !jwt_rule(&config).jwks.is_empty() {
            break;
        }
    }
    assert!(snapshot.version.parse::<u64>().expect("numeric") > before);
    let rule = jwt_rule(&config);
    assert_eq!(rule.jwks, KEY_SET);
    assert!(rule.jwks_error.is_empty(), "{rule:?}");
    let metrics = wait_for(c.admin, "/metrics", |b| {
        b.contains("sluice_jwks_unavailable 0")
    })
    .await;
    assert!(
        metrics.contains("sluice_jwks_fetches_total{outcome=\"success\"} 1"),
        "{metrics}"
    );
}
