//! Counts over a sliding window of time, kept in ten fixed slots of atomics
//! so recording never locks. Each counter of a slot is one word holding the
//! slot number it counts (upper 40 bits) and its count (lower 24 bits), so a
//! writer moves a slot on to a newer number and counts there in one atomic
//! step: no count is lost to a concurrent reset, and a writer whose clock
//! reading is older than the slot's never moves it back. A sum covers the
//! current slot and the nine before it.

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Slots per window.
const SLOTS: u64 = 10;
/// Bits of a word holding the count.
const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
/// Slot numbers wrap after 2^40 slots (35 years of 1 ms slots).
const TAG_MAX: u64 = (1 << (64 - COUNT_BITS)) - 1;

fn pack(tag: u64, count: u64) -> u64 {
    (tag << COUNT_BITS) | count
}

fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & COUNT_MAX)
}

/// `N` counters summed over the last `window`.
#[derive(Debug)]
pub struct Window<const N: usize> {
    slot_ms: u64,
    start: Instant,
    /// Per slot, per counter: (slot number + 1, count); 0 = unused.
    slots: [[AtomicU64; N]; SLOTS as usize],
}

impl<const N: usize> Window<N> {
    /// A window of `window` (in ten slots of at least 1 ms) whose clock
    /// starts at `start`.
    pub fn new_at(window: Duration, start: Instant) -> Self {
        let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Window {
            slot_ms: (ms / SLOTS).max(1),
            start,
            slots: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// The tag (slot number + 1) of the slot `now` falls in.
    fn tag(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_millis();
        let number = u64::try_from(elapsed).unwrap_or(u64::MAX) / self.slot_ms;
        number.min(TAG_MAX - 1) + 1
    }

    /// Adds one to counter `counter` (< N) at `now`.
    pub fn add(&self, counter: usize, now: Instant) {
        let tag = self.tag(now);
        let Some(word) = self.slots[((tag - 1) % SLOTS) as usize].get(counter) else {
            return;
        };
        // `None`: the slot already counts a newer number; this count is older
        // than the window it could land in.
        let _ = word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
            let (seen, count) = unpack(w);
            match seen.cmp(&tag) {
                std::cmp::Ordering::Equal => Some(pack(tag, (count + 1).min(COUNT_MAX))),
                std::cmp::Ordering::Less => Some(pack(tag, 1)),
                std::cmp::Ordering::Greater => None,
            }
        });
    }

    /// Every counter summed over the window ending at `now`.
    pub fn sums(&self, now: Instant) -> [u64; N] {
        let newest = self.tag(now);
        let oldest = newest.saturating_sub(SLOTS - 1).max(1);
        let mut sums = [0u64; N];
        for slot in &self.slots {
            for (sum, word) in sums.iter_mut().zip(slot) {
                let (tag, count) = unpack(word.load(Ordering::Acquire));
                if (oldest..=newest).contains(&tag) {
                    *sum += count;
                }
            }
        }
        sums
    }
}
