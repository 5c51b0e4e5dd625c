//! Throwaway certificate authorities for the tests, made with rcgen.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A self-signed root that can sign leaves.
pub struct Ca {
    /// The root certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new root named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A serving certificate for `localhost` and 127.0.0.1: (cert PEM, key PEM).
    pub fn server(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A workload leaf for `spiffe_id`: (cert PEM, PKCS#8 key PEM).
    pub fn workload(&self, spiffe_id: &str, validity: Duration) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let cert = workload_params(spiffe_id, validity)
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Signs the key of `csr_pem` for `spiffe_id` (which a real CA would take
    /// from the CSR after checking the caller).
    pub fn sign_csr(&self, csr_pem: &str, spiffe_id: &str, validity: Duration) -> String {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        workload_params(spiffe_id, validity)
            .signed_by(&csr.public_key, &self.issuer)
            .unwrap()
            .pem()
    }
}

fn workload_params(spiffe_id: &str, validity: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = SystemTime::now();
    params.not_before = now.into();
    params.not_after = (now + validity).into();
    let mut serial = [0u8; 16];
    serial.iter_mut().for_each(|b| *b = fastrand::u8(..));
    serial[0] &= 0x7f;
    params.serial_number = Some(serial.to_vec().into());
    params
}
