use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[tokio::test(start_paused = true)]
async fn bucket_burst_of_max_tokens_then_refused() {
    let b = TokenBucket::new(3, 1, Duration::from_secs(1));
    for left in [2, 1, 0] {
        let d = b.acquire();
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
    }
    let d = b.acquire();
    assert!(!d.allowed);
    assert_eq!(d.reset, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn bucket_after_fill_interval_refills_tokens_per_fill() {
    let b = TokenBucket::new(5, 2, Duration::from_millis(100));
    for _ in 0..5 {
        assert!(b.acquire().allowed);
    }
    assert!(!b.acquire().allowed);
    tokio::time::advance(Duration::from_millis(60)).await;
    let d = b.acquire();
    assert!(!d.allowed, "no fill before the interval ends");
    assert_eq!(d.reset, Duration::from_millis(40));
    tokio::time::advance(Duration::from_millis(40)).await;
    assert!(b.acquire().allowed);
    assert!(b.acquire().allowed);
    assert!(!b.acquire().allowed);
}

#[tokio::test(start_paused = true)]
async fn bucket_long_idle_caps_at_max_tokens() {
    let b = TokenBucket::new(2, 1, Duration::from_millis(10));
    assert!(b.acquire().allowed);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(b.acquire().remaining, 1);
    assert_eq!(b.acquire().remaining, 0);
    assert!(!b.acquire().allowed);
}

#[tokio::test]
async fn bucket_contended_threads_hand_out_exactly_max_tokens() {
    let start = Instant::now();
    let b = Arc::new(TokenBucket::new_at(
        1000,
        1,
        Duration::from_secs(3600),
        start,
    ));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || (0..500).filter(|_| b.acquire_at(start).allowed).count())
        })
        .collect();
    let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(granted, 1000);
}
