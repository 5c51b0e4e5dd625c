use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn config() -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx: 3,
        consecutive_gateway: 0,
        interval: Duration::from_secs(10),
        base_ejection: Duration::from_secs(30),
        max_ejection_percent: 100,
        min_health_percent: 0,
        split_local_origin: false,
        consecutive_local: 0,
    }
}

fn pool(n: usize) -> Vec<EndpointHealth> {
    (0..n).map(|_| EndpointHealth::new()).collect()
}

#[tokio::test(start_paused = true)]
async fn detector_consecutive_5xx_ejects_at_threshold() {
    let d = OutlierDetector::new(config());
    let eps = pool(2);
    let now = Instant::now();
    assert!(!d.record(&eps[0], Outcome::Status(500), eps.iter(), now));
    assert!(!d.record(&eps[0], Outcome::Status(500), eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::Status(500), eps.iter(), now));
    assert!(eps[0].is_ejected_at(now));
    assert!(!eps[1].is_ejected_at(now));
}

#[tokio::test(start_paused = true)]
async fn detector_success_in_between_resets_the_count() {
    let d = OutlierDetector::new(config());
    let eps = pool(1);
    let now = Instant::now();
    for status in [500, 500, 200, 500, 500] {
        assert!(!d.record(&eps[0], Outcome::Status(status), eps.iter(), now));
    }
}

