//! The webhook's serving certificate, issued by the mesh CA and replaced
//! halfway through its life, so the API server (trusting the mesh root
//! through `caBundle`) never meets an expired one.

use super::WebhookError;
use crate::ca::CertificateAuthority;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Shortest wait between two renewals, whatever lifetime the CA gives.
const MIN_RENEW: Duration = Duration::from_secs(5);

/// Hands the current certificate to every new TLS connection.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Who the certificate names.
#[derive(Clone, Debug)]
pub struct Names {
    /// DNS names (the Service's, plus `localhost`).
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl ServingCert {
    /// Issues the first certificate.
    pub fn issue(
        ca: &CertificateAuthority,
        names: &Names,
    ) -> Result<(Arc<Self>, Duration), WebhookError> {
        let (key, renew_in) = certified_key(ca, names)?;
        Ok((
            Arc::new(Self {
                current: RwLock::new(key),
            }),
            renew_in,
        ))
    }

    /// The certificate new connections get.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c))
    }

    /// Replaces the certificate now; returns when to renew the new one.
    pub fn renew(
        &self,
        ca: &CertificateAuthority,
        names: &Names,
    ) -> Result<Duration, WebhookError> {
        let (key, next) = certified_key(ca, names)?;
        if let Ok(mut current) = self.current.write() {
            *current = key;
        }
        Ok(next)
    }

    /// Replaces the certificate before each one is half used up, forever.
    pub async fn renew_forever(
        self: Arc<Self>,
        ca: Arc<CertificateAuthority>,
        names: Names,
        mut renew_in: Duration,
    ) {
        loop {
            tokio::time::sleep(renew_in.max(MIN_RENEW)).await;
            match self.renew(&ca, &names) {
                Ok(next) => {
                    renew_in = next;
                    tracing::info!(
                        next_renewal_s = next.as_secs(),
                        "webhook serving certificate renewed"
                    );
                }
                Err(e) => {
                    tracing::error!("renewing the webhook serving certificate: {e}");
                    renew_in = MIN_RENEW * 6;
                }
            }
        }
    }

    /// A TLS server configuration serving this certificate (HTTP/2 and 1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| WebhookError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A fresh certificate and key, and when to renew it (half its lifetime).
fn certified_key(
    ca: &CertificateAuthority,
    names: &Names,
) -> Result<(Arc<CertifiedKey>, Duration), WebhookError> {
    let (chain, key_pem) = ca
        .sign_server(&names.dns, &names.ips)
        .map_err(|e| WebhookError::Tls(format!("issuing the serving certificate: {e}")))?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain.concat().as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| WebhookError::Tls(format!("serving certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| WebhookError::Tls(format!("serving key: {e}")))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| WebhookError::Tls(format!("serving key: {e}")))?;
    let lifetime = certs
        .first()
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
        .and_then(|(_, cert)| cert.validity().time_to_expiration())
        .and_then(|left| u64::try_from(left.whole_seconds()).ok())
        .map(Duration::from_secs)
        .unwrap_or(MIN_RENEW * 2);
    Ok((Arc::new(CertifiedKey::new(certs, signing)), lifetime / 2))
}
