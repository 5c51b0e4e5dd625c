//! Samples processes' resident memory and open descriptors at a fixed interval, and judges
//! whether they stayed flat (the last third of a run against the first).
use sluice_conformance::mesh::faults::ProcStats;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Samples of one process.
#[derive(Debug, Clone)]
pub struct Series {
    /// What the process is (`sidecar productpage`).
    pub name: String,
    /// One sample per tick while the process was readable.
    pub samples: Vec<ProcStats>,
}

fn mean(xs: impl Iterator<Item = u64>) -> f64 {
    let (sum, n) = xs.fold((0u64, 0u64), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum as f64 / n as f64 }
}

impl Series {
    fn thirds(&self) -> (&[ProcStats], &[ProcStats]) {
        let third = self.samples.len() / 3;
        (
            &self.samples[..third],
            &self.samples[self.samples.len() - third..],
        )
    }

    /// Mean RSS (KiB) of the first and of the last third of the samples.
    pub fn rss_thirds(&self) -> (f64, f64) {
        let (first, last) = self.thirds();
        (
            mean(first.iter().map(|s| s.rss_kib)),
            mean(last.iter().map(|s| s.rss_kib)),
        )
    }

    /// Largest fd count of the first and of the last third.
    pub fn fd_thirds(&self) -> (u64, u64) {
        let (first, last) = self.thirds();
        let max = |s: &[ProcStats]| s.iter().map(|s| s.fds).max().unwrap_or(0);
        (max(first), max(last))
    }

    /// One line for logs and assertion messages.
    pub fn summary(&self) -> String {
        let (r0, r1) = self.rss_thirds();
        let (f0, f1) = self.fd_thirds();
        format!(
            "{}: {} samples, RSS first third {:.0} KiB -> last third {:.0} KiB ({:+.1}%), fds max {f0} -> {f1}",
            self.name,
            self.samples.len(),
            r0,
            r1,
            if r0 > 0.0 {
                (r1 - r0) * 100.0 / r0
            } else {
                0.0
            },
        )
    }

    /// Asserts at least `min_samples` samples, RSS growth of the last third over the first
    /// within `rss_share` of the first or `rss_abs_kib`, whichever is larger, and open
    /// descriptors within `fd_slack` of the first third's peak.
    pub fn assert_flat(&self, min_samples: usize, rss_share: f64, rss_abs_kib: f64, fd_slack: u64) {
        assert!(
            self.samples.len() >= min_samples,
            "{}: only {} samples (the process vanished?)",
            self.name,
            self.samples.len()
        );
        let (r0, r1) = self.rss_thirds();
        let allowed = (r0 * rss_share).max(rss_abs_kib);
        assert!(
            r1 - r0 <= allowed,
            "RSS grew by {:.0} KiB (allowed {allowed:.0}): {}",
            r1 - r0,
            self.summary()
        );
        let (f0, f1) = self.fd_thirds();
        assert!(
            f1 <= f0 + fd_slack,
            "open fds grew (allowed +{fd_slack}): {}",
            self.summary()
        );
    }
}

/// A background sampler.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    series: Arc<Mutex<Vec<Series>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    /// Samples each `(name, pid)` every `every` until [`Sampler::finish`].
    pub fn start(targets: Vec<(String, u32)>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let series = Arc::new(Mutex::new(
            targets
                .iter()
                .map(|(name, _)| Series {
                    name: name.clone(),
                    samples: Vec::new(),
                })
                .collect::<Vec<_>>(),
        ));
        let task = {
            let (stop, series) = (stop.clone(), series.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for (n, (_, pid)) in targets.iter().enumerate() {
                        if let Some(s) = ProcStats::read(*pid) {
                            series.lock().unwrap()[n].samples.push(s);
                        }
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        Self { stop, series, task }
    }

    /// Stops sampling and returns one series per target.
    pub async fn finish(self) -> Vec<Series> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        std::mem::take(&mut *self.series.lock().unwrap())
    }
}
