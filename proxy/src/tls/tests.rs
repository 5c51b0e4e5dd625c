use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::*;
use crate::detect::{self, Detected};
use crate::identity::Credentials;
use crate::metrics::Metrics;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A test certificate authority.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().clone();
    Ca { params, key, der }
}

/// A workload leaf for `spiffe` signed by `ca`, valid until `expiry` (y, m, d) when given.
fn leaf(
    ca: &Ca,
    spiffe: &str,
    expiry: Option<(i32, u8, u8)>,
) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(spiffe.try_into().unwrap())];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    if let Some((y, m, d)) = expiry {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(y, m, d);
    }
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.der().clone(), key)
}

fn creds(spiffe: &str, signer: &Ca, roots: &[&Ca]) -> Arc<Credentials> {
    creds_with(spiffe, leaf(signer, spiffe, None), roots)
}

fn creds_with(
    spiffe: &str,
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
    roots: &[&Ca],
) -> Arc<Credentials> {
    Arc::new(Credentials {
        spiffe_id: spiffe.to_owned(),
        chain: vec![cert],
        key,
        roots: roots.iter().map(|c| c.der.clone()).collect(),
        not_before: SystemTime::now(),
        not_after: SystemTime::now() + Duration::from_secs(3600),
    })
}

/// A `MeshTls` over `creds`; the sender keeps the watch open.
fn mesh(
    creds: Option<Arc<Credentials>>,
) -> (
    MeshTls,
    watch::Sender<Option<Arc<Credentials>>>,
    Arc<Metrics>,
) {
    let (tx, rx) = watch::channel(creds);
    let metrics = Arc::new(Metrics::new());
    (MeshTls::new(rx, Arc::clone(&metrics)), tx, metrics)
}

const CLIENT: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const SERVER: &str = "spiffe://cluster.local/ns/default/sa/reviews";
const SERVER_BARE: &str = "cluster.local/ns/default/sa/reviews";

/// Runs one handshake over loopback: `server` accepts, `client` connects.
async fn handshake(
    server: Arc<MeshTls>,
    client: &MeshTls,
    sans: &[String],
) -> (
    Result<(Stream, Peer), TlsError>,
    Result<(Stream, Peer), TlsError>,
) {
    handshake_sni(server, client, sans, None).await
}

async fn handshake_sni(
    server: Arc<MeshTls>,
    client: &MeshTls,
    sans: &[String],
    sni: Option<&str>,
) -> (
    Result<(Stream, Peer), TlsError>,
    Result<(Stream, Peer), TlsError>,
) {
    handshake_alpn(server, client, sans, sni, Alpn::H2).await
}

async fn handshake_alpn(
    server: Arc<MeshTls>,
    client: &MeshTls,
    sans: &[String],
    sni: Option<&str>,
    alpn: Alpn,
) -> (
    Result<(Stream, Peer), TlsError>,
    Result<(Stream, Peer), TlsError>,
) {
    let listener = TcpListener::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        server.accept(s).await
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client_side = client.connect(tcp, LOCAL, sans, alpn, sni).await;
    let server_side = accepted.await.unwrap();
    (server_side, client_side)
}

#[tokio::test]
async fn handshake_alpn_names_the_http_version_or_tcp_on_both_sides() {
    let root = ca("root");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let server = Arc::new(server);
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    for (alpn, want) in [
        (Alpn::Http1, ALPN_HTTP1),
        (Alpn::H2, ALPN_H2),
        // A sidecar of this release takes the metadata-carrying TCP.
        (Alpn::Tcp, ALPN_TCP_META),
    ] {
        let sans = [SERVER_BARE.to_owned()];
        let (s, c) = handshake_alpn(Arc::clone(&server), &client, &sans, None, alpn).await;
        let (_, s_peer) = s.unwrap();
        let (_, c_peer) = c.unwrap();
        assert_eq!(s_peer.alpn.as_deref(), Some(want), "{alpn:?} server side");
        assert_eq!(c_peer.alpn.as_deref(), Some(want), "{alpn:?} client side");
    }
}

