//! Certificates the webhook checks look at: the PEM `caBundle` of a webhook
//! configuration, the serving chain the controller presents over TLS, and
//! whether the one verifies the other as the API server would.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a certificate or chain is not usable.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Not one PEM `CERTIFICATE` block.
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// A PEM block that is not a readable X.509 certificate.
    #[error("certificate {index} is not valid X.509: {reason}")]
    Unreadable { index: usize, reason: String },
    /// Past its `notAfter`.
    #[error("certificate {subject} expired at {not_after}")]
    Expired { subject: String, not_after: String },
    /// Before its `notBefore`.
    #[error("certificate {subject} is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    /// The TLS connection to the webhook failed.
    #[error("TLS to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The serving chain does not verify against the bundle.
    #[error("the serving certificate is not trusted by caBundle for {name}: {reason}")]
    Untrusted { name: String, reason: String },
}

/// One readable certificate of a bundle.
#[derive(Clone, Debug)]
pub struct BundleCert {
    /// Subject distinguished name.
    pub subject: String,
    /// End of validity (Unix seconds).
    pub not_after: i64,
    /// End of validity as printed.
    pub not_after_text: String,
    /// The DER bytes.
    pub der: CertificateDer<'static>,
}

/// Every certificate of a PEM bundle, each readable and valid at `now`
/// (Unix seconds).
pub fn parse_bundle(pem: &[u8], now: i64) -> Result<Vec<BundleCert>, CertError> {
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Unreadable {
            index: 0,
            reason: e.to_string(),
        })?;
    if ders.is_empty() {
        return Err(CertError::NoCertificate);
    }
    ders.into_iter()
        .enumerate()
        .map(|(index, der)| {
            let (_, cert) =
                x509_parser::parse_x509_certificate(&der).map_err(|e| CertError::Unreadable {
                    index,
                    reason: e.to_string(),
                })?;
            let subject = cert.subject().to_string();
            let validity = cert.validity();
            if validity.not_after.timestamp() < now {
                return Err(CertError::Expired {
                    subject,
                    not_after: validity.not_after.to_string(),
                });
            }
            if validity.not_before.timestamp() > now {
                return Err(CertError::NotYetValid {
                    subject,
                    not_before: validity.not_before.to_string(),
                });
            }
            Ok(BundleCert {
                subject,
                not_after: validity.not_after.timestamp(),
                not_after_text: validity.not_after.to_string(),
                der: der.clone(),
            })
        })
        .collect()
}

/// Whether `root_pem` (e.g. the mesh root kept in a Secret) is one of `bundle`.
pub fn bundle_contains(bundle: &[BundleCert], root_pem: &[u8]) -> bool {
    CertificateDer::pem_slice_iter(root_pem)
        .filter_map(Result::ok)
        .any(|root| bundle.iter().any(|b| b.der == root))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies `chain` (leaf first) for `name` against the roots of `bundle`,
/// as the API server does when it calls the webhook.
pub fn verify(
    bundle: &[BundleCert],
    chain: &[CertificateDer<'_>],
    name: &str,
) -> Result<(), CertError> {
    let untrusted = |reason: String| CertError::Untrusted {
        name: name.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in bundle {
        roots
            .add(cert.der.clone())
            .map_err(|e| untrusted(format!("caBundle certificate {}: {e}", cert.subject)))?;
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| untrusted(e.to_string()))?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| untrusted("the server sent no certificate".into()))?;
    let server = ServerName::try_from(name.to_owned()).map_err(|e| untrusted(e.to_string()))?;
    verifier
        .verify_server_cert(leaf, intermediates, &server, &[], UnixTime::now())
        .map(drop)
        .map_err(|e| untrusted(e.to_string()))
}

/// The chain `addr` presents for `name`, read in a TLS handshake that
/// accepts any certificate: [`verify`] then says precisely why it is (not)
/// trusted, which a failed handshake would not. Nothing is sent over it.
pub async fn fetch_chain(
    addr: SocketAddr,
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let fail = |reason: String| CertError::Connect { addr, reason };
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let server = ServerName::try_from(name.to_owned()).map_err(|e| fail(e.to_string()))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| fail(e.to_string()))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server, tcp)
            .await
            .map_err(|e| fail(e.to_string()))
    };
    let tls = tokio::time::timeout(super::REQUEST_TIMEOUT, handshake)
        .await
        .map_err(|_| fail(format!("no handshake within {:?}", super::REQUEST_TIMEOUT)))??;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default())
}

/// Accepts any chain (checked later by [`verify`]), still checking that
/// the server holds the key of the certificate it sent.
#[derive(Debug)]
struct ReadOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
