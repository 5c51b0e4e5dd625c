use std::time::Duration;

use super::*;

#[test]
fn retry_on_default_istio_policy_skips_503() {
    let on = RetryOn::parse(
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    );
    assert!(!on.retries_status(503, None));
    assert!(on.retries_status(200, Some(14)));
    assert!(on.retries_failure(Failure::Connect));
    assert!(!on.retries_failure(Failure::Reset));
}

#[test]
fn retry_on_gateway_error_covers_502_to_504_only() {
    let on = RetryOn::parse("gateway-error");
    assert!(on.retries_status(502, None));
    assert!(on.retries_status(504, None));
    assert!(!on.retries_status(500, None));
    assert!(on.retries_failure(Failure::PerTryTimeout));
}

#[test]
fn retry_on_numeric_codes_and_4xx() {
    let on = RetryOn::parse(" 503 ,retriable-4xx, bogus");
    assert!(on.retries_status(503, None));
    assert!(on.retries_status(409, None));
    assert!(!on.retries_status(500, None));
}

#[test]
fn backoff_ceiling_doubles_then_caps_at_ten_times_base() {
    let base = Duration::from_millis(10);
    let got: Vec<_> = (1..=5)
        .map(|n| backoff_ceiling(base, n).as_millis())
        .collect();
    assert_eq!(got, vec![10, 30, 70, 100, 100]);
    assert_eq!(backoff_ceiling(Duration::ZERO, 1), DEFAULT_BACKOFF_BASE);
}

#[tokio::test(start_paused = true)]
async fn backoff_sleep_stays_within_ceiling() {
    let base = Duration::from_millis(25);
    for n in 1..6 {
        let start = tokio::time::Instant::now();
        tokio::time::sleep(backoff(base, n)).await;
        assert!(start.elapsed() <= backoff_ceiling(base, n));
    }
}
