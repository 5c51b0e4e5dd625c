//! The async runtime the sidecar runs on: how many worker threads
//! (Istio's `ProxyConfig.concurrency`) and which scheduler.
//!
//! One worker gets tokio's current-thread scheduler: every task, the I/O
//! driver and the timers share the one thread, with no cross-thread wake-ups
//! or work-stealing queues (tokio's blocking pool still starts threads on
//! demand for DNS lookups and file reads). More workers get the multi-thread
//! scheduler.

#[cfg(test)]
mod tests;

/// Workers when `--concurrency` is unset: Istio's default of two, fewer when
/// the process may use fewer CPUs.
pub const DEFAULT_WORKERS: usize = 2;

/// The worker count for `--concurrency` (`requested`), given the CPUs this
/// process may use (`available`: its affinity mask and cgroup CPU quota).
///
/// - unset: `available`, at most [`DEFAULT_WORKERS`] (Istio's fallback
///   when the sidecar has no CPU limit; injection passes the limit, rounded
///   up, when there is one);
/// - `0`: every CPU this process may use (Istio's "all cores", bounded by
///   the container's affinity and CPU limit rather than the host's count);
/// - `N`: `N`, as asked.
pub fn workers(requested: Option<usize>, available: usize) -> usize {
    let available = available.max(1);
    match requested {
        None => available.min(DEFAULT_WORKERS),
        Some(0) => available,
        Some(n) => n,
    }
}

/// The CPUs this process may use; 1 when the platform cannot say.
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Which scheduler a worker count gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// One thread runs everything.
    CurrentThread,
    /// Work-stealing workers.
    MultiThread(usize),
}

impl Scheduler {
    /// The scheduler for `workers` worker threads.
    pub fn for_workers(workers: usize) -> Self {
        if workers <= 1 {
            Scheduler::CurrentThread
        } else {
            Scheduler::MultiThread(workers)
        }
    }

    /// Builds the runtime (I/O and timers enabled).
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Scheduler::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Scheduler::MultiThread(n) => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(n)
                .enable_all()
                .build(),
        }
    }

    /// Worker threads (the current-thread scheduler counts as one).
    pub fn workers(self) -> usize {
        match self {
            Scheduler::CurrentThread => 1,
            Scheduler::MultiThread(n) => n,
        }
    }
}
