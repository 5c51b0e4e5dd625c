//! TLS origination to servers outside the mesh (DestinationRule tls SIMPLE /
//! MUTUAL): CA, client certificate and key come from files on the proxy's file
//! system; the server is verified by its DNS/URI SANs (or the SNI name).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;

use super::verify::{Names, ServerVerifier};
use super::{HANDSHAKE_TIMEOUT, Stream};

/// Why a TLS origination failed.
#[derive(Debug, thiserror::Error)]
pub enum OriginationError {
    #[error("reading {path}: {reason}")]
    File { path: String, reason: String },
    #[error("no CA certificates configured; server verification impossible")]
    NoCa,
    #[error("sni {0:?} is not a valid server name")]
    BadSni(String),
    #[error("TLS config: {0}")]
    Config(#[source] rustls::Error),
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("TLS handshake timed out")]
    Timeout,
}

/// A cluster's TLS origination settings.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Origination {
    /// Server name sent (and verified when `sans` is empty).
    pub sni: String,
    /// Accepted DNS or URI SANs of the server; empty = the SNI name.
    pub sans: Vec<String>,
    /// PEM file of trusted CAs.
    pub ca_certificates: String,
    /// PEM client chain and key (MUTUAL); empty = no client certificate.
    pub client_certificate: String,
    pub private_key: String,
    /// Accept any server certificate (signatures still checked).
    pub insecure_skip_verify: bool,
}

fn file_err(path: &str, e: impl std::fmt::Display) -> OriginationError {
    OriginationError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

impl Origination {
    /// Builds the client config from the files as they are now.
    fn config(&self) -> Result<ClientConfig, OriginationError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        if !self.ca_certificates.is_empty() {
            let path = &self.ca_certificates;
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_err(path, e))? {
                let cert = cert.map_err(|e| file_err(path, e))?;
                roots.add(cert).map_err(|e| file_err(path, e))?;
            }
        }
        if roots.is_empty() && !self.insecure_skip_verify {
            return Err(OriginationError::NoCa);
        }
        let verifier = ServerVerifier::with_names(
            Arc::new(roots),
            Names::Origin {
                sans: self.sans.clone(),
                skip: self.insecure_skip_verify,
            },
            Arc::clone(&provider),
        );
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(OriginationError::Config)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = if self.client_certificate.is_empty() {
            builder.with_no_client_auth()
        } else {
            let path = &self.client_certificate;
            let chain = CertificateDer::pem_file_iter(path)
                .map_err(|e| file_err(path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_err(path, e))?;
            let key_path = &self.private_key;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| file_err(key_path, e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(OriginationError::Config)?
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Runs the TLS handshake on `stream`.
    pub async fn connect(&self, stream: TcpStream) -> Result<Stream, OriginationError> {
        let config = self.config()?;
        let name = ServerName::try_from(self.sni.clone())
            .map_err(|_| OriginationError::BadSni(self.sni.clone()))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, stream))
            .await
            .map_err(|_| OriginationError::Timeout)?
            .map_err(OriginationError::Handshake)?;
        Ok(Stream::Client(Box::new(tls)))
    }
}
