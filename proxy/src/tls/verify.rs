//! Server certificate verification between sidecars: the chain must lead to a
//! mesh root (webpki, expiry included), and the leaf's SPIFFE URI SAN must be
//! one the cluster allows. The DNS name of the server is not checked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use x509_parser::extensions::GeneralName;

/// The `spiffe://` URI SAN of a certificate, if it has one.
pub fn spiffe_id(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) if u.starts_with("spiffe://") => Some((*u).to_owned()),
        _ => None,
    })
}

/// Verifies a peer sidecar's server certificate.
#[derive(Debug)]
pub(super) struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    /// Allowed identities without "spiffe://"; empty = any the roots vouch for.
    allowed: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        allowed: Vec<String>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        SpiffeServerVerifier {
            roots,
            allowed,
            provider,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = spiffe_id(end_entity)
            .ok_or(Error::InvalidCertificate(CertificateError::NotValidForName))?;
        let bare = id.strip_prefix("spiffe://").unwrap_or(&id);
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a == bare) {
            tracing::debug!(peer = %id, allowed = ?self.allowed, "server identity not allowed");
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
