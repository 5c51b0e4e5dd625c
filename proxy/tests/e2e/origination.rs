//! TLS origination (DestinationRule tls SIMPLE / MUTUAL) from the real proxy
//! to rustls servers outside the mesh, with CA, client certificate and key
//! files made here.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sluice_api::config as pb;
use tokio::net::TcpListener;

use crate::harness::*;

const NET: u8 = 85;
const HOST: &str = "reviews.default.svc.cluster.local";

/// A CA, a server leaf for `HOST` and a client leaf, as DER and as files.
struct Pki {
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    dir: PathBuf,
}

fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let mut server = CertificateParams::new(vec![HOST.to_owned()]).unwrap();
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    let mut client = CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();
    let dir = std::env::temp_dir().join(format!("sluice-e2e-origination-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("client.pem"), client_cert.pem()).unwrap();
    std::fs::write(dir.join("client-key.pem"), client_key.serialize_pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    Pki {
        ca: ca_cert.der().clone(),
        server: (server_cert.der().clone(), key),
        dir,
    }
}

/// An HTTPS server answering `name`; requires a client certificate from the CA when `mutual`.
async fn tls_backend(addr: SocketAddr, pki: &Pki, mutual: bool, name: &'static str) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap();
    let builder = if mutual {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.clone()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let (cert, key) = (pki.server.0.clone(), pki.server.1.clone_key());
    let config = builder.with_single_cert(vec![cert], key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(name))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}

fn path(pki: &Pki, file: &str) -> String {
    pki.dir.join(file).to_string_lossy().into_owned()
}

/// `reviews:9080` → one endpoint outside the mesh at `port`, with `tls`.
fn config(port: u16, tls: pb::UpstreamTls) -> pb::ProxyConfig {
    let ep = endpoint(
        format!("127.0.{NET}.2:{port}").parse().unwrap(),
        "reviews",
        "v1",
    );
    let mut c = cluster("reviews", 9080, "", vec![ep]);
    c.tls = Some(tls);
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![forward(vec![], &[(&cname("reviews", 9080, ""), 1)])],
        )],
        clusters: vec![c],
        ..Default::default()
    }
}

#[tokio::test]
async fn origination_simple_and_mutual_verify_the_server_and_present_the_client_cert() {
    let pki = pki();
    tls_backend(
        format!("127.0.{NET}.2:9443").parse().unwrap(),
        &pki,
        false,
        "simple",
    )
    .await;
    tls_backend(
        format!("127.0.{NET}.2:9444").parse().unwrap(),
        &pki,
        true,
        "mutual",
    )
    .await;
    let simple = pb::UpstreamTls {
        mode: pb::upstream_tls::Mode::Simple as i32,
        ca_certificates: path(&pki, "ca.pem"),
        ..Default::default()
    };
    let (ctl, proxy) = mesh_of_one(NET, config(9443, simple.clone())).await;
    let ask = || send(proxy.outbound(), get("/x", "reviews:9080"));
    let got = ask().await.unwrap();
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "simple"));

    // A server whose names are not the accepted ones is refused.
    let other_name = pb::UpstreamTls {
        subject_alt_names: vec!["db.example".to_owned()],
        ..simple.clone()
    };
    ctl.publish("2", config(9443, other_name));
    assert_eq!(ctl.reply("2").await, Reply::Ack);
    assert_eq!(ask().await.unwrap().status, 503);

    // No CA file: verification is impossible, so nothing is sent.
    let no_ca = pb::UpstreamTls {
        ca_certificates: String::new(),
        ..simple.clone()
    };
    ctl.publish("3", config(9443, no_ca));
    assert_eq!(ctl.reply("3").await, Reply::Ack);
    assert_eq!(ask().await.unwrap().status, 503);

    // A server that requires a client certificate refuses SIMPLE, accepts MUTUAL.
    ctl.publish("4", config(9444, simple.clone()));
    assert_eq!(ctl.reply("4").await, Reply::Ack);
    assert_ne!(ask().await.unwrap().status, 200);
    let mutual = pb::UpstreamTls {
        mode: pb::upstream_tls::Mode::Mutual as i32,
        client_certificate: path(&pki, "client.pem"),
        private_key: path(&pki, "client-key.pem"),
        ..simple
    };
    ctl.publish("5", config(9444, mutual));
    assert_eq!(ctl.reply("5").await, Reply::Ack);
    let got = ask().await.unwrap();
    assert_eq!((got.status.as_u16(), got.body.as_str()), (200, "mutual"));
}

#[tokio::test]
async fn origination_mutual_without_key_files_is_nacked() {
    let net = NET + 1;
    let (ctl, _proxy) = mesh_of_one(net, pb::ProxyConfig::default()).await;
    let mutual = pb::UpstreamTls {
        mode: pb::upstream_tls::Mode::Mutual as i32,
        ca_certificates: "/nonexistent/ca.pem".to_owned(),
        ..Default::default()
    };
    ctl.publish("2", config(9443, mutual));
    match ctl.reply("2").await {
        Reply::Nack(msg) => assert!(msg.contains("private_key"), "{msg}"),
        Reply::Ack => panic!("MUTUAL without a client certificate was accepted"),
    }
}
