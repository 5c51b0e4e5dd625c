//! A retry budget (Linkerd / tower style): retries within the last 10 s may
//! not exceed `percent`% of the requests in that window plus a reserve of
//! `min_retries_per_second` for every second of it.

#[cfg(test)]
mod tests;

use std::time::Duration;
use tokio::time::Instant;

use super::window::Window;

/// Seconds of history the budget looks at.
const WINDOW_SECS: u64 = 10;

/// Counter indexes in the window.
const REQUESTS: usize = 0;
const RETRIES: usize = 1;

/// Requests and retries of the last 10 s.
#[derive(Debug)]
pub struct RetryBudget {
    percent: f64,
    min_retries_per_second: u32,
    window: Window<2>,
}

impl RetryBudget {
    /// A budget with no history.
    pub fn new(percent: f64, min_retries_per_second: u32) -> Self {
        Self::new_at(percent, min_retries_per_second, Instant::now())
    }

    /// A budget whose clock starts at `start`.
    pub fn new_at(percent: f64, min_retries_per_second: u32, start: Instant) -> Self {
        RetryBudget {
            percent: percent.clamp(0.0, 100.0),
            min_retries_per_second,
            window: Window::new_at(Duration::from_secs(WINDOW_SECS), start),
        }
    }

    /// Counts one original request (not a retry).
    pub fn record_request(&self) {
        self.record_request_at(Instant::now());
    }

    /// Counts one original request at `now`.
    pub fn record_request_at(&self, now: Instant) {
        self.window.add(REQUESTS, now);
    }

    /// Withdraws one retry if the budget allows it.
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(Instant::now())
    }

    /// Withdraws one retry at `now` if the budget allows it.
    pub fn try_retry_at(&self, now: Instant) -> bool {
        let sums = self.window.sums(now);
        let reserve = u64::from(self.min_retries_per_second) * WINDOW_SECS;
        let share = (sums[REQUESTS] as f64 * self.percent / 100.0) as u64;
        if sums[RETRIES] >= share + reserve {
            return false;
        }
        self.window.add(RETRIES, now);
        true
    }

    /// The window the budget looks at.
    #[cfg(test)]
    pub fn window() -> std::time::Duration {
        std::time::Duration::from_secs(WINDOW_SECS)
    }
}
