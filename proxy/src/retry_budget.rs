//! A retry budget (Linkerd / tower style): retries within the last 10 s may
//! not exceed `percent`% of the requests in that window plus a reserve of
//! `min_retries_per_second` for every second of it.

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Seconds of history the budget looks at.
const WINDOW_SECS: u64 = 10;

/// One second of history. `second` is the second it counts plus one (0 = unused).
#[derive(Debug, Default)]
struct Slot {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// Counts requests and retries in one-second slots of atomics.
#[derive(Debug)]
pub struct RetryBudget {
    percent: f64,
    min_retries_per_second: u32,
    start: Instant,
    slots: [Slot; WINDOW_SECS as usize],
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
            start,
            slots: Default::default(),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_secs()
    }

    /// The slot for `second`, cleared first when it still holds an older second.
    fn slot(&self, second: u64) -> &Slot {
        let tag = second + 1;
        let idx = (second % WINDOW_SECS) as usize;
        let slot = &self.slots[idx];
        let seen = slot.second.load(Ordering::Acquire);
        if seen != tag
            && slot
                .second
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Counts racing with the reset land in either second; both are this window.
            slot.requests.store(0, Ordering::Release);
            slot.retries.store(0, Ordering::Release);
        }
        slot
    }

    /// Counts one original request (not a retry).
    pub fn record_request(&self) {
        self.record_request_at(Instant::now());
    }

    /// Counts one original request at `now`.
    pub fn record_request_at(&self, now: Instant) {
        self.slot(self.second(now))
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Withdraws one retry if the budget allows it.
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(Instant::now())
    }

    /// Withdraws one retry at `now` if the budget allows it.
    pub fn try_retry_at(&self, now: Instant) -> bool {
        let second = self.second(now);
        let current = self.slot(second);
        let oldest = (second + 1).saturating_sub(WINDOW_SECS - 1);
        let (mut requests, mut retries) = (0u64, 0u64);
        for slot in &self.slots {
            let tag = slot.second.load(Ordering::Acquire);
            if tag >= oldest && tag <= second + 1 && tag != 0 {
                requests += slot.requests.load(Ordering::Relaxed);
                retries += slot.retries.load(Ordering::Relaxed);
            }
        }
        let reserve = u64::from(self.min_retries_per_second) * WINDOW_SECS;
        let share = (requests as f64 * self.percent / 100.0) as u64;
        if retries >= share + reserve {
            return false;
        }
        current.retries.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The window the budget looks at.
    #[cfg(test)]
    pub fn window() -> std::time::Duration {
        std::time::Duration::from_secs(WINDOW_SECS)
    }
}
