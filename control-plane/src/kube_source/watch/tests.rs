use super::*;
use kube::core::Status;

/// Pauses of 1 s, 2 s, 3 s, ... until reset.
struct Linear(u64);

impl Iterator for Linear {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.0 += 1;
        Some(Duration::from_secs(self.0))
    }
}

impl Backoff for Linear {
    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn refused() -> watcher::Error {
    watcher::Error::NoResourceVersion
}

fn expired() -> watcher::Error {
    let status = Status::failure("too old resource version: 271 (283)", "Expired").with_code(410);
    watcher::Error::WatchError(status.boxed())
}

#[test]
fn retry_repeated_failures_pause_longer_each_time() {
    let mut retry = Retry::new(Linear(0));
    assert_eq!(retry.failed(&refused()), Some(Duration::from_secs(1)));
    assert_eq!(retry.failed(&refused()), Some(Duration::from_secs(2)));
    assert_eq!(retry.failed(&refused()), Some(Duration::from_secs(3)));
}

#[test]
fn retry_success_restarts_pauses_at_first_step() {
    let mut retry = Retry::new(Linear(0));
    retry.failed(&refused());
    retry.failed(&refused());
    retry.succeeded();
    assert_eq!(retry.failed(&refused()), Some(Duration::from_secs(1)));
}

#[test]
fn retry_expired_after_outage_relists_without_pause() {
    let mut retry = Retry::new(Linear(0));
    for _ in 0..4 {
        retry.failed(&refused());
    }
    assert_eq!(retry.failed(&expired()), None);
}

#[test]
fn retry_expired_twice_in_a_row_pauses() {
    let mut retry = Retry::new(Linear(0));
    assert_eq!(retry.failed(&expired()), None);
    assert_eq!(retry.failed(&expired()), Some(Duration::from_secs(1)));
    retry.succeeded();
    assert_eq!(retry.failed(&expired()), None);
}

#[test]
fn retry_default_backoff_pauses_at_least_half_a_second() {
    let mut retry = Retry::new(watcher::DefaultBackoff::default());
    let first = retry.failed(&refused()).expect("a pause");
    assert!(first >= Duration::from_millis(500), "{first:?}");
}

fn api_error(code: u16, reason: &str) -> kube::Error {
    kube::Error::Api(
        Status::failure("the server could not find the requested resource", reason)
            .with_code(code)
            .boxed(),
    )
}

#[test]
fn not_found_is_a_missing_crd_and_other_errors_are_not() {
    let missing = watcher::Error::InitialListFailed(api_error(404, "NotFound"));
    assert!(is_not_found(&missing));
    assert!(is_not_found(&watcher::Error::WatchStartFailed(api_error(
        404, "NotFound"
    ))));
    let gone = Status::failure("not found", "NotFound").with_code(404);
    assert!(is_not_found(&watcher::Error::WatchError(gone.boxed())));
    // RBAC, server errors, an expired watch: the kind may well have objects.
    for code in [401, 403, 500, 503, 504] {
        let e = watcher::Error::InitialListFailed(api_error(code, "Other"));
        assert!(!is_not_found(&e), "{code}");
    }
    assert!(!is_not_found(&expired()));
    assert!(!is_not_found(&refused()));
}

fn gateway() -> ApiResource {
    istio_resources()
        .into_iter()
        .find(|ar| ar.kind == "Gateway")
        .unwrap()
}

fn missing_gauge(kind: &str) -> i64 {
    missing()
        .get_or_create(&KindLabels { kind: kind.into() })
        .get()
}

#[test]
fn presence_flags_a_missing_crd_once_and_clears_when_it_lists() {
    let ar = gateway();
    assert_eq!(crd_name(&ar), "gateways.networking.istio.io");
    let presence = Presence::new(&ar);
    assert!(!presence.is_missing());
    assert_eq!(missing_gauge("Gateway"), 0);
    assert!(presence.absent(), "first 404 is news");
    assert!(!presence.absent(), "later ones are not");
    assert!(presence.is_missing());
    assert_eq!(missing_gauge("Gateway"), 1);
    presence.present();
    assert!(!presence.is_missing());
    assert_eq!(missing_gauge("Gateway"), 0);
    assert!(presence.absent(), "deleted again: news again");
}

#[tokio::test]
async fn synced_counts_a_missing_crd_as_listed_and_waits_for_other_kinds() {
    // Not Gateway: the gauge is process-wide, and the test above reads it.
    let ar = istio_resources()
        .into_iter()
        .find(|ar| ar.kind == "Telemetry")
        .unwrap();
    let writer = Writer::<DynamicObject>::new(ar.clone());
    let store = writer.as_reader();
    let presence = Presence::new(&ar);
    let short = Duration::from_millis(50);
    // Never listed, CRD not known to be missing (e.g. 403): not synced.
    assert!(!synced(&store, Some(&presence), short).await);
    assert!(!synced(&store, None, short).await);
    // 404 while waiting: synced at once, without waiting the full period.
    let later = presence.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        later.absent();
    });
    let started = Instant::now();
    assert!(synced(&store, Some(&presence), Duration::from_secs(10)).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Built-in kinds have no CRD: still waited for.
    assert!(!synced(&store, None, short).await);
}
