//! Retry conditions (`retry_on`), the backoff schedule and the per-attempt
//! verdict: which answers or failures a route's retry policy retries.

#[cfg(test)]
mod tests;

use std::time::Duration;

use serde::Serialize;

/// Envoy's default backoff base.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// The parsed `retry_on` list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetryOn {
    pub any_5xx: bool,
    pub gateway_error: bool,
    pub reset: bool,
    pub connect_failure: bool,
    pub refused_stream: bool,
    pub retriable_4xx: bool,
    /// Status codes listed by number (with or without `retriable-status-codes`).
    pub statuses: Vec<u16>,
    /// gRPC status codes from `cancelled`, `deadline-exceeded`, ...
    pub grpc: Vec<u8>,
}

impl RetryOn {
    /// Parses a comma list; unknown words are skipped (Istio validated them).
    pub fn parse(list: &str) -> Self {
        let mut on = RetryOn::default();
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "5xx" => on.any_5xx = true,
                "gateway-error" => on.gateway_error = true,
                "reset" => on.reset = true,
                "connect-failure" => on.connect_failure = true,
                "refused-stream" => on.refused_stream = true,
                "retriable-4xx" => on.retriable_4xx = true,
                "cancelled" => on.grpc.push(1),
                "deadline-exceeded" => on.grpc.push(4),
                "resource-exhausted" => on.grpc.push(8),
                "internal" => on.grpc.push(13),
                "unavailable" => on.grpc.push(14),
                // Istio has no way to list codes for this one: only bare numbers count.
                "retriable-status-codes" => {}
                other => {
                    if let Ok(code) = other.parse::<u16>()
                        && (100..600).contains(&code)
                    {
                        on.statuses.push(code);
                    }
                }
            }
        }
        on
    }

    /// Whether the upstream's answer is retried.
    pub fn retries_status(&self, status: u16, grpc_status: Option<u8>) -> bool {
        (self.any_5xx && status >= 500)
            || (self.gateway_error && matches!(status, 502..=504))
            || (self.retriable_4xx && status == 409)
            || self.statuses.contains(&status)
            || grpc_status.is_some_and(|g| self.grpc.contains(&g))
    }

    /// Whether a failure without an answer is retried.
    pub fn retries_failure(&self, failure: Failure) -> bool {
        match failure {
            Failure::Connect => self.any_5xx || self.gateway_error || self.connect_failure,
            Failure::RefusedStream => self.any_5xx || self.refused_stream || self.reset,
            Failure::Reset => self.any_5xx || self.gateway_error || self.reset,
            Failure::PerTryTimeout => self.any_5xx || self.gateway_error || self.reset,
        }
    }
}

/// A failed attempt that produced no upstream answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Connect,
    RefusedStream,
    Reset,
    PerTryTimeout,
}

/// The upper bound of the `retry`-th backoff (1-based): (2^n - 1) x base, capped at 10 x base.
pub fn backoff_ceiling(base: Duration, retry: u32) -> Duration {
    let base = if base.is_zero() {
        DEFAULT_BACKOFF_BASE
    } else {
        base
    };
    let factor = (1u32 << retry.min(16)).saturating_sub(1);
    base.saturating_mul(factor).min(base.saturating_mul(10))
}

/// A full-jitter backoff: uniform in [0, ceiling].
pub fn backoff(base: Duration, retry: u32) -> Duration {
    let ceiling = backoff_ceiling(base, retry).as_micros() as u64;
    Duration::from_micros(fastrand::u64(0..=ceiling))
}
