//! The mesh's certificate authority: a root kept in the state folder (or a
//! user-supplied CA in Istio's plug-in layout) that signs workload
//! certificates carrying SPIFFE identities.

pub mod authn;
mod identity;
pub mod secret;
pub mod service;
#[cfg(test)]
mod tests;
mod token;

pub use authn::{Authenticator, AuthnError};
pub use identity::{InvalidSpiffeId, SpiffeId};
pub use service::CertificateServer;
pub use token::{BootstrapTokens, InvalidToken};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default lifetime of a workload certificate (Istio's).
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest lifetime the CA signs.
pub const MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Lifetime of a root the controller creates.
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why the CA could not start or sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A plug-in CA folder misses files.
    #[error(
        "{dir}: a plug-in CA needs ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem; missing {missing}"
    )]
    IncompletePlugin {
        /// The folder.
        dir: PathBuf,
        /// The first missing file.
        missing: &'static str,
    },
    /// Key or certificate material does not parse.
    #[error("{what}: {source}")]
    Material {
        /// Which file or item.
        what: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// The CSR does not parse or its signature is wrong.
    #[error("invalid CSR: {0}")]
    BadCsr(String),
    /// The CSR asks for an identity the caller does not own.
    #[error("the CSR asks for {asked}, but the caller is {caller}")]
    WrongIdentity {
        /// What the CSR names.
        asked: String,
        /// Who the caller proved to be.
        caller: String,
    },
    /// Signing failed.
    #[error("signing: {0}")]
    Sign(#[source] rcgen::Error),
}

/// A signed workload certificate.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// Leaf first, then intermediates (PEM each).
    pub chain: Vec<String>,
    /// Roots to trust (PEM each).
    pub trust_bundle: Vec<String>,
}

/// Signs workload certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The signing certificate and its chain up to (excluding) the root.
    intermediates: Vec<String>,
    roots: Vec<String>,
    trust_domain: String,
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CaError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)
}

/// Splits a PEM bundle into its certificates.
fn split_pem(bundle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in bundle.lines() {
        if line.starts_with("-----BEGIN") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

impl CertificateAuthority {
    /// Loads a plug-in CA from `plugin` when given, else the root kept in
    /// `state_dir/ca/`, creating it on first start.
    pub fn load_or_create(
        state_dir: &Path,
        plugin: Option<&Path>,
        trust_domain: &str,
    ) -> Result<Self, CaError> {
        match plugin {
            Some(dir) => Self::load_plugin(dir, trust_domain),
            None => Self::load_or_create_root(&state_dir.join("ca"), trust_domain),
        }
    }

    /// Istio's plug-in layout: `ca-cert.pem` signs, `ca-key.pem` is its key,
    /// `cert-chain.pem` is its chain, `root-cert.pem` the root(s) to trust.
    fn load_plugin(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        for missing in [
            "ca-cert.pem",
            "ca-key.pem",
            "root-cert.pem",
            "cert-chain.pem",
        ] {
            if !dir.join(missing).is_file() {
                return Err(CaError::IncompletePlugin {
                    dir: dir.to_owned(),
                    missing,
                });
            }
        }
        let cert = read(&dir.join("ca-cert.pem"))?;
        let key = read(&dir.join("ca-key.pem"))?;
        let chain = read(&dir.join("cert-chain.pem"))?;
        let roots = split_pem(&read(&dir.join("root-cert.pem"))?);
        Self::from_parts(&cert, &key, split_pem(&chain), roots, trust_domain)
    }

    fn load_or_create_root(dir: &Path, trust_domain: &str) -> Result<Self, CaError> {
        let cert_path = dir.join("root-cert.pem");
        let key_path = dir.join("root-key.pem");
        if cert_path.is_file() && key_path.is_file() {
            let cert = read(&cert_path)?;
            let key = read(&key_path)?;
            let mut roots = split_pem(&cert);
            // A second root kept beside the first during a rotation.
            let extra = dir.join("extra-roots.pem");
            if extra.is_file() {
                roots.extend(split_pem(&read(&extra)?));
            }
            let signing = split_pem(&cert);
            return Self::from_parts(&cert, &key, signing, roots, trust_domain);
        }
        let key = KeyPair::generate().map_err(|source| CaError::Material {
            what: "root key".into(),
            source,
        })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, trust_domain);
        dn.push(DnType::CommonName, "Sluice root CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + ROOT_TTL;
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|source| CaError::Material {
                what: "root certificate".into(),
                source,
            })?;
        let cert_pem = cert.pem();
        write_private(&key_path, &key.serialize_pem())?;
        write_private(&cert_path, &cert_pem)?;
        tracing::info!(path = %cert_path.display(), "created a new mesh root certificate");
        let roots = vec![cert_pem.clone()];
        Self::from_parts(
            &cert_pem,
            &key.serialize_pem(),
            roots.clone(),
            roots,
            trust_domain,
        )
    }

    fn from_parts(
        cert_pem: &str,
        key_pem: &str,
        chain: Vec<String>,
        roots: Vec<String>,
        trust_domain: &str,
    ) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| CaError::Material {
            what: "CA key".into(),
            source,
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|source| CaError::Material {
                what: "CA certificate".into(),
                source,
            })?;
        // The chain a workload presents stops below the root the peer already has.
        let intermediates = chain.into_iter().filter(|c| !roots.contains(c)).collect();
        Ok(Self {
            issuer,
            intermediates,
            roots,
            trust_domain: trust_domain.to_owned(),
        })
    }

    /// Trust domain of the identities this CA signs.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// Roots to trust (PEM each).
    pub fn roots(&self) -> &[String] {
        &self.roots
    }

    /// Signs `csr_pem` for `caller`: the CSR must name exactly that SPIFFE
    /// identity and nothing else, with an ECDSA P-256 key.
    pub fn sign_workload(
        &self,
        csr_pem: &str,
        caller: &SpiffeId,
        ttl: Duration,
    ) -> Result<IssuedCertificate, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::BadCsr(e.to_string()))?;
        if csr.public_key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::BadCsr("the key must be ECDSA P-256".into()));
        }
        let asked: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|san| match san {
                SanType::URI(uri) => uri.as_str().to_owned(),
                other => format!("{other:?}"),
            })
            .collect();
        let wanted = caller.to_string();
        if asked != [wanted.clone()] {
            return Err(CaError::WrongIdentity {
                asked: if asked.is_empty() {
                    "no identity".into()
                } else {
                    asked.join(", ")
                },
                caller: wanted,
            });
        }
        let ttl = ttl.min(MAX_WORKLOAD_TTL);
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        let uri = wanted
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| CaError::BadCsr(e.to_string()))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        // A little slack for clocks that disagree.
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + ttl;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(CaError::Sign)?;
        let mut chain = vec![cert.pem()];
        chain.extend(self.intermediates.iter().cloned());
        Ok(IssuedCertificate {
            chain,
            trust_bundle: self.roots.clone(),
        })
    }

    /// A serving certificate for the controller itself (DNS names and IPs).
    pub fn sign_server(
        &self,
        names: &[String],
        ips: &[std::net::IpAddr],
    ) -> Result<(Vec<String>, String), CaError> {
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(CaError::Sign)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + DEFAULT_WORKLOAD_TTL * 30;
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Sign)?;
        let mut chain = vec![cert.pem()];
        chain.extend(self.intermediates.iter().cloned());
        Ok((chain, key.serialize_pem()))
    }
}

fn random_serial() -> SerialNumber {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    // Serial numbers must be positive: clear the top bit.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}
