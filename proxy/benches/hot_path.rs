//! Microbenchmarks of the per-request resilience bookkeeping: token bucket,
//! retry budget and outlier detector (the modules are self-contained, so the
//! bench compiles them directly).
#![forbid(unsafe_code)]

#[allow(dead_code, unused_imports)]
#[path = "../src"]
mod hot {
    pub mod outlier;
    pub mod retry_budget;
    pub mod token_bucket;
    pub mod window;
}

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};

use hot::outlier::{EndpointHealth, Outcome, OutlierConfig, OutlierDetector};
use hot::retry_budget::RetryBudget;
use hot::token_bucket::TokenBucket;

fn bucket(c: &mut Criterion) {
    let b = TokenBucket::new(u32::MAX, 1, Duration::from_secs(1));
    c.bench_function("token_bucket/acquire", |bench| {
        bench.iter(|| black_box(b.acquire()))
    });
    // The same without the clock read, to separate it from the atomic update.
    let now = tokio::time::Instant::now();
    c.bench_function("token_bucket/acquire_at_fixed_now", |bench| {
        bench.iter(|| black_box(b.acquire_at(now)))
    });
    let shared = Arc::new(TokenBucket::new(u32::MAX, 1, Duration::from_secs(1)));
    c.bench_function("token_bucket/acquire_contended_2_threads", |bench| {
        bench.iter_custom(|iters| {
            let start = Instant::now();
            let other = {
                let b = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for _ in 0..iters {
                        black_box(b.acquire());
                    }
                })
            };
            for _ in 0..iters {
                black_box(shared.acquire());
            }
            let _ = other.join();
            start.elapsed()
        })
    });
}

fn budget(c: &mut Criterion) {
    let b = RetryBudget::new(20.0, 10);
    c.bench_function("retry_budget/record_request_and_try_retry", |bench| {
        bench.iter(|| {
            b.record_request();
            black_box(b.try_retry())
        })
    });
}

fn detector(c: &mut Criterion) {
    let d = OutlierDetector::new(OutlierConfig {
        consecutive_5xx: 5,
        consecutive_gateway: 5,
        interval: Duration::from_secs(10),
        base_ejection: Duration::from_secs(30),
        max_ejection_percent: 10,
        min_health_percent: 0,
        split_local_origin: false,
        consecutive_local: 0,
    });
    let pool: Vec<EndpointHealth> = (0..8).map(|_| EndpointHealth::new()).collect();
    c.bench_function("outlier/record_success", |bench| {
        bench.iter(|| {
            let now = tokio::time::Instant::now();
            black_box(d.record(&pool[0], Outcome::Status(200), pool.iter(), now))
        })
    });
    c.bench_function("outlier/record_failure", |bench| {
        bench.iter(|| {
            let now = tokio::time::Instant::now();
            black_box(d.record(&pool[1], Outcome::Status(503), pool.iter(), now))
        })
    });
    c.bench_function("outlier/pick_8_endpoints", |bench| {
        // What each pick does: return due endpoints, check panic, skip ejected.
        bench.iter(|| {
            let now = tokio::time::Instant::now();
            for e in &pool {
                black_box(e.return_if_due(now));
            }
            let panicking = d.panicking(pool.iter(), now);
            let i = fastrand::usize(0..pool.len());
            black_box(panicking || !pool[i].is_ejected_at(now))
        })
    });
}

criterion_group!(benches, bucket, budget, detector);
criterion_main!(benches);
