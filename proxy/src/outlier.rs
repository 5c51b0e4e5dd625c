//! Passive health checking (Envoy outlier detection, consecutive-error kinds):
//! per-endpoint counters, ejection with a growing time, the max-ejection cap
//! and the panic threshold. State lives in `EndpointHealth`, shared across
//! config pushes for endpoints that stay.

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Envoy's default cap on one ejection (`max_ejection_time`).
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Outlier detection settings in force for a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutlierConfig {
    /// Consecutive 5xx that eject; 0 = off.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 that eject; 0 = off.
    pub consecutive_gateway: u32,
    /// Sweep interval; an ejection multiplier decays by one per healthy interval.
    pub interval: Duration,
    /// Ejection time per time ejected.
    pub base_ejection: Duration,
    pub max_ejection_percent: u32,
    /// Panic threshold: below this healthy share, balance over all endpoints.
    pub min_health_percent: u32,
    /// Count local-origin failures apart from upstream 5xx.
    pub split_local_origin: bool,
    /// With the split: consecutive local-origin failures that eject; 0 = off.
    pub consecutive_local: u32,
}

/// What the router learnt about an endpoint (Envoy's outlier `Result`s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request got its connection to the endpoint (Envoy's
    /// `LocalOriginConnectSuccess`, reported at "pool ready").
    Connected,
    /// The endpoint answered with this status.
    Status(u16),
    /// No connection, or it broke before an answer: connect failure or reset
    /// (Envoy's `LocalOriginConnectFailed`).
    ConnectFailed,
    /// A per-try or route timeout cut a request that had its connection
    /// (Envoy's `LocalOriginTimeout`).
    Timeout,
}

/// One endpoint's counters and ejection state.
#[derive(Debug)]
pub struct EndpointHealth {
    start: Instant,
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    times_ejected: AtomicU32,
    /// Milliseconds since `start` + 1 when the ejection ends; 0 = in service.
    ejected_until: AtomicU64,
    /// Milliseconds since `start` when it last came back.
    returned_at: AtomicU64,
}

impl Default for EndpointHealth {
    fn default() -> Self {
        Self::new()
    }
}

fn reached(counter: &AtomicU32, threshold: u32) -> bool {
    let n = counter.fetch_add(1, Ordering::AcqRel) + 1;
    if threshold > 0 && n >= threshold {
        counter.store(0, Ordering::Release);
        return true;
    }
    false
}

impl EndpointHealth {
    /// A healthy endpoint.
    pub fn new() -> Self {
        EndpointHealth {
            start: Instant::now(),
            consecutive_5xx: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            consecutive_local: AtomicU32::new(0),
            times_ejected: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            returned_at: AtomicU64::new(0),
        }
    }

    fn millis(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// Whether the endpoint is ejected at `now` (an ejection that has run out is not).
    pub fn is_ejected_at(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until != 0 && self.millis(now) + 1 < until
    }

    /// Brings an endpoint whose ejection has run out back; true when this call did.
    pub fn return_if_due(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        let ms = self.millis(now);
        if until == 0 || ms + 1 < until {
            return false;
        }
        let back = self
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if back {
            self.returned_at.store(ms, Ordering::Release);
        }
        back
    }

    /// How many times the endpoint has been ejected (decayed by healthy intervals).
    #[cfg(test)]
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    fn eject(&self, cfg: &OutlierConfig, now: Instant) {
        let ms = self.millis(now);
        // Envoy lowers the multiplier once per interval spent in service.
        let healthy = ms.saturating_sub(self.returned_at.load(Ordering::Acquire));
        let decay = healthy / (cfg.interval.as_millis().max(1) as u64);
        let times = u64::from(self.times_ejected.load(Ordering::Relaxed)).saturating_sub(decay) + 1;
        self.times_ejected
            .store(u32::try_from(times).unwrap_or(u32::MAX), Ordering::Relaxed);
        let cap = MAX_EJECTION.max(cfg.base_ejection);
        let time = cfg.base_ejection.saturating_mul(times as u32).min(cap);
        self.ejected_until
            .store(ms + time.as_millis() as u64 + 1, Ordering::Release);
        self.consecutive_5xx.store(0, Ordering::Release);
        self.consecutive_gateway.store(0, Ordering::Release);
        self.consecutive_local.store(0, Ordering::Release);
    }
}

/// Decides ejections for one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutlierDetector {
    pub config: OutlierConfig,
}