#[tokio::test]
async fn handshake_same_ca_succeeds_and_both_learn_peer_identity() {
    let root = ca("root");
    let (server, _stx, server_metrics) = mesh(Some(creds(SERVER, &root, &[&root])));
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let (s, c) = handshake(Arc::new(server), &client, &[SERVER_BARE.to_owned()]).await;
    let (mut s_stream, s_peer) = s.unwrap();
    let (mut c_stream, c_peer) = c.unwrap();
    assert_eq!(s_peer.spiffe_id, CLIENT);
    assert_eq!(
        s_peer.principal(),
        "cluster.local/ns/default/sa/productpage"
    );
    assert_eq!(s_peer.own_id, SERVER);
    assert_eq!(s_peer.alpn.as_deref(), Some(ALPN_H2));
    assert_eq!(s_peer.cert_hash.len(), 64);
    assert_eq!(c_peer.spiffe_id, SERVER);
    // Bytes flow both ways through the TLS streams.
    c_stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s_stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    s_stream.write_all(b"pong").await.unwrap();
    c_stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    let text = server_metrics.encode();
    assert!(
        text.contains(r#"sluice_tls_handshakes_total{direction="inbound",outcome="success"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn handshake_empty_san_list_accepts_any_mesh_identity() {
    let root = ca("root");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let (s, c) = handshake(Arc::new(server), &client, &[]).await;
    assert!(s.is_ok() && c.is_ok());
}

#[tokio::test]
async fn handshake_server_from_other_ca_is_refused_by_client() {
    let root = ca("root");
    let other = ca("other");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &other, &[&other, &root])));
    let (client, _ctx, client_metrics) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let (s, c) = handshake(Arc::new(server), &client, &[]).await;
    assert!(matches!(c, Err(TlsError::Handshake(_))), "{:?}", c.err());
    assert!(s.is_err());
    let text = client_metrics.encode();
    assert!(
        text.contains(r#"sluice_tls_handshakes_total{direction="outbound",outcome="failure"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn handshake_server_identity_not_in_san_list_is_refused() {
    let root = ca("root");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let allowed = ["cluster.local/ns/default/sa/ratings".to_owned()];
    let (s, c) = handshake(Arc::new(server), &client, &allowed).await;
    let err = c.err().expect("client must refuse").to_string();
    assert!(err.contains("NotValidForName"), "{err}");
    assert!(s.is_err());
}

#[tokio::test]
async fn handshake_expired_client_cert_is_refused_by_server() {
    let root = ca("root");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let expired = leaf(&root, CLIENT, Some((2021, 1, 1)));
    let (client, _ctx, _) = mesh(Some(creds_with(CLIENT, expired, &[&root])));
    let (s, _c) = handshake(Arc::new(server), &client, &[]).await;
    let err = s.err().expect("server must refuse").to_string();
    assert!(err.contains("expired"), "{err}");
}

#[tokio::test]
async fn handshake_client_without_certificate_is_refused_by_server() {
    let root = ca("root");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let listener = TcpListener::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(server);
    let accepted = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        server.accept(s).await
    });
    // A client that trusts the server's root but presents no certificate.
    let mut roots = RootCertStore::empty();
    roots.add(root.der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = verify::SpiffeServerVerifier::new(Arc::new(roots), vec![], provider.clone());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // TLS 1.3 clients finish before the server checks them; the server side is what matters.
    let _ = connector
        .connect(ServerName::IpAddress(LOCAL.into()), tcp)
        .await;
    let err = accepted.await.unwrap().err().expect("server must refuse");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn handshake_root_bundle_of_two_accepts_certs_of_either() {
    let old = ca("old-root");
    let new = ca("new-root");
    let bundle = [&old, &new];
    let (server, _stx, _) = mesh(Some(creds(SERVER, &old, &bundle)));
    let server = Arc::new(server);
    for signer in bundle {
        let (client, _ctx, _) = mesh(Some(creds(CLIENT, signer, &bundle)));
        let (s, c) = handshake(Arc::clone(&server), &client, &[]).await;
        assert_eq!(s.unwrap().1.spiffe_id, CLIENT);
        assert_eq!(c.unwrap().1.spiffe_id, SERVER);
    }
}

#[tokio::test]
async fn handshake_after_renewal_presents_new_certificate() {
    let root = ca("root");
    let (server, stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let server = Arc::new(server);
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let (first_server, first_client) = handshake(Arc::clone(&server), &client, &[]).await;
    let renamed = "spiffe://cluster.local/ns/default/sa/reviews-v2";
    stx.send_replace(Some(creds(renamed, &root, &[&root])));
    let (_, c) = handshake(Arc::clone(&server), &client, &[]).await;
    assert_eq!(c.unwrap().1.spiffe_id, renamed);
    // The connection made before the renewal still works.
    let (mut old_server, _) = first_server.unwrap();
    let (mut old_client, old_peer) = first_client.unwrap();
    assert_eq!(old_peer.spiffe_id, SERVER);
    old_client.write_all(b"x").await.unwrap();
    let mut buf = [0u8; 1];
    old_server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"x");
}

#[tokio::test]
async fn accept_without_credentials_counts_no_certificate() {
    let (server, _stx, metrics) = mesh(None);
    let root = ca("root");
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let (s, c) = handshake(Arc::new(server), &client, &[]).await;
    assert!(matches!(s, Err(TlsError::NoCredentials)));
    assert!(c.is_err());
    let text = metrics.encode();
    assert!(text.contains(r#"outcome="no_certificate"} 1"#), "{text}");
}

#[tokio::test]
async fn connect_without_credentials_fails_before_any_handshake() {
    let (client, _ctx, _) = mesh(None);
    let listener = TcpListener::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let tcp = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let r = client.connect(tcp, LOCAL, &[], Alpn::Tcp, None).await;
    assert!(matches!(r, Err(TlsError::NoCredentials)));
}

#[test]
fn is_client_hello_tells_handshake_records_from_plaintext() {
    assert_eq!(is_client_hello(&[]), None);
    assert_eq!(is_client_hello(&[0x16]), None);
    assert_eq!(is_client_hello(&[0x16, 0x03, 0x01]), Some(true));
    assert_eq!(is_client_hello(b"GET / HTTP/1.1"), Some(false));
    assert_eq!(is_client_hello(&[0x16, 0x04]), Some(false));
}

#[tokio::test]
async fn sniff_real_client_hello_is_tls_and_plaintext_is_http() {
    let root = ca("root");
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let listener = TcpListener::bind(SocketAddr::new(LOCAL, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let hello = tokio::spawn(async move { client.connect(tcp, LOCAL, &[], Alpn::H2, None).await });
    let (s, _) = listener.accept().await.unwrap();
    assert_eq!(
        detect::sniff(&s, Duration::from_secs(2)).await,
        Detected::Tls
    );
    drop(s);
    assert!(hello.await.unwrap().is_err());

    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let (s, _) = listener.accept().await.unwrap();
    assert_eq!(
        detect::sniff(&s, Duration::from_secs(2)).await,
        Detected::Http1
    );
}

#[test]
fn spiffe_id_reads_uri_san_and_ignores_certs_without_one() {
    let root = ca("root");
    let (cert, _) = leaf(&root, SERVER, None);
    assert_eq!(spiffe_id(&cert).as_deref(), Some(SERVER));
    assert_eq!(spiffe_id(&root.der), None);
}

#[tokio::test]
async fn handshake_istio_sni_reaches_the_server_and_ip_sends_none() {
    let root = ca("root");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let server = Arc::new(server);
    let (client, _ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let sni = "outbound_.9080_.v1_.reviews.default.svc.cluster.local";
    let (s, c) = handshake_sni(Arc::clone(&server), &client, &[], Some(sni)).await;
    assert!(c.is_ok());
    assert_eq!(s.unwrap().1.sni.as_deref(), Some(sni));
    let (s, _) = handshake_sni(server, &client, &[], None).await;
    assert_eq!(s.unwrap().1.sni, None);
}

/// How the client side of `stream` shook hands.
fn client_handshake_kind(stream: &Stream) -> Option<rustls::HandshakeKind> {
    match stream {
        Stream::Client(tls) => tls.get_ref().1.handshake_kind(),
        _ => None,
    }
}

/// Sends a ping and a pong, so the client has read the server's session tickets.
async fn exchange(server: &mut Stream, client: &mut Stream) {
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.unwrap();
    server.write_all(b"pong").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

/// A first, full handshake from `client` to `server`, its session tickets read by
/// the client: the server's view of the client, and both streams (kept open).
async fn full_session(
    server: &Arc<MeshTls>,
    client: &MeshTls,
    sans: &[String],
) -> (Peer, Stream, Stream) {
    let (s, c) = handshake(Arc::clone(server), client, sans).await;
    let (mut s1, s1_peer) = s.unwrap();
    let (mut c1, _) = c.unwrap();
    assert_eq!(
        client_handshake_kind(&c1),
        Some(rustls::HandshakeKind::Full)
    );
    exchange(&mut s1, &mut c1).await;
    (s1_peer, s1, c1)
}

#[tokio::test]
async fn handshake_to_the_same_destination_resumes_and_keeps_both_identities() {
    let root = ca("root");
    let (server, _stx, server_metrics) = mesh(Some(creds(SERVER, &root, &[&root])));
    let server = Arc::new(server);
    let (client, _ctx, client_metrics) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let sans = [SERVER_BARE.to_owned()];
    let (s1_peer, _s1, _c1) = full_session(&server, &client, &sans).await;
    assert!(
        !client_metrics
            .encode()
            .contains("sluice_tls_resumed_handshakes_total{")
    );

    // The second connection shares the first one's client config and resumes.
    let (s, c) = handshake(Arc::clone(&server), &client, &sans).await;
    let (mut s2, s2_peer) = s.unwrap();
    let (mut c2, c2_peer) = c.unwrap();
    assert_eq!(
        client_handshake_kind(&c2),
        Some(rustls::HandshakeKind::Resumed)
    );
    assert_eq!(s2_peer.spiffe_id, CLIENT);
    assert_eq!(s2_peer.cert_hash, s1_peer.cert_hash);
    assert_eq!(c2_peer.spiffe_id, SERVER);
    exchange(&mut s2, &mut c2).await;
    let resumed = |m: &Metrics, direction: &str| {
        let line = format!("sluice_tls_resumed_handshakes_total{{direction=\"{direction}\"}} 1");
        let text = m.encode();
        assert!(text.contains(&line), "{text}");
    };
    resumed(&client_metrics, "outbound");
    resumed(&server_metrics, "inbound");

    // Another SAN list is another config: nothing to resume, so the server's
    // identity is checked again and refused.
    let other = ["cluster.local/ns/default/sa/ratings".to_owned()];
    let (s, c) = handshake(Arc::clone(&server), &client, &other).await;
    let err = c.err().expect("client must refuse").to_string();
    assert!(err.contains("NotValidForName"), "{err}");
    assert!(s.is_err());
}

#[tokio::test]
async fn handshake_after_client_renewal_does_not_resume_the_old_session() {
    let root = ca("root");
    let (server, _stx, _) = mesh(Some(creds(SERVER, &root, &[&root])));
    let server = Arc::new(server);
    let (client, ctx, _) = mesh(Some(creds(CLIENT, &root, &[&root])));
    let sans = [SERVER_BARE.to_owned()];
    let (s1_peer, _s1, _c1) = full_session(&server, &client, &sans).await;
    // New credentials: the next connection presents the new certificate.
    ctx.send_replace(Some(creds(CLIENT, &root, &[&root])));
    let (s, c) = handshake(Arc::clone(&server), &client, &sans).await;
    let (_, s2_peer) = s.unwrap();
    let (c2, _) = c.unwrap();
    assert_eq!(
        client_handshake_kind(&c2),
        Some(rustls::HandshakeKind::Full)
    );
    assert_ne!(s2_peer.cert_hash, s1_peer.cert_hash);
}
