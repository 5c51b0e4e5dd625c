//! A lock-free token bucket (Envoy local rate limit semantics): starts full,
//! gains `tokens_per_fill` every `fill_interval` up to `max_tokens`.

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket refilled lazily from elapsed time; one atomic word holds
/// both the token count and the fill tick it was computed at, so `acquire`
/// is a single compare-and-swap loop.
#[derive(Debug)]
pub struct TokenBucket {
    max_tokens: u32,
    tokens_per_fill: u32,
    fill_interval: Duration,
    start: Instant,
    /// High 32 bits: fill ticks since `start` (wrapping); low 32: tokens.
    state: AtomicU64,
}

/// The outcome of one `acquire`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether a token was taken.
    pub allowed: bool,
    /// Tokens left after the decision.
    pub remaining: u32,
    /// Time until the next fill.
    pub reset: Duration,
}

fn pack(tick: u32, tokens: u32) -> u64 {
    (u64::from(tick) << 32) | u64::from(tokens)
}

fn unpack(word: u64) -> (u32, u32) {
    ((word >> 32) as u32, word as u32)
}

impl TokenBucket {
    /// A full bucket. `fill_interval` must be non-zero (validated at config time).
    pub fn new(max_tokens: u32, tokens_per_fill: u32, fill_interval: Duration) -> Self {
        Self::new_at(max_tokens, tokens_per_fill, fill_interval, Instant::now())
    }

    /// A full bucket whose clock starts at `start`.
    pub fn new_at(
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval: Duration,
        start: Instant,
    ) -> Self {
        TokenBucket {
            max_tokens,
            tokens_per_fill,
            fill_interval: fill_interval.max(Duration::from_millis(1)),
            start,
            state: AtomicU64::new(pack(0, max_tokens)),
        }
    }

    /// Takes one token if there is one, as of now.
    pub fn acquire(&self) -> Decision {
        self.acquire_at(Instant::now())
    }

    /// Takes one token if there is one, as of `now`.
    pub fn acquire_at(&self, now: Instant) -> Decision {
        // u64 nanoseconds cover 584 years and avoid slow 128-bit division.
        let elapsed = now.saturating_duration_since(self.start).as_nanos() as u64;
        let interval = (self.fill_interval.as_nanos() as u64).max(1);
        // Wrapping is fine: only the difference to the stored tick matters.
        let tick = (elapsed / interval) as u32;
        let reset = Duration::from_nanos(interval - elapsed % interval);
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let (last, tokens) = unpack(current);
            let fills = u64::from(tick.wrapping_sub(last));
            let refilled =
                u64::from(tokens) + fills.saturating_mul(u64::from(self.tokens_per_fill));
            let available = refilled.min(u64::from(self.max_tokens)) as u32;
            let (allowed, left) = match available.checked_sub(1) {
                Some(left) => (true, left),
                None => (false, 0),
            };
            let next = pack(tick, left);
            if next == current {
                return Decision {
                    allowed,
                    remaining: left,
                    reset,
                };
            }
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Decision {
                        allowed,
                        remaining: left,
                        reset,
                    };
                }
                Err(seen) => current = seen,
            }
        }
    }
}
