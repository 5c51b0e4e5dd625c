//! One certificate request: a fresh P-256 key, a CSR for our SPIFFE ID, a
//! TLS call to the controller's certificate service, and checks on the answer.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData as _,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sluice_api::ca::CertificateRequest;
use sluice_api::ca::certificate_service_client::CertificateServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Certificate;

use super::{Credentials, IdentityError, parse};
use crate::config::CaSettings;
use crate::xds::channel::{self, ChannelError};

/// Bounds one TCP + TLS connect, so a black-holed address fails into backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds the whole call; signing is quick, a hung controller is not.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Asks the certificate service for certificates of one identity.
#[derive(Debug)]
pub(super) struct CaClient {
    address: String,
    root_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    validity_seconds: i64,
    spiffe_id: String,
}

impl CaClient {
    /// Checks the address; nothing is read or dialled yet.
    pub fn new(ca: &CaSettings, spiffe_id: String) -> Result<Self, IdentityError> {
        // A bare `host:port` means TLS: the service is never plaintext.
        let address = if ca.address.contains("://") {
            ca.address.clone()
        } else {
            format!("https://{}", ca.address)
        };
        // Checked now so a bad address fails at start, not at each request.
        channel::domain_of(&address).map_err(from_channel)?;
        Ok(Self {
            address,
            root_file: ca.root.clone(),
            token_file: ca.token_file.clone(),
            validity_seconds: i64::try_from(ca.ttl.as_secs()).unwrap_or(i64::MAX),
            spiffe_id,
        })
    }

    /// The identity certificates are requested for.
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// Requests, checks and returns a new certificate. `known_roots` (the
    /// current bundle) are trusted for the controller besides `--ca-root`, so
    /// a root rotation does not lock the proxy out.
    pub async fn request(
        &self,
        known_roots: &[CertificateDer<'static>],
    ) -> Result<Credentials, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(IdentityError::Csr)?;
        let csr = self.csr(&key)?;
        let mut request = tonic::Request::new(CertificateRequest {
            csr,
            validity_seconds: self.validity_seconds,
        });
        if let Some(header) = self.authorization().await? {
            request.metadata_mut().insert("authorization", header);
        }
        let channel = self.endpoint(known_roots).await?;
        let answer = CertificateServiceClient::new(channel)
            .create_certificate(request)
            .await
            .map_err(IdentityError::Rpc)?
            .into_inner();
        self.check(key, &answer.cert_chain, &answer.trust_bundle)
    }

    fn csr(&self, key: &KeyPair) -> Result<String, IdentityError> {
        let mut params = CertificateParams::default();
        // The SAN is the identity; a subject would only be ignored or refused.
        params.distinguished_name = DistinguishedName::new();
        let uri = self
            .spiffe_id
            .clone()
            .try_into()
            .map_err(IdentityError::Csr)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params
            .serialize_request(key)
            .and_then(|csr| csr.pem())
            .map_err(IdentityError::Csr)
    }

    /// `Bearer <token>`, read now: projected tokens are rotated on disk.
    async fn authorization(
        &self,
    ) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, IdentityError> {
        match &self.token_file {
            Some(path) => Ok(Some(channel::bearer(path).await.map_err(from_channel)?)),
            None => Ok(None),
        }
    }

    async fn endpoint(
        &self,
        known_roots: &[CertificateDer<'static>],
    ) -> Result<tonic::transport::Channel, IdentityError> {
        let mut anchors = Vec::new();
        if let Some(path) = &self.root_file {
            // Read per request: the file may be replaced when roots rotate.
            let text = channel::read_pem(path).await.map_err(from_channel)?;
            let what = path.display().to_string();
            for der in parse::certificates(&what, &text)? {
                anchors.push(to_pem(&der));
            }
        }
        anchors.extend(known_roots.iter().map(to_pem));
        if anchors.is_empty() {
            return Err(IdentityError::Empty {
                what: "--ca-root".to_owned(),
                kind: "root certificate",
            });
        }
        channel::tls_endpoint(&self.address, anchors)
            .map_err(from_channel)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .map_err(IdentityError::Connect)
    }

    /// Accepts an answer only for our identity, our key, and a chain that
    /// verifies against the bundle it came with.
    fn check(
        &self,
        key: KeyPair,
        chain_pem: &[String],
        bundle_pem: &[String],
    ) -> Result<Credentials, IdentityError> {
        let mut chain = Vec::new();
        for pem in chain_pem {
            chain.extend(parse::certificates(
                "cert_chain from the CA",
                pem.as_bytes(),
            )?);
        }
        let mut roots = Vec::new();
        for pem in bundle_pem {
            roots.extend(parse::certificates(
                "trust_bundle from the CA",
                pem.as_bytes(),
            )?);
        }
        let first = chain.first().ok_or_else(|| IdentityError::Empty {
            what: "cert_chain from the CA".to_owned(),
            kind: "certificate",
        })?;
        let leaf = parse::leaf("leaf from the CA", first)?;
        if leaf.spiffe_id != self.spiffe_id {
            return Err(IdentityError::WrongIdentity {
                got: leaf.spiffe_id,
                want: self.spiffe_id.clone(),
            });
        }
        if leaf.spki != key.subject_public_key_info() {
            return Err(IdentityError::WrongKey);
        }
        parse::verify_chain(&chain, &roots)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        parse::assemble("certificate from the CA", chain, der, roots)
    }
}

/// The certificate client's name for a shared channel failure.
fn from_channel(e: ChannelError) -> IdentityError {
    match e {
        ChannelError::Read { path, source } => IdentityError::Read { path, source },
        ChannelError::Token { path } => IdentityError::Token { path },
        ChannelError::Address { address, reason } => IdentityError::Address { address, reason },
        ChannelError::NoRoots { address } => IdentityError::Address {
            address,
            reason: "no roots to verify it".to_owned(),
        },
    }
}

fn to_pem(der: &CertificateDer<'_>) -> Certificate {
    Certificate::from_pem(pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
}
