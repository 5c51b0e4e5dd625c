//! The real controller binary in Kubernetes mode signs certificates for
//! proxies that present projected ServiceAccount tokens, checked with the
//! real API server's TokenReview (`sluice-testenv`), over real TLS gRPC.

use sluice_api::ca::certificate_service_client::CertificateServiceClient;
use sluice_api::ca::{CertificateRequest, CertificateResponse};
use sluice_testenv::TestEnv;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Controller, install_crds, kubectl};
use tonic::transport::Channel;

#[path = "support.rs"]
mod support;

/// The controller, once its TLS listener (started with the first
/// configuration) accepts connections.
async fn start_controller(kubeconfig: &Path) -> Controller {
    let c = Controller::start(kubeconfig, &["--webhook-listen", "off"]).await;
    c.wait_listening(c.secure).await;
    c
}

fn csr_for(uri: &str) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        uri.to_string().try_into().expect("uri"),
    )];
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

async fn ask(
    client: &mut CertificateServiceClient<Channel>,
    uri: &str,
    token: &str,
) -> Result<CertificateResponse, tonic::Status> {
    let mut req = tonic::Request::new(CertificateRequest {
        csr: csr_for(uri),
        validity_seconds: 3600,
    });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    client.create_certificate(req).await.map(|r| r.into_inner())
}

fn uri_sans(pem_text: &str) -> Vec<String> {
    let leaf = pem::parse(pem_text).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.contents()).expect("x509");
    let sans = cert
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    sans.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

async fn sa_token(env: &TestEnv, sa: &str, audience: &str) -> String {
    kubectl(
        env,
        &["create", "token", sa, "-n", "shop", "--audience", audience],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_signs_for_service_account_tokens_reviewed_by_api_server() {
    let env = TestEnv::shared().await.expect("test environment");
    install_crds(env).await;
    env.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reviews, namespace: shop}\n",
    )
    .await
    .expect("namespace and service account");
    let c = start_controller(&env.kubeconfig).await;
    let mut client = CertificateServiceClient::new(c.secure_channel("sluice-controller").await);
    let me = "spiffe://cluster.local/ns/shop/sa/reviews";
    let token = sa_token(env, "reviews", "sluice").await;

    // The projected token's own identity: issued (twice; the second from the cache).
    for _ in 0..2 {
        let issued = ask(&mut client, me, &token)
            .await
            .unwrap_or_else(|e| panic!("issued: {e:?}\nlog:\n{}", c.log()));
        assert_eq!(uri_sans(&issued.cert_chain[0]), [me]);
    }

    // Another service account's identity with the same token: denied.
    let denied = ask(
        &mut client,
        "spiffe://cluster.local/ns/shop/sa/ratings",
        &token,
    )
    .await
    .expect_err("refused");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("sa/ratings"), "{denied:?}");

    // A valid token for another audience: unauthenticated.
    let other = sa_token(env, "reviews", "other").await;
    let wrong_audience = ask(&mut client, me, &other).await.expect_err("refused");
    assert_eq!(
        wrong_audience.code(),
        tonic::Code::Unauthenticated,
        "{wrong_audience:?}"
    );
    assert!(
        wrong_audience.message().contains("audience"),
        "{wrong_audience:?}"
    );

    // Garbage: unauthenticated, and the token never appears in the log.
    let garbage = "not-a-token-8c1f2e";
    let refused = ask(&mut client, me, garbage).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("token review"), "{refused:?}");

    // Bootstrap tokens from --print-token still work in Kubernetes mode.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .arg("--state-dir")
        .arg(&c.state)
        .args(["--print-token", "shop/ratings"])
        .output()
        .expect("print token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bootstrap = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let ratings = "spiffe://cluster.local/ns/shop/sa/ratings";
    let issued = ask(&mut client, ratings, &bootstrap)
        .await
        .expect("bootstrap token issued");
    assert_eq!(uri_sans(&issued.cert_chain[0]), [ratings]);

    // Reviews are cached: once a ServiceAccount is gone the API server
    // refuses its tokens, yet one we reviewed moments ago still works for a
    // while (the cache's bounded staleness) and one never reviewed does not.
    let fresh = sa_token(env, "reviews", "sluice").await;
    ask(&mut client, me, &fresh)
        .await
        .expect("fresh token issued");
    env.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: details, namespace: shop}\n")
        .await
        .expect("service account details");
    let details = sa_token(env, "details", "sluice").await;
    kubectl(
        env,
        &[
            "delete",
            "serviceaccount",
            "reviews",
            "details",
            "-n",
            "shop",
        ],
    )
    .await;
    // kube-apiserver itself caches successful authentications for 10 s.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let cached = ask(&mut client, me, &fresh).await;
    assert!(cached.is_ok(), "cached review: {cached:?}\n{}", c.log());
    let gone = ask(
        &mut client,
        "spiffe://cluster.local/ns/shop/sa/details",
        &details,
    )
    .await
    .expect_err("deleted service account");
    assert_eq!(gone.code(), tonic::Code::Unauthenticated, "{gone:?}");

    let log = c.log();
    assert!(
        !log.contains(&token) && !log.contains(&details) && !log.contains(garbage),
        "{log}"
    );
    let m = c.admin_get("/metrics").await;
    for line in [
        "sluice_csr_requests_total{outcome=\"issued\"} 5",
        "sluice_csr_requests_total{outcome=\"denied\"} 1",
        "sluice_csr_requests_total{outcome=\"unauthenticated\"} 3",
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
}