#[tokio::test(start_paused = true)]
async fn detector_ejection_time_grows_with_times_ejected() {
    let d = OutlierDetector::new(config());
    let eps = pool(1);
    for _ in 0..3 {
        d.record(&eps[0], Outcome::Status(503), eps.iter(), Instant::now());
    }
    tokio::time::advance(Duration::from_millis(29_999)).await;
    assert!(eps[0].is_ejected_at(Instant::now()));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(eps[0].return_if_due(Instant::now()));
    assert!(!eps[0].is_ejected_at(Instant::now()));
    for _ in 0..3 {
        d.record(&eps[0], Outcome::ConnectFailed, eps.iter(), Instant::now());
    }
    assert_eq!(eps[0].times_ejected(), 2);
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(
        eps[0].is_ejected_at(Instant::now()),
        "second ejection lasts 2 x base"
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!eps[0].is_ejected_at(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn detector_max_percent_still_ejects_one_but_not_two() {
    let mut cfg = config();
    cfg.max_ejection_percent = 10;
    let d = OutlierDetector::new(cfg);
    let eps = pool(3);
    let now = Instant::now();
    for ep in &eps[..2] {
        for _ in 0..3 {
            d.record(ep, Outcome::Status(500), eps.iter(), now);
        }
    }
    assert!(eps[0].is_ejected_at(now));
    assert!(!eps[1].is_ejected_at(now));
}

#[tokio::test(start_paused = true)]
async fn detector_gateway_errors_count_only_502_to_504() {
    let mut cfg = config();
    cfg.consecutive_5xx = 0;
    cfg.consecutive_gateway = 2;
    let d = OutlierDetector::new(cfg);
    let eps = pool(2);
    let now = Instant::now();
    assert!(!d.record(&eps[0], Outcome::Status(502), eps.iter(), now));
    assert!(!d.record(&eps[0], Outcome::Status(500), eps.iter(), now));
    assert!(!d.record(&eps[0], Outcome::Status(504), eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::Status(503), eps.iter(), now));
}

#[tokio::test(start_paused = true)]
async fn detector_split_local_origin_keeps_counters_apart() {
    let mut cfg = config();
    cfg.split_local_origin = true;
    cfg.consecutive_local = 2;
    let d = OutlierDetector::new(cfg);
    let eps = pool(2);
    let now = Instant::now();
    assert!(!d.record(&eps[0], Outcome::Status(500), eps.iter(), now));
    assert!(!d.record(&eps[0], Outcome::ConnectFailed, eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::ConnectFailed, eps.iter(), now));
}

#[tokio::test(start_paused = true)]
async fn detector_below_min_health_panics() {
    let mut cfg = config();
    cfg.min_health_percent = 60;
    let d = OutlierDetector::new(cfg);
    let eps = pool(2);
    let now = Instant::now();
    assert!(!d.panicking(eps.iter(), now));
    for _ in 0..3 {
        d.record(&eps[0], Outcome::Status(500), eps.iter(), now);
    }
    assert!(d.panicking(eps.iter(), now), "1 of 2 healthy is below 60%");
}

#[tokio::test(start_paused = true)]
async fn detector_timeout_without_split_counts_as_504() {
    // Envoy maps `LocalOriginTimeout` to 504: a gateway error and a 5xx.
    let mut cfg = config();
    cfg.consecutive_5xx = 0;
    cfg.consecutive_gateway = 2;
    let d = OutlierDetector::new(cfg);
    let eps = pool(2);
    let now = Instant::now();
    assert!(!d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::Timeout, eps.iter(), now));

    let d = OutlierDetector::new(config());
    let eps = pool(2);
    assert!(!d.record(&eps[0], Outcome::Status(500), eps.iter(), now));
    assert!(!d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::ConnectFailed, eps.iter(), now));
}

#[tokio::test(start_paused = true)]
async fn detector_connected_without_split_changes_nothing() {
    // `LocalOriginConnectSuccess` has no HTTP code: it neither counts nor resets.
    let d = OutlierDetector::new(config());
    let eps = pool(2);
    let now = Instant::now();
    for outcome in [Outcome::Connected, Outcome::Timeout, Outcome::Connected] {
        assert!(!d.record(&eps[0], outcome, eps.iter(), now));
    }
    assert!(!d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
}

#[tokio::test(start_paused = true)]
async fn detector_split_timeout_counts_as_local_origin_failure_only() {
    let mut cfg = config();
    cfg.split_local_origin = true;
    cfg.consecutive_5xx = 1;
    cfg.consecutive_gateway = 1;
    cfg.consecutive_local = 2;
    let d = OutlierDetector::new(cfg);
    let eps = pool(2);
    let now = Instant::now();
    // Not a 504 with the split: the 5xx and gateway thresholds of 1 stay untouched.
    assert!(!d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
}

#[tokio::test(start_paused = true)]
async fn detector_split_each_connection_resets_local_origin_count() {
    // Envoy reports `LocalOriginConnectSuccess` at every "pool ready", so an
    // endpoint that accepts connections and then hangs never reaches 2.
    let mut cfg = config();
    cfg.split_local_origin = true;
    cfg.consecutive_local = 2;
    let d = OutlierDetector::new(cfg.clone());
    let eps = pool(2);
    let now = Instant::now();
    for _ in 0..5 {
        assert!(!d.record(&eps[0], Outcome::Connected, eps.iter(), now));
        assert!(!d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
    }
    // Without a connection in between they do add up: the last timeout and
    // a failed connect make 2.
    assert!(d.record(&eps[0], Outcome::ConnectFailed, eps.iter(), now));

    // With a threshold of 1, the first timeout after a connection ejects.
    cfg.consecutive_local = 1;
    let d = OutlierDetector::new(cfg);
    let eps = pool(2);
    assert!(!d.record(&eps[0], Outcome::Connected, eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::Timeout, eps.iter(), now));
}

#[tokio::test(start_paused = true)]
async fn detector_split_answers_leave_local_origin_count() {
    // An answer's status goes to the 5xx counters only (`putHttpResponseCode`).
    let mut cfg = config();
    cfg.split_local_origin = true;
    cfg.consecutive_local = 2;
    let d = OutlierDetector::new(cfg);
    let eps = pool(2);
    let now = Instant::now();
    assert!(!d.record(&eps[0], Outcome::ConnectFailed, eps.iter(), now));
    assert!(!d.record(&eps[0], Outcome::Status(200), eps.iter(), now));
    assert!(d.record(&eps[0], Outcome::ConnectFailed, eps.iter(), now));
}
