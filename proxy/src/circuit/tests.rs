use std::time::Duration;

use super::*;

#[tokio::test(start_paused = true)]
async fn breaker_one_connection_one_pending_overflows_the_third() {
    let cb = Arc::new(CircuitBreaker::new(Limits {
        max_connections: 1,
        max_pending: 1,
        ..Limits::default()
    }));
    let first = cb.admit().await.unwrap();
    let waiter = {
        let cb = Arc::clone(&cb);
        tokio::spawn(async move { cb.admit().await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(cb.admit().await.unwrap_err(), Overflow::Pending);
    drop(first);
    assert!(waiter.await.unwrap().is_ok());
    assert!(
        cb.admit().await.is_ok(),
        "slots come back when requests end"
    );
}

#[tokio::test]
async fn breaker_max_requests_counts_concurrent_requests() {
    let cb = CircuitBreaker::new(Limits {
        max_requests: 2,
        ..Limits::default()
    });
    let a = cb.admit().await.unwrap();
    let _b = cb.admit().await.unwrap();
    assert_eq!(cb.admit().await.unwrap_err(), Overflow::Requests);
    drop(a);
    assert!(cb.admit().await.is_ok());
}

#[tokio::test]
async fn breaker_unlimited_by_default_and_retries_capped() {
    let cb = CircuitBreaker::new(Limits {
        max_retries: 1,
        ..Limits::default()
    });
    let held: Vec<_> = (0..100).map(|_| cb.admit()).collect();
    for h in held {
        assert!(h.await.is_ok());
    }
    let r = cb.try_retry().unwrap();
    assert_eq!(cb.try_retry().unwrap_err(), Overflow::Retries);
    drop(r);
    assert!(cb.try_retry().is_ok());
}

#[tokio::test]
async fn breaker_tcp_connection_past_max_connections_overflows_at_once() {
    let cb = CircuitBreaker::new(Limits {
        max_connections: 1,
        max_pending: 10,
        ..Limits::default()
    });
    let held = cb.try_connection().unwrap();
    assert!(held.is_some());
    assert_eq!(cb.try_connection().unwrap_err(), Overflow::Connections);
    drop(held);
    assert!(cb.try_connection().is_ok());
    let unlimited = CircuitBreaker::new(Limits::default());
    assert!(unlimited.try_connection().unwrap().is_none());
}

fn budget(percent: u32, min_concurrency: u32, interval_ms: u64) -> Limits {
    Limits {
        max_retries: 1,
        retry_budget: Some(RetryBudgetLimit {
            basis_points: percent * 100,
            min_concurrency,
            interval_ms,
        }),
        ..Limits::default()
    }
}

#[tokio::test]
async fn retry_budget_caps_concurrent_retries_at_a_share_of_active_requests() {
    let cb = CircuitBreaker::new(budget(50, 0, 0));
    let active: Vec<_> = futures::future::join_all((0..4).map(|_| cb.admit())).await;
    // 50 % of 4 active requests: 2 retries at once, `max_retries: 1` replaced.
    let r1 = cb.try_retry().unwrap();
    let _r2 = cb.try_retry().unwrap();
    assert_eq!(cb.try_retry().unwrap_err(), Overflow::RetryBudget);
    drop(r1);
    assert!(cb.try_retry().is_ok(), "a finished retry frees its unit");
    drop(active);
    assert_eq!(
        cb.try_retry().unwrap_err(),
        Overflow::RetryBudget,
        "no active request, no share"
    );
}

#[tokio::test]
async fn retry_budget_min_concurrency_is_a_floor() {
    let cb = CircuitBreaker::new(budget(0, 2, 0));
    let _a = cb.admit().await.unwrap();
    let _r1 = cb.try_retry().unwrap();
    let _r2 = cb.try_retry().unwrap();
    assert_eq!(cb.try_retry().unwrap_err(), Overflow::RetryBudget);
    assert_eq!(Overflow::RetryBudget.kind(), "retry_budget");
}

#[tokio::test(start_paused = true)]
async fn retry_budget_with_interval_counts_requests_started_in_it() {
    let cb = CircuitBreaker::new(budget(10, 0, 1_000));
    for _ in 0..20 {
        drop(cb.admit().await.unwrap());
    }
    // Nothing is active, but 20 requests started within the last second: 2 retries.
    let _r1 = cb.try_retry().unwrap();
    let _r2 = cb.try_retry().unwrap();
    assert_eq!(cb.try_retry().unwrap_err(), Overflow::RetryBudget);
    tokio::time::advance(Duration::from_millis(1_500)).await;
    drop(_r1);
    assert_eq!(
        cb.try_retry().unwrap_err(),
        Overflow::RetryBudget,
        "the requests left the interval"
    );
}

#[tokio::test(start_paused = true)]
async fn queued_requests_do_not_count_against_max_requests() {
    // Envoy: http2MaxRequests bounds requests on the wire; one waiting for a
    // connection is only in the pending queue (http1MaxPendingRequests).
    let cb = Arc::new(CircuitBreaker::new(Limits {
        max_connections: 1,
        max_pending: 1,
        max_requests: 1,
        ..Limits::default()
    }));
    let first = cb.admit().await.unwrap();
    let queued = tokio::spawn({
        let cb = Arc::clone(&cb);
        async move { cb.admit().await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(!queued.is_finished(), "waits in the queue, not refused");
    assert_eq!(cb.admit().await.unwrap_err(), Overflow::Pending);
    drop(first);
    assert_eq!(queued.await.unwrap(), Ok(()));
}
