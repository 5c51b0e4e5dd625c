use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::*;

#[test]
fn serving_cert_generated_names_loopback_and_service_ip() {
    let pki = Pki::generate().unwrap();
    let pem = pem::parse(&pki.serving_cert_pem).unwrap();
    let (_, cert) = X509Certificate::from_der(pem.contents()).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    let ips: Vec<&[u8]> = sans
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::IPAddress(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    assert!(ips.contains(&&[127, 0, 0, 1][..]));
    assert!(ips.contains(&&[10, 96, 0, 1][..]));
    assert!(
        sans.value.general_names.iter().any(
            |name| matches!(name, GeneralName::DNSName(dns) if *dns == "kubernetes.default.svc")
        )
    );
    let (_, ca) = X509Certificate::from_der(&pki.ca_der).unwrap();
    assert_eq!(cert.issuer(), ca.subject());
    assert!(ca.is_ca());
}

#[test]
fn token_generated_twice_differs() {
    let (a, b) = (token(), token());
    assert_eq!(a.len(), 40);
    assert_ne!(a, b);
}
