use super::*;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

fn csr_for(uri: &str, alg: &'static rcgen::SignatureAlgorithm) -> String {
    let key = KeyPair::generate_for(alg).expect("key");
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri.to_string().try_into().expect("uri"))];
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn der(pem_text: &str) -> Vec<u8> {
    ::pem::parse(pem_text).expect("pem").into_contents()
}

fn uri_sans(cert_der: &[u8]) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(cert_der).expect("x509");
    cert.subject_alternative_name()
        .expect("san ext")
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn issued_by(child_der: &[u8], parent_der: &[u8]) -> bool {
    let (_, child) = X509Certificate::from_der(child_der).expect("child");
    let (_, parent) = X509Certificate::from_der(parent_der).expect("parent");
    child.verify_signature(Some(parent.public_key())).is_ok()
}

#[test]
fn root_created_once_kept_and_key_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let first =
        CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").expect("ca");
    let again =
        CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").expect("ca");
    assert_eq!(first.roots(), again.roots());
    let mode = std::fs::metadata(dir.path().join("ca/root-key.pem"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn sign_workload_csr_for_own_identity_issues_spiffe_cert() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").expect("ca");
    let me = SpiffeId::new("cluster.local", "default", "reviews");
    let csr = csr_for(&me.to_string(), &rcgen::PKCS_ECDSA_P256_SHA256);
    let issued = ca
        .sign_workload(&csr, &me, Duration::from_secs(3600))
        .expect("signed");
    assert_eq!(issued.chain.len(), 1);
    let leaf = der(&issued.chain[0]);
    assert_eq!(
        uri_sans(&leaf),
        ["spiffe://cluster.local/ns/default/sa/reviews"]
    );
    assert!(issued_by(&leaf, &der(&issued.trust_bundle[0])));
    let (_, cert) = X509Certificate::from_der(&leaf).expect("x509");
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert!((3600..=3600 + 120).contains(&lifetime), "{lifetime}");
    assert!(!cert.is_ca());
}

#[test]
fn sign_workload_other_identity_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").expect("ca");
    let me = SpiffeId::new("cluster.local", "default", "reviews");
    let csr = csr_for(
        "spiffe://cluster.local/ns/default/sa/frontend",
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let err = ca
        .sign_workload(&csr, &me, DEFAULT_WORKLOAD_TTL)
        .expect_err("refused");
    assert!(matches!(err, CaError::WrongIdentity { .. }), "{err}");
    assert!(err.to_string().contains("sa/frontend"), "{err}");
}

#[test]
fn sign_workload_wrong_key_type_or_garbage_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let ca = CertificateAuthority::load_or_create(dir.path(), None, "cluster.local").expect("ca");
    let me = SpiffeId::new("cluster.local", "default", "reviews");
    let p384 = csr_for(&me.to_string(), &rcgen::PKCS_ECDSA_P384_SHA384);
    assert!(matches!(
        ca.sign_workload(&p384, &me, DEFAULT_WORKLOAD_TTL),
        Err(CaError::BadCsr(_))
    ));
    assert!(matches!(
        ca.sign_workload(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            &me,
            DEFAULT_WORKLOAD_TTL
        ),
        Err(CaError::BadCsr(_))
    ));
}

#[test]
fn plugin_ca_signs_with_intermediate_and_trusts_root() {
    let dir = tempfile::tempdir().expect("tmp");
    // An operator's root and intermediate, in Istio's plug-in layout.
    let root_key = KeyPair::generate().expect("key");
    let mut root = CertificateParams::default();
    root.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root_cert = root.self_signed(&root_key).expect("root");
    let inter_key = KeyPair::generate().expect("key");
    let mut inter = CertificateParams::default();
    inter.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    inter.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root_issuer = Issuer::new(root.clone(), &root_key);
    let inter_cert = inter
        .signed_by(&inter_key, &root_issuer)
        .expect("intermediate");
    let p = dir.path();
    std::fs::write(p.join("ca-cert.pem"), inter_cert.pem()).expect("w");
    std::fs::write(p.join("ca-key.pem"), inter_key.serialize_pem()).expect("w");
    std::fs::write(p.join("root-cert.pem"), root_cert.pem()).expect("w");
    std::fs::write(
        p.join("cert-chain.pem"),
        format!("{}{}", inter_cert.pem(), root_cert.pem()),
    )
    .expect("w");
    let ca = CertificateAuthority::load_or_create(&p.join("state"), Some(p), "cluster.local")
        .expect("plug-in ca");
    let me = SpiffeId::new("cluster.local", "prod", "orders");
    let csr = csr_for(&me.to_string(), &rcgen::PKCS_ECDSA_P256_SHA256);
    let issued = ca
        .sign_workload(&csr, &me, DEFAULT_WORKLOAD_TTL)
        .expect("signed");
    assert_eq!(issued.chain.len(), 2, "leaf + intermediate, root left out");
    assert!(issued_by(&der(&issued.chain[0]), &der(&issued.chain[1])));
    assert!(issued_by(
        &der(&issued.chain[1]),
        &der(&issued.trust_bundle[0])
    ));
}

#[test]
fn plugin_ca_incomplete_names_missing_file() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("ca-cert.pem"), "x").expect("w");
    let err = CertificateAuthority::load_or_create(dir.path(), Some(dir.path()), "cluster.local")
        .err()
        .expect("refused");
    assert!(err.to_string().contains("missing ca-key.pem"), "{err}");
}

#[test]
fn tokens_prove_exactly_their_identity() {
    let tokens = BootstrapTokens::from_secret(b"secret");
    let t = tokens.issue("default", "reviews");
    assert_eq!(tokens.verify(&t), Ok(("default".into(), "reviews".into())));
    let forged = t.replace("reviews", "frontend");
    assert_eq!(tokens.verify(&forged), Err(InvalidToken::BadSignature));
    let other = BootstrapTokens::from_secret(b"another controller");
    assert_eq!(other.verify(&t), Err(InvalidToken::BadSignature));
    assert_eq!(tokens.verify("garbage"), Err(InvalidToken::Malformed));
}

#[test]
fn spiffe_id_round_trips_and_rejects_other_forms() {
    let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/frontend").expect("parses");
    assert_eq!(id, SpiffeId::new("cluster.local", "default", "frontend"));
    assert_eq!(
        id.to_string(),
        "spiffe://cluster.local/ns/default/sa/frontend"
    );
    for bad in [
        "cluster.local/ns/default/sa/x",
        "spiffe://td/ns//sa/x",
        "spiffe://td/sa/x/ns/y",
    ] {
        assert!(SpiffeId::parse(bad).is_err(), "{bad}");
    }
}
