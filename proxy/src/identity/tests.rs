//! Tests of the workload certificate: a real TLS certificate service in
//! process, real files on disk, real time.

mod pki;
mod server;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::renewal::{backoff, renew_after};
use super::*;
use crate::config::{CaSettings, Identity};
use pki::Ca;
use server::{Behaviour, TOKEN};

const SPIFFE_ID: &str = "spiffe://cluster.local/ns/shop/sa/cart";

/// A scratch folder removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-identity-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn settings(ca: Option<CaSettings>, credentials_dir: Option<PathBuf>) -> Settings {
    let local = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    Settings {
        controller: "http://127.0.0.1:1".to_owned(),
        identity: Identity {
            id: "cart-0.shop".to_owned(),
            workload: "cart".to_owned(),
            namespace: "shop".to_owned(),
            service_account: "cart".to_owned(),
            labels: BTreeMap::new(),
            trust_domain: "cluster.local".to_owned(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        },
        outbound: local(0),
        inbound: local(0),
        admin: local(0),
        health: local(0),
        stats: local(0),
        connect_timeout: Duration::from_secs(1),
        app_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ca,
        credentials_dir,
        controller_auth: Default::default(),
    }
}

/// A running `identity::run` and what it publishes.
struct Running {
    rx: CredentialsRx,
    metrics: Arc<Metrics>,
    quit: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(settings: Settings) -> Running {
    let (tx, rx) = watch::channel(None);
    let (quit, quit_rx) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let task = tokio::spawn(run(settings, tx, Arc::clone(&metrics), quit_rx));
    Running {
        rx,
        metrics,
        quit,
        task,
    }
}

impl Running {
    /// Waits for credentials whose leaf differs from `previous`.
    async fn next(&mut self, previous: Option<&[u8]>, within: Duration) -> Arc<Credentials> {
        let wanted = |c: &Option<Arc<Credentials>>| {
            c.as_ref()
                .is_some_and(|c| previous != Some(c.chain[0].as_ref()))
        };
        let got = tokio::time::timeout(within, self.rx.wait_for(wanted))
            .await
            .expect("no new credentials in time")
            .unwrap();
        Arc::clone(got.as_ref().unwrap())
    }

    fn requests(&self, outcome: &str) -> u64 {
        let line = format!("sluice_certificate_requests_total{{outcome=\"{outcome}\"}} ");
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    fn expiry_metric(&self) -> i64 {
        self.metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix("sluice_certificate_expiration_timestamp_seconds "))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    async fn stop(self) {
        self.quit.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("identity task did not stop on shutdown")
            .unwrap();
    }
}

async fn until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spki(cert: &rustls::pki_types::CertificateDer<'_>) -> Vec<u8> {
    parse::leaf("test", cert).unwrap().spki
}

/// A certificate service fixture: the mesh root on disk, a token file and a
/// free port.
struct CaFixture {
    scratch: Scratch,
    mesh: Arc<Ca>,
    token: PathBuf,
    port: u16,
}

impl CaFixture {
    async fn new(token: &str) -> (Self, TcpListener) {
        let scratch = Scratch::new();
        let mesh = Arc::new(Ca::new("mesh root"));
        scratch.write("ca-root.pem", &mesh.pem);
        let token = scratch.write("token", token);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fixture = Self {
            scratch,
            mesh,
            token,
            port,
        };
        (fixture, listener)
    }

