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
