//! The CPU cost of one sidecar-to-sidecar mutual TLS 1.3 handshake, as the
//! sidecars configure it (ECDSA P-256 workload certificates, client
//! certificate required, the server's SPIFFE identity checked by the same
//! verifier the proxy uses). Both ends run on this thread over in-memory
//! buffers, so the time is the handshake's CPU work for client and server
//! together, without sockets; its inverse is handshakes per second per core.
#![forbid(unsafe_code)]

#[allow(dead_code, unused_imports)]
#[path = "../src/tls/verify.rs"]
mod verify;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> (CertificateDer<'static>, Leaf, Leaf) {
    let alg = &rcgen::PKCS_ECDSA_P256_SHA256;
    let root_key = KeyPair::generate_for(alg).expect("root key");
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "cluster.local");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root = params.self_signed(&root_key).expect("root");
    let issuer = rcgen::Issuer::new(params, root_key);
    let leaf = |sa: &str| {
        let key = KeyPair::generate_for(alg).expect("leaf key");
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(
            format!("spiffe://cluster.local/ns/default/sa/{sa}")
                .try_into()
                .expect("uri"),
        )];
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &issuer).expect("leaf");
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    };
    let root = root.der().clone();
    (root, leaf("client"), leaf("server"))
}

fn configs() -> (Arc<ClientConfig>, Arc<ServerConfig>) {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let (root, client, server) = pki();
    let mut roots = RootCertStore::empty();
    roots.add(root).expect("root");
    let roots = Arc::new(roots);
    let verifier = verify::SpiffeServerVerifier::new(
        Arc::clone(&roots),
        vec!["cluster.local/ns/default/sa/server".to_owned()],
        Arc::clone(&provider),
    );
    let mut client_config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(client.chain, client.key)
        .expect("client cert");
    client_config.alpn_protocols = vec![b"h2".to_vec()];
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .expect("client verifier");
    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server.chain, server.key)
        .expect("server cert");
    server_config.alpn_protocols = vec![b"h2".to_vec()];
    (Arc::new(client_config), Arc::new(server_config))
}

/// Moves every pending TLS record from one side to the other.
fn pump(from: &mut dyn FnMut(&mut Vec<u8>) -> usize, to: &mut dyn FnMut(&[u8])) {
    let mut buf = Vec::new();
    while from(&mut buf) > 0 {}
    if !buf.is_empty() {
        to(&buf);
    }
}

fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) {
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut c = ClientConnection::new(Arc::clone(client), name).expect("client");
    let mut s = ServerConnection::new(Arc::clone(server)).expect("server");
    while c.is_handshaking() || s.is_handshaking() {
        pump(
            &mut |b| c.write_tls(b).expect("client write"),
            &mut |mut b| {
                while !b.is_empty() {
                    s.read_tls(&mut b).expect("server read");
                }
                s.process_new_packets().expect("server process");
            },
        );
        pump(
            &mut |b| s.write_tls(b).expect("server write"),
            &mut |mut b| {
                while !b.is_empty() {
                    c.read_tls(&mut b).expect("client read");
                }
                c.process_new_packets().expect("client process");
            },
        );
    }
    black_box((
        c.alpn_protocol().map(<[u8]>::len),
        s.peer_certificates().map(<[_]>::len),
    ));
}

fn bench(c: &mut Criterion) {
    let (client, server) = configs();
    c.bench_function("mtls/full_handshake_client_and_server", |b| {
        b.iter(|| handshake(&client, &server))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
