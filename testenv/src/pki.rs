//! The certificates, keys and tokens one control plane runs with, generated
//! fresh for every environment so no secret is committed or shared.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// The first address of `--service-cluster-ip-range`, which the API server
/// gives the `kubernetes` Service and so must be in its certificate.
pub(crate) const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// Names in the API server's serving certificate: how tests reach it and how
/// in-cluster clients would.
const SERVING_DNS_NAMES: &[&str] = &[
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// Generated PKI material, in memory.
pub(crate) struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER (for the readiness probe's root store).
    pub ca_der: Vec<u8>,
    serving_cert_pem: String,
    serving_key_pem: String,
    sa_key_pem: String,
    sa_public_pem: String,
}

/// Where [`Pki::write`] put each file.
pub(crate) struct PkiFiles {
    pub ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_public: PathBuf,
}

impl Pki {
    /// Generates a CA, a serving certificate for the API server signed by
    /// it, and an ECDSA P-256 service-account signing key.
    pub(crate) fn generate() -> Result<Pki, Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice-testenv-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, &ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(
            SERVING_DNS_NAMES
                .iter()
                .map(|name| name.to_string())
                .collect::<Vec<_>>(),
        )?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(SERVICE_IP)));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let sa_key = KeyPair::generate()?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().to_vec(),
            serving_cert_pem: serving_cert.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            sa_public_pem: sa_key.public_key_pem(),
            sa_key_pem: sa_key.serialize_pem(),
        })
    }

    /// Writes every file into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Result<PkiFiles, Error> {
        let files = PkiFiles {
            ca: dir.join("ca.crt"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            sa_key: dir.join("sa.key"),
            sa_public: dir.join("sa.pub"),
        };
        for (path, contents) in [
            (&files.ca, &self.ca_pem),
            (&files.serving_cert, &self.serving_cert_pem),
            (&files.serving_key, &self.serving_key_pem),
            (&files.sa_key, &self.sa_key_pem),
            (&files.sa_public, &self.sa_public_pem),
        ] {
            std::fs::write(path, contents)
                .map_err(Error::io(format!("writing {}", path.display())))?;
        }
        Ok(files)
    }
}

/// A random bearer token.
pub(crate) fn token() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests;
