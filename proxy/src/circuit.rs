//! Circuit breaking for one cluster (DestinationRule `connectionPool`):
//! connection slots, requests waiting for one, concurrent requests and
//! concurrent retries, the latter either a fixed limit or Envoy's retry
//! budget (DestinationRule `retryBudget`). Overflow is answered at once (503,
//! flag `UO`); a retry the limit refuses is not made.

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::window::Window;

/// The limits; 0 = unlimited.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Requests on the wire at once, one per (HTTP/1-style) connection.
    pub max_connections: u32,
    /// Requests waiting for a connection slot.
    pub max_pending: u32,
    /// Concurrent requests (http2MaxRequests).
    pub max_requests: u32,
    /// Concurrent retries (when there is no `retry_budget`).
    pub max_retries: u32,
    /// Concurrent retries as a share of requests, replacing `max_retries`.
    pub retry_budget: Option<RetryBudgetLimit>,
}

/// Envoy's retry budget: concurrent retries may not exceed
/// `max(percent% of the requests counted, min_concurrency)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RetryBudgetLimit {
    /// The share in hundredths of a percent (2000 = 20 %).
    pub basis_points: u32,
    /// Concurrent retries always allowed.
    pub min_concurrency: u32,
    /// 0: the requests active and pending now are counted; otherwise those
    /// started in the last this many milliseconds.
    pub interval_ms: u64,
}

/// Which limit overflowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// A TCP connection past `max_connections`.
    Connections,
    Requests,
    Pending,
    Retries,
    /// A retry past the retry budget.
    RetryBudget,
}

impl Overflow {
    /// The `kind` metric label.
    pub fn kind(self) -> &'static str {
        match self {
            Overflow::Connections => "max_connections",
            Overflow::Requests => "max_requests",
            Overflow::Pending => "pending",
            Overflow::Retries => "retries",
            Overflow::RetryBudget => "retry_budget",
        }
    }
}

/// Counters shared by every request to a cluster.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// The configured limits.
    pub limits: Limits,
    slots: Option<Arc<Semaphore>>,
    pending: Arc<AtomicU32>,
    requests: Arc<AtomicU32>,
    retries: Arc<AtomicU32>,
    /// Requests started recently, for a retry budget with an interval.
    started: Option<Window<1>>,
}

/// Decrements a counter when dropped.
#[derive(Debug)]
pub struct Held(Arc<AtomicU32>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one unit of `counter` unless it is at `max` (0 = no limit).
fn take(counter: &Arc<AtomicU32>, max: u32) -> Option<Held> {
    let before = counter.fetch_add(1, Ordering::AcqRel);
    let held = Held(Arc::clone(counter));
    (max == 0 || before < max).then_some(held)
}

/// A request's place in the cluster: released when dropped.
#[derive(Debug)]
pub struct Admission {
    _request: Held,
    _slot: Option<OwnedSemaphorePermit>,
}

impl CircuitBreaker {
    /// A breaker with `limits` and nothing in flight.
    pub fn new(limits: Limits) -> Self {
        let slots = (limits.max_connections > 0)
            .then(|| Arc::new(Semaphore::new(limits.max_connections as usize)));
        let started = limits
            .retry_budget
            .filter(|b| b.interval_ms > 0)
            .map(|b| Window::new_at(Duration::from_millis(b.interval_ms), Instant::now()));
        CircuitBreaker {
            limits,
            slots,
            pending: Arc::default(),
            requests: Arc::default(),
            retries: Arc::default(),
            started,
        }
    }

    /// Admits a request, waiting for a connection slot when the pending queue
    /// has room. As in Envoy, `max_requests` counts the requests on the wire
    /// (checked once a slot is held), not those still waiting in the queue.
    pub async fn admit(&self) -> Result<Admission, Overflow> {
        let slot = match &self.slots {
            None => None,
            Some(slots) => match Arc::clone(slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    let _pending =
                        take(&self.pending, self.limits.max_pending).ok_or(Overflow::Pending)?;
                    // The semaphore is never closed, so this only fails if it were.
                    let slot = Arc::clone(slots)
                        .acquire_owned()
                        .await
                        .map_err(|_| Overflow::Pending)?;
                    Some(slot)
                }
            },
        };
        let request = take(&self.requests, self.limits.max_requests).ok_or(Overflow::Requests)?;
        if let Some(started) = &self.started {
            started.add(0, Instant::now());
        }
        Ok(Admission {
            _request: request,
            _slot: slot,
        })
    }

    /// Takes a connection slot for a TCP connection at once (TCP has no pending queue);
    /// `None` when connections are unlimited.
    pub fn try_connection(&self) -> Result<Option<OwnedSemaphorePermit>, Overflow> {
        match &self.slots {
            None => Ok(None),
            Some(slots) => Arc::clone(slots)
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| Overflow::Connections),
        }
    }

    /// Takes a concurrent-retry unit, if the retry budget (or else
    /// `max_retries`) allows one more.
    ///
    /// As in Envoy, the unit is held from this decision until the retried
    /// attempt's answer, while the request itself is counted as active only
    /// when it has an attempt admitted: during the backoff it holds a unit but
    /// is not among the requests the budget's share is taken of. Many callers
    /// failing at once can so find a 100 % budget full (their retries wait in
    /// backoff, their requests no longer count); `min_concurrency` is the floor.
    pub fn try_retry(&self) -> Result<Held, Overflow> {
        let Some(budget) = self.limits.retry_budget else {
            return take(&self.retries, self.limits.max_retries).ok_or(Overflow::Retries);
        };
        let counted = match &self.started {
            Some(started) => started.sums(Instant::now())[0],
            // Envoy: active plus pending requests.
            None => u64::from(
                self.requests
                    .load(Ordering::Acquire)
                    .saturating_add(self.pending.load(Ordering::Acquire)),
            ),
        };
        let share = counted.saturating_mul(u64::from(budget.basis_points)) / 10_000;
        let max = share.max(u64::from(budget.min_concurrency));
        let before = self.retries.fetch_add(1, Ordering::AcqRel);
        let held = Held(Arc::clone(&self.retries));
        if u64::from(before) < max {
            Ok(held)
        } else {
            Err(Overflow::RetryBudget)
        }
    }
}
