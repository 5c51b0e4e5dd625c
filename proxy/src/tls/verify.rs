//! Server certificate verification. The chain must lead to a trusted root
//! (webpki, expiry included); then, between sidecars, the leaf's SPIFFE URI
//! SAN must be one the cluster allows (the DNS name is not checked), and for
//! TLS origination the server name or the listed `subjectAltNames`.

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

/// Which names a verified chain must also carry.
#[derive(Debug)]
pub(super) enum Names {
    /// A peer sidecar: SPIFFE identities without "spiffe://"; empty = any the roots vouch for.
    Spiffe(Vec<String>),
    /// TLS origination: one of these DNS/URI SANs, or (empty) the SNI name;
    /// `skip` = `insecureSkipVerify`, nothing is checked.
    Origin { sans: Vec<String>, skip: bool },
}

/// Verifies a server certificate for the mesh or for TLS origination.
#[derive(Debug)]
pub(super) struct ServerVerifier {
    roots: Arc<RootCertStore>,
    names: Names,
    provider: Arc<CryptoProvider>,
}

/// The verifier between sidecars (kept under this name for the handshake bench).
pub(super) type SpiffeServerVerifier = ServerVerifier;

impl ServerVerifier {
    /// Between sidecars: `allowed` SPIFFE identities (empty = any).
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        allowed: Vec<String>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self::with_names(roots, Names::Spiffe(allowed), provider)
    }

    /// With any name policy.
    pub(super) fn with_names(
        roots: Arc<RootCertStore>,
        names: Names,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        ServerVerifier {
            roots,
            names,
            provider,
        }
    }
}

/// DNS names and URIs a certificate is issued for.
fn subject_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::URI(u) => Some((*u).to_owned()),
            _ => None,
        })
        .collect()
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if matches!(self.names, Names::Origin { skip: true, .. }) {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let not_valid = Error::InvalidCertificate(CertificateError::NotValidForName);
        match &self.names {
            Names::Spiffe(allowed) => {
                let id = spiffe_id(end_entity).ok_or(not_valid.clone())?;
                let bare = id.strip_prefix("spiffe://").unwrap_or(&id);
                if !allowed.is_empty() && !allowed.iter().any(|a| a == bare) {
                    tracing::debug!(peer = %id, ?allowed, "server identity not allowed");
                    return Err(not_valid);
                }
            }
            Names::Origin { sans, .. } if sans.is_empty() => {
                rustls::client::verify_server_name(&cert, server_name)?;
            }
            Names::Origin { sans, .. } => {
                let names = subject_names(end_entity);
                if !sans
                    .iter()
                    .any(|want| names.iter().any(|n| n.eq_ignore_ascii_case(want)))
                {
                    return Err(not_valid);
                }
            }
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
