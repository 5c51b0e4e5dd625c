//! The workload certificate: a key made here and kept in memory, a CSR sent
//! to the controller's certificate service, renewal at half-life, and the
//! trust bundle that comes with each answer.
//!
//! Readers (the TLS code) hold a [`CredentialsRx`] and read the current
//! value per handshake, so a renewal never drops a connection.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use crate::config::Settings;
use crate::metrics::Metrics;

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
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// The current credentials; `None` until the first certificate arrives, and
/// always `None` when no certificate service is configured.
pub type CredentialsRx = watch::Receiver<Option<Arc<Credentials>>>;

/// Keeps `tx` holding valid credentials until `shutdown`. Returns at once when
/// the proxy runs without a certificate service.
pub async fn run(
    settings: Settings,
    tx: watch::Sender<Option<Arc<Credentials>>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = (&tx, &metrics);
    if settings.ca.is_none() && settings.credentials_dir.is_none() {
        return;
    }
    // Filled in by the certificate work.
    let _ = shutdown.wait_for(|q| *q).await;
}
