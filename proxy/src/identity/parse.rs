//! PEM and X.509 handling shared by mounted files and CA answers: decoding,
//! reading the leaf's identity and validity, and checking the chain.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use x509_parser::extensions::GeneralName;

use super::{Credentials, IdentityError};

/// What the proxy needs to know about its leaf certificate.
#[derive(Debug)]
pub(super) struct Leaf {
    pub spiffe_id: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SubjectPublicKeyInfo, DER; compared with the key we generated.
    pub spki: Vec<u8>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in `text`; at least one.
pub(super) fn certificates(
    what: &str,
    text: &[u8],
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| IdentityError::Pem {
            what: what.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(IdentityError::Empty {
            what: what.to_owned(),
            kind: "certificate",
        });
    }
    for cert in &certs {
        // Reject garbage inside valid PEM armour here, where the file is named.
        x509_parser::parse_x509_certificate(cert).map_err(|e| IdentityError::Certificate {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// The first private key in `text` (PKCS#8, SEC1 or PKCS#1).
pub(super) fn private_key(
    what: &str,
    text: &[u8],
) -> Result<PrivateKeyDer<'static>, IdentityError> {
    PrivateKeyDer::from_pem_slice(text).map_err(|source| match source {
        pem::Error::NoItemsFound => IdentityError::Empty {
            what: what.to_owned(),
            kind: "private key",
        },
        source => IdentityError::Pem {
            what: what.to_owned(),
            source,
        },
    })
}

/// Reads identity, validity and public key out of a leaf certificate.
pub(super) fn leaf(what: &str, cert: &CertificateDer<'_>) -> Result<Leaf, IdentityError> {
    let bad = |reason: String| IdentityError::Certificate {
        what: what.to_owned(),
        reason,
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| bad(e.to_string()))?;
    let sans = parsed
        .subject_alternative_name()
        .map_err(|e| bad(e.to_string()))?;
    let spiffe_id = sans
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .find_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
            _ => None,
        })
        .ok_or_else(|| IdentityError::NoSpiffeId {
            what: what.to_owned(),
        })?;
    let validity = parsed.validity();
    Ok(Leaf {
        spiffe_id,
        not_before: from_unix(validity.not_before.timestamp()),
        not_after: from_unix(validity.not_after.timestamp()),
        spki: parsed.public_key().raw.to_vec(),
    })
}

fn from_unix(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

/// Builds credentials after checking that `key` belongs to the leaf and that
/// rustls can sign with it; `what` names the source in errors.
pub(super) fn assemble(
    what: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Vec<CertificateDer<'static>>,
) -> Result<Credentials, IdentityError> {
    let first = chain.first().ok_or_else(|| IdentityError::Empty {
        what: what.to_owned(),
        kind: "certificate",
    })?;
    let leaf = leaf(what, first)?;
    if roots.is_empty() {
        return Err(IdentityError::Empty {
            what: what.to_owned(),
            kind: "root certificate",
        });
    }
    // The TLS code will do exactly this per handshake; failing here keeps a
    // bad key out of the channel instead of failing every connection.
    CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(|source| {
        IdentityError::Key {
            what: what.to_owned(),
            source,
        }
    })?;
    Ok(Credentials {
        spiffe_id: leaf.spiffe_id,
        chain,
        key,
        roots,
        not_before: leaf.not_before,
        not_after: leaf.not_after,
    })
}

/// Checks that the chain leads from the leaf to one of `roots` and is valid
/// now, as a peer will check it (signatures, CA flags, validity, EKU).
pub(super) fn verify_chain(
    chain: &[CertificateDer<'static>],
    roots: &[CertificateDer<'static>],
) -> Result<(), IdentityError> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(IdentityError::Untrusted)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .map_err(|e| IdentityError::Untrusted(rustls::Error::General(e.to_string())))?;
    let (leaf, intermediates) = chain.split_first().ok_or(IdentityError::Empty {
        what: "certificate chain".to_owned(),
        kind: "certificate",
    })?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map_err(IdentityError::Untrusted)?;
    Ok(())
}
