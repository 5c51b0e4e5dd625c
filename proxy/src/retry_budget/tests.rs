use std::time::Duration;

use super::*;

#[tokio::test(start_paused = true)]
async fn budget_without_reserve_allows_percent_of_requests() {
    let b = RetryBudget::new(20.0, 0);
    for _ in 0..10 {
        b.record_request();
    }
    assert!(b.try_retry());
    assert!(b.try_retry());
    assert!(!b.try_retry(), "20% of 10 requests is 2 retries");
}

#[tokio::test(start_paused = true)]
async fn budget_reserve_allows_min_per_second_times_window() {
    let b = RetryBudget::new(0.0, 1);
    let granted = (0..20).filter(|_| b.try_retry()).count();
    assert_eq!(granted, 10);
}

#[tokio::test(start_paused = true)]
async fn budget_after_window_forgets_old_retries() {
    let b = RetryBudget::new(50.0, 0);
    for _ in 0..4 {
        b.record_request();
    }
    assert!(b.try_retry());
    assert!(b.try_retry());
    assert!(!b.try_retry());
    tokio::time::advance(RetryBudget::window() + Duration::from_secs(1)).await;
    assert!(!b.try_retry(), "old requests left the window too");
    for _ in 0..2 {
        b.record_request();
    }
    assert!(b.try_retry());
    assert!(!b.try_retry());
}

#[tokio::test(start_paused = true)]
async fn budget_requests_spread_over_window_all_count() {
    let b = RetryBudget::new(10.0, 0);
    for _ in 0..9 {
        for _ in 0..10 {
            b.record_request();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    // 90 requests within the last 10 s → 9 retries.
    let granted = (0..20).filter(|_| b.try_retry()).count();
    assert_eq!(granted, 9);
}
