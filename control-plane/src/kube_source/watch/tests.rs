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