impl OutlierDetector {
    /// A detector with `config`.
    pub fn new(config: OutlierConfig) -> Self {
        OutlierDetector { config }
    }

    /// Records `outcome` for `endpoint`, one of `pool`; true when it was ejected now.
    pub fn record<'a>(
        &self,
        endpoint: &EndpointHealth,
        outcome: Outcome,
        pool: impl Iterator<Item = &'a EndpointHealth>,
        now: Instant,
    ) -> bool {
        let cfg = &self.config;
        // Without the split every result is an HTTP code, as Envoy maps it
        // (`resultToHttpCode`); with it, connection-side results only move
        // the local-origin counter and answers only the 5xx ones.
        let status = match outcome {
            Outcome::Status(s) => s,
            Outcome::Connected => {
                if cfg.split_local_origin {
                    endpoint.consecutive_local.store(0, Ordering::Release);
                }
                return false;
            }
            Outcome::ConnectFailed | Outcome::Timeout if cfg.split_local_origin => {
                let tripped = reached(&endpoint.consecutive_local, cfg.consecutive_local);
                return tripped && self.eject_within_limits(endpoint, pool, now);
            }
            Outcome::ConnectFailed => 503,
            Outcome::Timeout => 504,
        };
        let tripped = if status >= 500 {
            let gateway = matches!(status, 502..=504)
                && reached(&endpoint.consecutive_gateway, cfg.consecutive_gateway);
            if !matches!(status, 502..=504) {
                endpoint.consecutive_gateway.store(0, Ordering::Release);
            }
            let any = reached(&endpoint.consecutive_5xx, cfg.consecutive_5xx);
            gateway || any
        } else {
            endpoint.consecutive_5xx.store(0, Ordering::Release);
            endpoint.consecutive_gateway.store(0, Ordering::Release);
            false
        };
        tripped && self.eject_within_limits(endpoint, pool, now)
    }

    /// Ejects `endpoint`, which reached a threshold, unless it already is
    /// ejected or the max-ejection cap forbids it; true when it was.
    fn eject_within_limits<'a>(
        &self,
        endpoint: &EndpointHealth,
        pool: impl Iterator<Item = &'a EndpointHealth>,
        now: Instant,
    ) -> bool {
        let cfg = &self.config;
        if endpoint.is_ejected_at(now) {
            return false;
        }
        let (mut total, mut ejected) = (0u64, 0u64);
        for e in pool {
            total += 1;
            if e.is_ejected_at(now) {
                ejected += 1;
            }
        }
        // Envoy: eject while (ejected + 1) stays within the percentage, and always
        // allow one ejection whatever the percentage.
        let within = (ejected + 1) * 100 <= total * u64::from(cfg.max_ejection_percent);
        if ejected > 0 && !within {
            return false;
        }
        endpoint.eject(cfg, now);
        true
    }

    /// Whether the pool is below the panic threshold (then ejections are ignored).
    pub fn panicking<'a>(
        &self,
        pool: impl Iterator<Item = &'a EndpointHealth>,
        now: Instant,
    ) -> bool {
        if self.config.min_health_percent == 0 {
            return false;
        }
        let (mut total, mut healthy) = (0u64, 0u64);
        for e in pool {
            total += 1;
            if !e.is_ejected_at(now) {
                healthy += 1;
            }
        }
        healthy * 100 < total * u64::from(self.config.min_health_percent)
    }
}
