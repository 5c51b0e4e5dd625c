use super::certs::{self, CertError};
use super::cluster::{self, MIN_VERSION};
use super::crds::{self, Expected};
use super::proxies::{self, ProxySync};
use super::report::{Category, Outcome, Report};
use super::webhook::endpoints::{self, Target};
use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::version::Info;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

fn info(major: &str, minor: &str) -> Info {
    Info {
        major: major.into(),
        minor: minor.into(),
        git_version: format!("v{major}.{minor}"),
        ..Default::default()
    }
}

#[test]
fn parse_version_with_provider_suffix_reads_minor() {
    assert_eq!(cluster::parse_version(&info("1", "29+")), Some((1, 29)));
    assert_eq!(cluster::parse_version(&info("1", "")), None);
}

#[test]
fn version_below_minimum_fails_and_at_minimum_passes() {
    let old = cluster::version(&info("1", "28"));
    assert_eq!(old.checks[0].result, Outcome::Error);
    assert!(
        old.checks[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("v1.28")
    );
    let min = format!("{}", MIN_VERSION.1);
    assert_eq!(
        cluster::version(&info("1", &min)).checks[0].result,
        Outcome::Success
    );
}

#[test]
fn expected_crds_cover_every_kind_with_generated_names() {
    let expected = crds::expected();
    assert_eq!(expected.len(), sluice_control_plane::resource::KINDS.len());
    let vs = expected
        .iter()
        .find(|e| e.kind == "VirtualService")
        .expect("VirtualService");
    assert_eq!(vs.name, "virtualservices.networking.istio.io");
    let ap = expected
        .iter()
        .find(|e| e.kind == "AuthorizationPolicy")
        .expect("AuthorizationPolicy");
    assert_eq!(ap.name, "authorizationpolicies.security.istio.io");
}

/// The generated CRD of `kind`, as `kubectl apply -f crds/` installs it,
/// with the status an API server gives it once Established.
fn installed(kind: &str) -> (Expected, CustomResourceDefinition) {
    let expected = crds::expected()
        .into_iter()
        .find(|e| e.kind == kind)
        .expect("kind");
    let yaml = sluice_control_plane::crd::crd_documents()
        .into_iter()
        .find(|(file, _)| file.starts_with(&expected.name))
        .expect("generated CRD")
        .1;
    let mut crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).expect("CRD yaml");
    crd.status = Some(
        serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Established", "status": "True"}]
        }))
        .expect("status"),
    );
    (expected, crd)
}

#[test]
fn crd_problems_generated_and_established_none() {
    let (expected, crd) = installed("VirtualService");
    assert_eq!(crds::problems(&expected, &crd), Vec::<String>::new());
}

#[test]
fn crd_problems_unserved_version_names_it() {
    let (expected, mut crd) = installed("VirtualService");
    for v in &mut crd.spec.versions {
        if v.name == "v1beta1" {
            v.served = false;
        }
    }
    crd.spec.versions.retain(|v| v.name != "v1alpha3");
    let found = crds::problems(&expected, &crd);
    assert_eq!(found, vec!["does not serve versions v1beta1, v1alpha3"]);
}