    fn settings(&self, ttl: Duration) -> Settings {
        settings(
            Some(CaSettings {
                address: format!("https://127.0.0.1:{}", self.port),
                root: Some(self.scratch.0.join("ca-root.pem")),
                token_file: Some(self.token.clone()),
                ttl,
            }),
            None,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_valid_token_issues_then_renews_at_half_life_with_new_key() {
    let (ca, listener) = CaFixture::new(TOKEN).await;
    let seen = server::spawn(listener, Arc::clone(&ca.mesh), Behaviour::Honest);
    let mut proxy = start(ca.settings(Duration::from_secs(4)));

    let first = proxy.next(None, Duration::from_secs(20)).await;
    let first_at = Instant::now();
    assert_eq!(first.spiffe_id, SPIFFE_ID);
    assert_eq!(first.roots.len(), 2, "both roots of the bundle are kept");
    assert_eq!(first.chain.len(), 1);
    let lifetime = first.not_after.duration_since(first.not_before).unwrap();
    assert!(
        lifetime <= Duration::from_secs(5),
        "asked for 4 s, got {lifetime:?}"
    );
    assert_eq!(proxy.expiry_metric(), unix_seconds(first.not_after));
    assert_eq!(proxy.requests("success"), 1);

    let second = proxy
        .next(Some(first.chain[0].as_ref()), Duration::from_secs(10))
        .await;
    let gap = first_at.elapsed();
    assert!(
        gap >= Duration::from_millis(1000) && gap <= Duration::from_millis(4500),
        "renewed after {gap:?}, expected about half of a ~4 s lifetime"
    );
    assert_eq!(second.spiffe_id, SPIFFE_ID);
    assert_ne!(
        spki(&second.chain[0]),
        spki(&first.chain[0]),
        "a fresh key each time"
    );
    assert_ne!(second.key.secret_der(), first.key.secret_der());
    assert!(second.not_after > first.not_after);
    assert!(proxy.requests("success") >= 2);
    assert!(seen.issued.load(Ordering::SeqCst) >= 2);
    assert_eq!(proxy.requests("failure"), 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_wrong_token_publishes_nothing_until_token_rotates() {
    let (ca, listener) = CaFixture::new("stale-token").await;
    let seen = server::spawn(listener, Arc::clone(&ca.mesh), Behaviour::Honest);
    let mut proxy = start(ca.settings(Duration::from_secs(60)));

    until("a counted failure", Duration::from_secs(20), || {
        proxy.requests("failure") >= 1
    })
    .await;
    assert!(seen.unauthenticated.load(Ordering::SeqCst) >= 1);
    assert_eq!(seen.issued.load(Ordering::SeqCst), 0);
    assert!(proxy.rx.borrow().is_none());
    assert_eq!(proxy.requests("success"), 0);

    // The token file is read per request, so a rotated token is picked up.
    std::fs::write(&ca.token, format!("{TOKEN}\n")).unwrap();
    let creds = proxy.next(None, Duration::from_secs(20)).await;
    assert_eq!(creds.spiffe_id, SPIFFE_ID);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_server_down_then_up_recovers() {
    let (ca, listener) = CaFixture::new(TOKEN).await;
    drop(listener);
    let mut proxy = start(ca.settings(Duration::from_secs(60)));

    until("a failed request", Duration::from_secs(20), || {
        proxy.requests("failure") >= 1
    })
    .await;
    assert!(proxy.rx.borrow().is_none());

    let listener = TcpListener::bind(("127.0.0.1", ca.port)).await.unwrap();
    server::spawn(listener, Arc::clone(&ca.mesh), Behaviour::Honest);
    let creds = proxy.next(None, Duration::from_secs(40)).await;
    assert_eq!(creds.spiffe_id, SPIFFE_ID);
    assert!(proxy.requests("success") == 1);
    proxy.stop().await;
}

/// Runs against a CA that misbehaves and expects a refusal, not credentials.
async fn expect_refused(behaviour: Behaviour) {
    let (ca, listener) = CaFixture::new(TOKEN).await;
    let seen = server::spawn(listener, Arc::clone(&ca.mesh), behaviour);
    let proxy = start(ca.settings(Duration::from_secs(60)));
    until("a refused answer", Duration::from_secs(20), || {
        proxy.requests("failure") >= 1
    })
    .await;
    assert!(seen.issued.load(Ordering::SeqCst) >= 1, "the CA did answer");
    assert!(proxy.rx.borrow().is_none());
    assert_eq!(proxy.requests("success"), 0);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_answer_for_other_identity_is_refused() {
    expect_refused(Behaviour::WrongIdentity).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_answer_from_issuer_outside_bundle_is_refused() {
    expect_refused(Behaviour::UnlistedIssuer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_untrusted_server_certificate_fails() {
    let (ca, listener) = CaFixture::new(TOKEN).await;
    // The controller presents a certificate from a root the proxy does not know.
    let seen = server::spawn(listener, Arc::new(Ca::new("impostor")), Behaviour::Honest);
    let proxy = start(ca.settings(Duration::from_secs(60)));
    until("a failed handshake", Duration::from_secs(20), || {
        proxy.requests("failure") >= 1
    })
    .await;
    assert_eq!(seen.issued.load(Ordering::SeqCst), 0);
    assert_eq!(
        seen.unauthenticated.load(Ordering::SeqCst),
        0,
        "no token sent"
    );
    assert!(proxy.rx.borrow().is_none());
    proxy.stop().await;
}

#[test]
fn renew_after_fresh_certificate_waits_half_lifetime() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let day = Duration::from_secs(86_400);
    assert_eq!(renew_after(now, now + day, now, 0.0), day / 2);
    let early = renew_after(now, now + day, now, 0.999);
    assert!(early < day / 2 && early > day.mul_f64(0.44), "{early:?}");
}

#[test]
fn renew_after_backdated_not_before_counts_from_now() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let backdated = now - Duration::from_secs(60);
    let ten = Duration::from_secs(10);
    assert_eq!(renew_after(backdated, now + ten, now, 0.0), ten / 2);
    assert_eq!(
        renew_after(backdated, now - ten, now, 0.0),
        Duration::from_millis(500)
    );
}

#[test]
fn backoff_consecutive_failures_double_up_to_thirty_seconds() {
    let secs = |n| backoff(n, 0.5).as_secs_f64();
    assert_eq!(secs(1), 1.0);
    assert_eq!(secs(2), 2.0);
    assert_eq!(secs(5), 16.0);
    assert_eq!(secs(6), 30.0);
    assert_eq!(secs(100), 30.0);
    assert!(backoff(1, 0.0) >= Duration::from_millis(750));
    assert!(backoff(1, 0.999) < Duration::from_millis(1250));
    assert!(backoff(9, 0.999) <= Duration::from_secs(30));
}

/// Writes a mounted-credentials folder for a new leaf; returns the leaf PEM.
fn mount(scratch: &Scratch, ca: &Ca, extra_root: &str, validity: Duration) -> String {
    let (chain, key) = ca.workload(SPIFFE_ID, validity);
    scratch.write("cert-chain.pem", &chain);
    scratch.write("key.pem", &key);
    scratch.write("root-cert.pem", &format!("{}{extra_root}", ca.pem));
    chain
}

fn der_of(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

#[test]
fn load_dir_valid_files_yield_identity_roots_and_validity() {
    let scratch = Scratch::new();
    let ca = Ca::new("mesh root");
    let other = Ca::new("next root");
    let leaf = mount(&scratch, &ca, &other.pem, Duration::from_secs(3600));
    let creds = load_dir(&scratch.0).unwrap();
    assert_eq!(creds.spiffe_id, SPIFFE_ID);
    assert_eq!(creds.chain.len(), 1);
    assert_eq!(creds.chain[0].as_ref(), der_of(&leaf).as_slice());
    assert_eq!(creds.roots.len(), 2);
    let life = creds.not_after.duration_since(creds.not_before).unwrap();
    assert!(
        life.abs_diff(Duration::from_secs(3600)) <= Duration::from_secs(1),
        "{life:?}"
    );
    parse::verify_chain(&creds.chain, &creds.roots).unwrap();
}

#[test]
fn load_dir_bad_files_errors_name_the_file() {
    let scratch = Scratch::new();
    let ca = Ca::new("mesh root");
    mount(&scratch, &ca, "", Duration::from_secs(3600));

    let (_, foreign_key) = ca.workload(SPIFFE_ID, Duration::from_secs(3600));
    scratch.write("key.pem", &foreign_key);
    let e = load_dir(&scratch.0).unwrap_err();
    assert!(matches!(e, IdentityError::Key { .. }), "{e}");
    assert!(e.to_string().contains("key.pem"), "{e}");

    mount(&scratch, &ca, "", Duration::from_secs(3600));
    scratch.write("cert-chain.pem", "not a certificate\n");
    let e = load_dir(&scratch.0).unwrap_err();
    assert!(e.to_string().contains("cert-chain.pem"), "{e}");

    std::fs::remove_file(scratch.0.join("root-cert.pem")).unwrap();
    let e = load_dir(&scratch.0).unwrap_err();
    assert!(e.to_string().contains("root-cert.pem"), "{e}");
}

#[test]
fn load_dir_leaf_without_spiffe_id_is_refused() {
    let scratch = Scratch::new();
    let ca = Ca::new("mesh root");
    mount(&scratch, &ca, "", Duration::from_secs(3600));
    let (cert, key) = ca.server();
    scratch.write("cert-chain.pem", &cert);
    scratch.write("key.pem", &key);
    let e = load_dir(&scratch.0).unwrap_err();
    assert!(matches!(e, IdentityError::NoSpiffeId { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_dir_change_republishes_and_broken_file_keeps_previous() {
    let scratch = Scratch::new();
    let ca = Ca::new("mesh root");
    let leaf = mount(&scratch, &ca, "", Duration::from_secs(3600));
    let mut proxy = start(settings(None, Some(scratch.0.clone())));

    let first = proxy.next(None, Duration::from_secs(10)).await;
    assert_eq!(first.chain[0].as_ref(), der_of(&leaf).as_slice());
    assert_eq!(proxy.expiry_metric(), unix_seconds(first.not_after));

    // Rotation: new leaf and key, picked up by the poll.
    let leaf = mount(&scratch, &ca, "", Duration::from_secs(7200));
    let second = proxy
        .next(Some(first.chain[0].as_ref()), Duration::from_secs(10))
        .await;
    assert_eq!(second.chain[0].as_ref(), der_of(&leaf).as_slice());
    assert_eq!(proxy.expiry_metric(), unix_seconds(second.not_after));

    // A broken chain must not replace good credentials.
    proxy.rx.mark_unchanged();
    scratch.write(
        "cert-chain.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !proxy.rx.has_changed().unwrap(),
        "broken files were published"
    );
    let current = proxy.rx.borrow().clone().unwrap();
    assert_eq!(current.chain[0], second.chain[0]);

    // Fixed again: published again.
    let leaf = mount(&scratch, &ca, "", Duration::from_secs(3600));
    let third = proxy
        .next(Some(second.chain[0].as_ref()), Duration::from_secs(10))
        .await;
    assert_eq!(third.chain[0].as_ref(), der_of(&leaf).as_slice());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounted_dir_missing_file_keeps_previous_then_recovers() {
    let scratch = Scratch::new();
    let ca = Ca::new("mesh root");
    mount(&scratch, &ca, "", Duration::from_secs(3600));
    let mut proxy = start(settings(None, Some(scratch.0.clone())));
    let first = proxy.next(None, Duration::from_secs(10)).await;

    // Mid-rotation: the key is gone for a while.
    std::fs::remove_file(scratch.0.join("key.pem")).unwrap();
    proxy.rx.mark_unchanged();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !proxy.rx.has_changed().unwrap(),
        "a missing key was published"
    );
    assert_eq!(proxy.rx.borrow().clone().unwrap().chain[0], first.chain[0]);

    let leaf = mount(&scratch, &ca, "", Duration::from_secs(3600));
    let second = proxy
        .next(Some(first.chain[0].as_ref()), Duration::from_secs(10))
        .await;
    assert_eq!(second.chain[0].as_ref(), der_of(&leaf).as_slice());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_ca_or_dir_returns_at_once() {
    let proxy = start(settings(None, None));
    tokio::time::timeout(Duration::from_secs(1), proxy.task)
        .await
        .unwrap()
        .unwrap();
    assert!(proxy.rx.borrow().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_address_without_scheme_uses_tls_with_host_as_name() {
    let (ca, listener) = CaFixture::new(TOKEN).await;
    server::spawn(listener, Arc::clone(&ca.mesh), Behaviour::Honest);
    let mut settings = ca.settings(Duration::from_secs(60));
    if let Some(ca_settings) = settings.ca.as_mut() {
        // The serving certificate names `localhost`, so this checks the name.
        ca_settings.address = format!("localhost:{}", ca.port);
    }
    let mut proxy = start(settings);
    let creds = proxy.next(None, Duration::from_secs(20)).await;
    assert_eq!(creds.spiffe_id, SPIFFE_ID);
    proxy.stop().await;
}

#[test]
fn ca_client_address_without_host_is_refused() {
    let ca = CaSettings {
        address: "https://".to_owned(),
        root: None,
        token_file: None,
        ttl: Duration::ZERO,
    };
    let e = ca_client::CaClient::new(&ca, SPIFFE_ID.into()).unwrap_err();
    assert!(matches!(e, IdentityError::Address { .. }), "{e}");
}
