//! Counts over a sliding window of time, kept in ten fixed slots of atomics
//! so recording never locks. A slot is cleared by the first writer that finds
//! it holding an older slot's counts; a sum covers the current slot and the
//! nine before it.

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Slots per window.
const SLOTS: u64 = 10;

/// One slot: `tag` is the slot number it counts plus one (0 = unused).
#[derive(Debug)]
struct Slot<const N: usize> {
    tag: AtomicU64,
    counts: [AtomicU64; N],
}

/// `N` counters summed over the last `window`.
#[derive(Debug)]
pub struct Window<const N: usize> {
    slot_ms: u64,
    start: Instant,
    slots: [Slot<N>; SLOTS as usize],
}

impl<const N: usize> Window<N> {
    /// A window of `window` (at least 10 ms) whose clock starts at `start`.
    pub fn new_at(window: Duration, start: Instant) -> Self {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Window {
            slot_ms: (ms / SLOTS).max(1),
            start,
            slots: std::array::from_fn(|_| Slot {
                tag: AtomicU64::new(0),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
        }
    }

    fn slot_number(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_millis();
        u64::try_from(elapsed).unwrap_or(u64::MAX) / self.slot_ms
    }

    /// Adds one to counter `counter` (< N) at `now`.
    pub fn add(&self, counter: usize, now: Instant) {
        let number = self.slot_number(now);
        let tag = number.saturating_add(1);
        let slot = &self.slots[(number % SLOTS) as usize];
        let seen = slot.tag.load(Ordering::Acquire);
        if seen != tag
            && slot
                .tag
                .compare_exchange(seen, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Counts racing with the reset land in either slot; both are in the window.
            for c in &slot.counts {
                c.store(0, Ordering::Release);
            }
        }
        if let Some(c) = slot.counts.get(counter) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every counter summed over the window ending at `now`.
    pub fn sums(&self, now: Instant) -> [u64; N] {
        let newest = self.slot_number(now).saturating_add(1);
        let oldest = newest.saturating_sub(SLOTS - 1);
        let mut sums = [0u64; N];
        for slot in &self.slots {
            let tag = slot.tag.load(Ordering::Acquire);
            if tag != 0 && (oldest..=newest).contains(&tag) {
                for (sum, c) in sums.iter_mut().zip(&slot.counts) {
                    *sum += c.load(Ordering::Relaxed);
                }
            }
        }
        sums
    }
}
