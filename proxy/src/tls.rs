//! Mutual TLS between sidecars: TLS 1.3 (rustls, ring) with the workload
//! certificate on both sides. The server verifies the client chain against the
//! mesh roots (client certificate required); the client verifies the server
//! chain against the same roots and checks the leaf's SPIFFE URI SAN against
//! the identities the cluster allows, instead of a DNS name.
//!
//! Configs are rebuilt only when the credentials watch holds a new value and
//! are looked up per handshake, so a renewal never touches live connections
//! while every new connection presents the newest certificate.

#[cfg(test)]
mod tests;

mod origination;
mod stream;
mod verify;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;

use crate::fast_hash::FastMap;
use crate::identity::{Credentials, CredentialsRx};
use crate::metrics::{Metrics, Side};

pub use origination::{Origination, OriginationError};
pub use stream::Stream;
pub use verify::spiffe_id;

/// ALPN of HTTP/2 between sidecars.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN of HTTP/1.1 between sidecars (Istio's default `DO_NOT_UPGRADE`).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN of opaque TCP between sidecars.
pub const ALPN_TCP: &[u8] = b"sluice-tcp";
/// ALPN of opaque TCP between sidecars that begins, inside TLS, with the
/// caller's workload metadata (`source_meta::write_frame`), as Istio's
/// sidecars exchange peer metadata on TCP connections. Offered before
/// [`ALPN_TCP`], so a sidecar of an earlier release still accepts.
pub const ALPN_TCP_META: &[u8] = b"sluice-tcp-meta";
/// Time a TLS handshake may take, either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no workload certificate")]
    NoCredentials,
    #[error("workload credentials unusable: {0}")]
    BadCredentials(#[source] rustls::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("peer certificate carries no SPIFFE identity")]
    NoPeerIdentity,
    #[error(transparent)]
    Origination(#[from] OriginationError),
}

/// The application protocol a client connection asks for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Alpn {
    /// HTTP/2 between sidecars.
    H2,
    /// HTTP/1.1 between sidecars.
    Http1,
    /// Opaque TCP between sidecars.
    Tcp,
}

impl Alpn {
    /// The ALPN of an HTTP connection in the given protocol.
    pub fn for_http(h2: bool) -> Self {
        if h2 { Alpn::H2 } else { Alpn::Http1 }
    }

    /// What the client offers. HTTP/1.1 offers `h2` second so that a sidecar
    /// of an earlier release (which knew only `h2` and `sluice-tcp`) still
    /// accepts: its inbound detects HTTP/1.1 from the bytes, not the ALPN.
    fn offered(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::H2 => vec![ALPN_H2.to_vec()],
            Alpn::Http1 => vec![ALPN_HTTP1.to_vec(), ALPN_H2.to_vec()],
            Alpn::Tcp => vec![ALPN_TCP_META.to_vec(), ALPN_TCP.to_vec()],
        }
    }
}

/// How an upstream connection is secured; part of the pool key, so a config
/// change of the mode never reuses a connection made under the old one.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Security {
    /// Plaintext.
    Plain,
    /// Mesh mTLS with the workload certificate; the server must be one of
    /// `sans` (SPIFFE ids without "spiffe://"; empty = any mesh identity).
    Mesh {
        sans: Arc<[String]>,
        alpn: Alpn,
        /// SNI to send; `None` sends none.
        sni: Option<Arc<str>>,
    },
    /// TLS origination to a server outside the mesh (SIMPLE / MUTUAL).
    Originate(Arc<Origination>),
}

/// What a completed mutual TLS handshake told about the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The peer leaf's URI SAN, `spiffe://...`.
    pub spiffe_id: String,
    /// Hex SHA-256 of the peer leaf certificate (DER).
    pub cert_hash: String,
    /// The identity this side presented, `spiffe://...`.
    pub own_id: String,
    /// The SNI the client sent, if any.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
}

