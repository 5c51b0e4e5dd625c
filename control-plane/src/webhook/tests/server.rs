//! The HTTPS server over real sockets, with a client that trusts only the
//! mesh root.

use super::*;
use crate::ca::CertificateAuthority;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;

struct Served {
    addr: SocketAddr,
    metrics: Arc<ControllerMetrics>,
    client: Arc<rustls::ClientConfig>,
    _state: tempfile::TempDir,
}

async fn start() -> Served {
    let state = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(state.path(), None, "cluster.local").expect("ca");
    let names = tls::Names {
        dns: vec!["localhost".into()],
        ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
    };
    let (cert, renew_in) = tls::ServingCert::issue(&ca, &names).expect("cert");
    assert!(renew_in > Duration::from_secs(24 * 3600), "{renew_in:?}");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let metrics = Arc::new(ControllerMetrics::new());
    let hooks = Webhooks {
        namespaces: None,
        inject: Arc::new(InjectConfig::default()),
        metrics: metrics.clone(),
    };
    tokio::spawn(serve(listener, cert.server_config().expect("tls"), hooks));
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca.roots() {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("root pem");
        roots.add(der).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Served {
        addr,
        metrics,
        client: Arc::new(client),
        _state: state,
    }
}

/// One request on a fresh TLS connection; the status and body.
async fn send(s: &Served, method: &str, path: &str, body: Vec<u8>) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    let name = ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into());
    let tls = tokio_rustls::TlsConnector::from(s.client.clone())
        .connect(name, tcp)
        .await
        .expect("TLS handshake with a certificate from the mesh root");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("http handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn count(s: &Served, webhook: &'static str, outcome: &'static str) -> u64 {
    s.metrics
        .webhook_requests
        .get_or_create(&WebhookLabels { webhook, outcome })
        .get()
}

#[tokio::test]
async fn server_validate_over_tls_denies_and_counts() {
    let s = start().await;
    let (status, body) = send(
        &s,
        "POST",
        "/validate",
        review(VS, "CREATE", virtual_service(-1)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(
        body["response"]["status"]["message"],
        "VirtualService default/reviews: spec.http[0].route[0].weight: must be >= 0"
    );
    let (status, _) = send(
        &s,
        "POST",
        "/validate",
        review(VS, "CREATE", virtual_service(5)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(count(&s, "validate", "denied"), 1);
    assert_eq!(count(&s, "validate", "allowed"), 1);
    assert!(
        s.metrics
            .encode()
            .contains(r#"sluice_webhook_requests_total{webhook="validate",outcome="denied"} 1"#),
        "{}",
        s.metrics.encode()
    );
}

#[tokio::test]
async fn server_inject_without_cluster_allows_unlabelled_pod() {
    let s = start().await;
    let (status, body) = send(
        &s,
        "POST",
        "/inject",
        review(("", "v1", "Pod"), "CREATE", pod(json!({}))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none(), "{body}");
    assert_eq!(count(&s, "inject", "allowed"), 1);
}

#[tokio::test]
async fn server_bad_requests_refused_with_clear_errors() {
    let s = start().await;
    let (status, body) = send(&s, "POST", "/validate", b"{\"kind\": 1".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("not an AdmissionReview"), "{body}");
    let (status, body) = send(&s, "POST", "/validate", vec![b' '; MAX_BODY + 1]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(count(&s, "validate", "error"), 2);
    let (status, _) = send(&s, "GET", "/validate", Vec::new()).await;
    assert_eq!(status, 405);
    let (status, _) = send(&s, "POST", "/mutate", Vec::new()).await;
    assert_eq!(status, 404);
}

#[test]
fn serving_cert_renew_replaces_served_certificate() {
    let state = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(state.path(), None, "cluster.local").expect("ca");
    let names = tls::Names {
        dns: vec!["sluice-controller.sluice-system.svc".into()],
        ips: Vec::new(),
    };
    let (cert, _) = tls::ServingCert::issue(&ca, &names).expect("cert");
    let first = cert.current().expect("current").cert[0].clone();
    let renew_in = cert.renew(&ca, &names).expect("renew");
    let second = cert.current().expect("current").cert[0].clone();
    assert_ne!(first, second);
    // Renewed at half of a 30-day certificate's life.
    assert!(
        renew_in > Duration::from_secs(14 * 24 * 3600)
            && renew_in <= Duration::from_secs(15 * 24 * 3600),
        "{renew_in:?}"
    );
    let (_, leaf) = x509_parser::parse_x509_certificate(&second).expect("x509");
    let san = leaf
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    assert!(format!("{:?}", san.value).contains("sluice-controller.sluice-system.svc"));
}
