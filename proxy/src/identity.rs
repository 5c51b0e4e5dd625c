//! The workload certificate: a key made here and kept in memory, a CSR sent
//! to the controller's certificate service, renewal at half-life, and the
//! trust bundle that comes with each answer; or credentials mounted as files.
//!
//! Readers (the TLS code) hold a [`CredentialsRx`] and read the current
//! value per handshake, so a renewal never drops a connection.

mod ca_client;
mod mounted;
mod parse;
mod renewal;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::config::Settings;
use crate::metrics::Metrics;

#[allow(unused_imports, reason = "a helper for other modules' tests")]
pub use mounted::load_dir;

/// A certified workload key and the roots the mesh trusts.
#[derive(Debug)]
pub struct Credentials {
    /// `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
    pub spiffe_id: String,
    /// Leaf first, then intermediates (no root).
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    /// Every root the mesh trusts now (two during a root rotation).
    pub roots: Vec<CertificateDer<'static>>,
    /// Start of the leaf's validity.
    pub not_before: SystemTime,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
}

/// The current credentials; `None` until the first certificate arrives, and
/// always `None` when no certificate service is configured.
pub type CredentialsRx = watch::Receiver<Option<Arc<Credentials>>>;

/// Why credentials could not be loaded, requested or accepted.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A mounted file or the token could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// PEM text that does not decode.
    #[error("{what}: bad PEM: {source}")]
    Pem {
        what: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A PEM source holding none of the expected blocks.
    #[error("{what}: no {kind} found")]
    Empty { what: String, kind: &'static str },
    /// A certificate x509-parser rejects.
    #[error("{what}: unreadable certificate: {reason}")]
    Certificate { what: String, reason: String },
    /// The leaf carries no `spiffe://` URI SAN.
    #[error("{what}: the leaf certificate has no spiffe:// URI SAN")]
    NoSpiffeId { what: String },
    /// The private key is unusable or does not belong to the leaf.
    #[error("{what}: {source}")]
    Key {
        what: String,
        #[source]
        source: rustls::Error,
    },
    /// The chain does not lead to a root of the bundle (or is expired).
    #[error("the certificate chain does not verify against the trust bundle: {0}")]
    Untrusted(#[source] rustls::Error),
    /// The CA certified another identity than the one asked for.
    #[error("the CA issued {got}, expected {want}")]
    WrongIdentity { got: String, want: String },
    /// The CA certified another key than the one in the CSR.
    #[error("the issued certificate is not for the key in the CSR")]
    WrongKey,
    /// The key or CSR could not be made.
    #[error("making the key or CSR: {0}")]
    Csr(#[source] rcgen::Error),
    /// `--ca-address` is not a usable URL.
    #[error("bad certificate service address {address:?}: {reason}")]
    Address { address: String, reason: String },
    /// The token holds characters a header cannot carry.
    #[error("the token in {} is not a valid header value", path.display())]
    Token { path: PathBuf },
    /// TLS or TCP towards the certificate service failed.
    #[error("connecting to the certificate service: {0}")]
    Connect(#[source] tonic::transport::Error),
    /// The certificate service answered with an error.
    #[error("the certificate service refused: {}: {}", .0.code(), .0.message())]
    Rpc(#[source] tonic::Status),
}

/// Keeps `tx` holding valid credentials until `shutdown`. Returns at once when
/// the proxy runs without a certificate service.
pub async fn run(
    settings: Settings,
    tx: watch::Sender<Option<Arc<Credentials>>>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    if let Some(dir) = settings.credentials_dir.clone() {
        mounted::watch(dir, tx, metrics, shutdown).await;
    } else if let Some(ca) = settings.ca.clone() {
        renewal::run(settings, ca, tx, metrics, shutdown).await;
    }
}

/// Publishes fresh credentials and their expiry.
fn publish(
    tx: &watch::Sender<Option<Arc<Credentials>>>,
    metrics: &Metrics,
    credentials: Credentials,
) {
    metrics
        .security
        .certificate_expiry(unix_seconds(credentials.not_after));
    tx.send_replace(Some(Arc::new(credentials)));
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests;