impl Peer {
    /// The peer identity without "spiffe://" (AuthorizationPolicy principals).
    pub fn principal(&self) -> &str {
        self.spiffe_id
            .strip_prefix("spiffe://")
            .unwrap_or(&self.spiffe_id)
    }
}

/// Whether `buf` starts a TLS handshake record; `None` until two bytes are in.
pub fn is_client_hello(buf: &[u8]) -> Option<bool> {
    match buf {
        [] => None,
        [0x16] => None,
        [0x16, 0x03, ..] => Some(true),
        _ => Some(false),
    }
}

/// Configs built from one value of the credentials watch.
struct Built {
    creds: Arc<Credentials>,
    roots: Arc<RootCertStore>,
    key: Arc<CertifiedKey>,
    server: Arc<ServerConfig>,
    /// Client configs by the SANs they verify and the ALPN they offer.
    /// Connections to one destination share a config, and with it its session
    /// cache (so a new connection resumes instead of a full handshake),
    /// instead of each building and holding its own (~14 KB per connection).
    /// Dropped with these credentials.
    clients: Mutex<FastMap<ClientKey, Arc<ClientConfig>>>,
}

/// What a client config verifies (the server's SANs) and offers (ALPN).
type ClientKey = (Vec<String>, Alpn);

/// Client configs kept per credentials; past this many (SAN sets change with
/// config) the cache starts over.
const MAX_CLIENT_CONFIGS: usize = 256;

impl Built {
    /// The client config verifying `sans` and offering `alpn`.
    fn client(
        &self,
        provider: &Arc<CryptoProvider>,
        sans: &[String],
        alpn: Alpn,
    ) -> Result<Arc<ClientConfig>, TlsError> {
        let key = (sans.to_vec(), alpn);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(config) = clients.get(&key) {
            return Ok(Arc::clone(config));
        }
        let verifier = verify::SpiffeServerVerifier::new(
            Arc::clone(&self.roots),
            sans.to_vec(),
            Arc::clone(provider),
        );
        let mut config = ClientConfig::builder_with_provider(Arc::clone(provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::BadCredentials)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(FixedClientCert(Arc::clone(&self.key))));
        config.alpn_protocols = alpn.offered();
        let config = Arc::new(config);
        if clients.len() >= MAX_CLIENT_CONFIGS {
            clients.clear();
        }
        clients.insert(key, Arc::clone(&config));
        Ok(config)
    }
}

/// The mesh TLS endpoint of this proxy: accepts and opens mTLS connections
/// with the current workload credentials.
pub struct MeshTls {
    credentials: CredentialsRx,
    metrics: Arc<Metrics>,
    provider: Arc<CryptoProvider>,
    built: Mutex<Option<Arc<Built>>>,
}

impl MeshTls {
    /// Reads credentials from `credentials`; counts handshakes in `metrics`.
    pub fn new(credentials: CredentialsRx, metrics: Arc<Metrics>) -> Self {
        MeshTls {
            credentials,
            metrics,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            built: Mutex::new(None),
        }
    }

    /// Whether a workload certificate is available now.
    pub fn has_credentials(&self) -> bool {
        self.credentials.borrow().is_some()
    }

    /// The configs for the current credentials, rebuilt when they changed.
    fn current(&self) -> Result<Arc<Built>, TlsError> {
        let creds = self
            .credentials
            .borrow()
            .clone()
            .ok_or(TlsError::NoCredentials)?;
        let mut cached = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = cached.as_ref().filter(|b| Arc::ptr_eq(&b.creds, &creds)) {
            return Ok(Arc::clone(b));
        }
        let built = Arc::new(build(&self.provider, creds).map_err(TlsError::BadCredentials)?);
        *cached = Some(Arc::clone(&built));
        Ok(built)
    }