#[test]
fn crd_problems_not_established_says_so() {
    let (expected, mut crd) = installed("RateLimitPolicy");
    crd.status = None;
    assert_eq!(
        crds::problems(&expected, &crd),
        vec!["is not Established yet"]
    );
}

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    Pki {
        ca_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

fn leaf(pki: &Pki, dns: &str) -> rustls::pki_types::CertificateDer<'static> {
    let params = CertificateParams::new(vec![dns.to_owned()]).expect("params");
    let key = KeyPair::generate().expect("key");
    params
        .signed_by(&key, &pki.issuer)
        .expect("signed")
        .der()
        .clone()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[test]
fn parse_bundle_garbage_has_no_certificate() {
    let err = certs::parse_bundle(b"garbage", now()).expect_err("garbage");
    assert!(matches!(err, CertError::NoCertificate), "{err}");
}

#[test]
fn parse_bundle_expired_certificate_fails_naming_expiry() {
    let mut params = CertificateParams::new(vec!["old".to_owned()]).expect("params");
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let key = KeyPair::generate().expect("key");
    let pem = params.self_signed(&key).expect("cert").pem();
    let err = certs::parse_bundle(pem.as_bytes(), now()).expect_err("expired");
    assert!(err.to_string().contains("expired at"), "{err}");
}

#[test]
fn verify_serving_cert_from_bundle_ca_for_service_name_passes() {
    let pki = ca("mesh root");
    let bundle = certs::parse_bundle(pki.ca_pem.as_bytes(), now()).expect("bundle");
    let name = "sluice-controller.sluice-system.svc";
    certs::verify(&bundle, &[leaf(&pki, name)], name).expect("verifies");
    let wrong_name = certs::verify(&bundle, &[leaf(&pki, "other.svc")], name);
    assert!(wrong_name.is_err());
    let other = ca("another root");
    let err = certs::verify(&bundle, &[leaf(&other, name)], name).expect_err("other CA");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

#[test]
fn bundle_contains_root_only_when_same_certificate() {
    let pki = ca("mesh root");
    let bundle = certs::parse_bundle(pki.ca_pem.as_bytes(), now()).expect("bundle");
    assert!(certs::bundle_contains(&bundle, pki.ca_pem.as_bytes()));
    assert!(!certs::bundle_contains(&bundle, ca("x").ca_pem.as_bytes()));
}

fn sync(sent: Option<&str>, acked: Option<&str>) -> ProxySync {
    ProxySync {
        id: "reviews-1.shop".into(),
        version_sent: sent.map(Into::into),
        version_acked: acked.map(Into::into),
        last_nack: None,
    }
}

#[test]
fn not_synced_follows_sent_and_acked_versions() {
    assert_eq!(proxies::not_synced(&sync(Some("3"), Some("3"))), None);
    assert!(
        proxies::not_synced(&sync(None, None))
            .unwrap_or_default()
            .starts_with("NOT SENT")
    );
    assert!(
        proxies::not_synced(&sync(Some("4"), Some("3")))
            .unwrap_or_default()
            .starts_with("STALE")
    );
}

#[test]
fn cert_expiry_reads_gauge_with_or_without_labels() {
    let plain = "# HELP x\nsluice_certificate_expiration_timestamp_seconds 1700000000\n";
    assert_eq!(proxies::cert_expiry(plain), Some(1_700_000_000));
    let labelled = "sluice_certificate_expiration_timestamp_seconds{a=\"b c\"} 12\n";
    assert_eq!(proxies::cert_expiry(labelled), Some(12));
    assert_eq!(proxies::cert_expiry("other 1\n"), None);
}

#[test]
fn addresses_skip_unready_endpoints_and_other_ports() {
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "s"},
        "addressType": "IPv4",
        "ports": [{"name": "https-webhook", "port": 15017}, {"name": "http-metrics", "port": 15014}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
            {"addresses": ["10.0.0.3"]}
        ]
    }))
    .expect("slice");
    let addrs = endpoints::addresses(&[slice], "https-webhook");
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.1:15017", "10.0.0.3:15017"]);
}

#[test]
fn target_of_service_names_svc_domain() {
    let config: WebhookClientConfig = serde_json::from_value(serde_json::json!({
        "service": {"name": "sluice-controller", "namespace": "mesh"}
    }))
    .expect("config");
    let target = Target::of(&config).expect("target");
    assert_eq!(target.server_name(), "sluice-controller.mesh.svc");
    let url: WebhookClientConfig =
        serde_json::from_value(serde_json::json!({"url": "https://127.0.0.1:9443/inject"}))
            .expect("config");
    assert_eq!(
        Target::of(&url),
        Some(Target::Url {
            host: "127.0.0.1".into(),
            addr: Some("127.0.0.1:9443".parse().expect("addr")),
        })
    );
}

#[test]
fn report_with_failure_renders_hint_and_fails() {
    let mut ok = Category::new("kubernetes-api");
    ok.pass("can query the Kubernetes API");
    let mut bad = Category::new("sluice-crds");
    bad.fail(
        "CRD x is installed",
        "CRD x is not installed",
        "kubectl apply -f crds/",
    );
    bad.warn("y", "unknown", "look");
    let report = Report::new(vec![ok, bad]);
    assert!(!report.success);
    let text = report.render();
    assert!(text.contains("√ can query the Kubernetes API\n"), "{text}");
    assert!(
        text.contains(
            "× CRD x is installed\n    CRD x is not installed\n    see: kubectl apply -f crds/\n"
        ),
        "{text}"
    );
    assert!(text.contains("‼ y\n"), "{text}");
    assert!(
        text.ends_with("Status check results are × (1 passed, 1 warning, 1 failed)\n"),
        "{text}"
    );
}