    /// Terminates mutual TLS on an accepted connection (its ClientHello is next).
    pub async fn accept(&self, stream: TcpStream) -> Result<(Stream, Peer), TlsError> {
        let result = self.accept_inner(stream).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(TlsError::NoCredentials) => "no_certificate",
            Err(_) => "failure",
        };
        self.metrics.security.handshake(Side::Inbound, outcome);
        result
    }

    async fn accept_inner(&self, stream: TcpStream) -> Result<(Stream, Peer), TlsError> {
        let built = self.current()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&built.server));
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| TlsError::Timeout)?
            .map_err(TlsError::Handshake)?;
        let (_, conn) = tls.get_ref();
        let peer = peer_of(
            conn.peer_certificates(),
            &built.creds.spiffe_id,
            conn.server_name().map(str::to_owned),
            conn.alpn_protocol().map(<[u8]>::to_vec),
        )?;
        if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.metrics.security.resumed(Side::Inbound);
        }
        Ok((Stream::Server(Box::new(tls)), peer))
    }

    /// Opens mutual TLS on a connected stream (after any PROXY header).
    pub async fn connect(
        &self,
        stream: TcpStream,
        server: IpAddr,
        sans: &[String],
        alpn: Alpn,
        sni: Option<&str>,
    ) -> Result<(Stream, Peer), TlsError> {
        let result = self.connect_inner(stream, server, sans, alpn, sni).await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(TlsError::NoCredentials) => "no_certificate",
            Err(_) => "failure",
        };
        self.metrics.security.handshake(Side::Outbound, outcome);
        result
    }

    async fn connect_inner(
        &self,
        stream: TcpStream,
        server: IpAddr,
        sans: &[String],
        alpn: Alpn,
        sni: Option<&str>,
    ) -> Result<(Stream, Peer), TlsError> {
        let built = self.current()?;
        let config = built.client(&self.provider, sans, alpn)?;
        let connector = tokio_rustls::TlsConnector::from(config);
        // Identity is checked by SPIFFE SAN, never by name: the name only
        // carries Istio's SNI (`connection.sni`); an IP sends none.
        let name = sni
            .and_then(|s| ServerName::try_from(s.to_owned()).ok())
            .unwrap_or(ServerName::IpAddress(server.into()));
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| TlsError::Timeout)?
            .map_err(TlsError::Handshake)?;
        let (_, conn) = tls.get_ref();
        let peer = peer_of(
            conn.peer_certificates(),
            &built.creds.spiffe_id,
            None,
            conn.alpn_protocol().map(<[u8]>::to_vec),
        )?;
        if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            self.metrics.security.resumed(Side::Outbound);
        }
        Ok((Stream::Client(Box::new(tls)), peer))
    }
}

fn peer_of(
    certs: Option<&[CertificateDer<'static>]>,
    own: &str,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
) -> Result<Peer, TlsError> {
    let leaf = certs
        .and_then(|c| c.first())
        .ok_or(TlsError::NoPeerIdentity)?;
    let spiffe_id = spiffe_id(leaf).ok_or(TlsError::NoPeerIdentity)?;
    Ok(Peer {
        spiffe_id,
        cert_hash: sha256_hex(leaf),
        own_id: own.to_owned(),
        sni,
        alpn,
    })
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn build(provider: &Arc<CryptoProvider>, creds: Arc<Credentials>) -> Result<Built, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for root in &creds.roots {
        roots.add(root.clone())?;
    }
    let roots = Arc::new(roots);
    let signing = provider
        .key_provider
        .load_private_key(creds.key.clone_key())?;
    let key = Arc::new(CertifiedKey::new(creds.chain.clone(), signing));
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(provider))
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut server = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(Arc::new(FixedServerCert(Arc::clone(&key))));
    // rustls picks the first of these the client offers, so HTTP/1.1 goes first.
    server.alpn_protocols = vec![
        ALPN_HTTP1.to_vec(),
        ALPN_H2.to_vec(),
        ALPN_TCP_META.to_vec(),
        ALPN_TCP.to_vec(),
    ];
    Ok(Built {
        creds,
        roots,
        key,
        server: Arc::new(server),
        clients: Mutex::default(),
    })
}

/// Presents the workload certificate the config was built with.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Presents the workload certificate whatever the client asked for.
#[derive(Debug)]
struct FixedServerCert(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedServerCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
