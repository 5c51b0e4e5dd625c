//! Steady load for fault tests: a few workers, each sending one bounded request at a time
//! with a pause between, recording every outcome (when, status, error, latency) so a test
//! can assert totals and look at what happened in a window.
use sluice_conformance::client::{self, Call};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One finished request.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it was sent, from the start of the load.
    pub at: Duration,
    /// HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// Why no answer came.
    pub error: Option<String>,
    /// How long it took.
    pub latency: Duration,
    /// The answering echo's version.
    pub version: Option<String>,
}

impl Record {
    /// A 200 answer.
    pub fn ok(&self) -> bool {
        self.status == Some(200)
    }
}

/// Load running in the background until [`Load::finish`].
pub struct Load {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    start: Instant,
}

impl Load {
    /// Starts `workers` loops, each sending `make()` and then pausing `pause`.
    pub fn start<F>(workers: usize, pause: Duration, make: F) -> Self
    where
        F: Fn() -> Call + Send + Sync + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let make = Arc::new(make);
        let start = Instant::now();
        let workers = (0..workers)
            .map(|_| {
                let (stop, records, make) = (stop.clone(), records.clone(), make.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let at = start.elapsed();
                        let o = client::send(&make()).await;
                        let r = Record {
                            at,
                            status: o.status,
                            error: o.error.clone(),
                            latency: o.latency,
                            version: o.version().map(str::to_owned),
                        };
                        records.lock().unwrap().push(r);
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Self {
            stop,
            records,
            workers,
            start,
        }
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Requests finished so far.
    pub fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Keeps the load running until at least `min` requests have finished (or a minute has
    /// passed), then stops it as [`Load::finish`] does. On a busy machine a fault window holds
    /// fewer requests than planned; the extra requests after the fault still must succeed, and
    /// [`Report::assert_all_ok`] still fails if the load stalled.
    pub async fn finish_after(self, min: usize) -> Report {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count() < min && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.finish().await
    }

    /// Stops the workers, waits for their last request and returns every record.
    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let records = std::mem::take(&mut *self.records.lock().unwrap());
        Report { records }
    }
}

/// Everything a load run saw.
#[derive(Debug)]
pub struct Report {
    /// Every request, in finishing order.
    pub records: Vec<Record>,
}

impl Report {
    /// 200 answers.
    pub fn ok(&self) -> usize {
        self.records.iter().filter(|r| r.ok()).count()
    }

    /// Everything that was not a 200.
    pub fn failures(&self) -> Vec<&Record> {
        self.records.iter().filter(|r| !r.ok()).collect()
    }

    /// Requests that answered with `version`.
    pub fn answered_by(&self, version: &str) -> usize {
        self.records
            .iter()
            .filter(|r| r.version.as_deref() == Some(version))
            .count()
    }

    /// Slowest request.
    pub fn max_latency(&self) -> Duration {
        self.records
            .iter()
            .map(|r| r.latency)
            .max()
            .unwrap_or_default()
    }

    /// The first failures, for assertion messages.
    pub fn describe_failures(&self) -> String {
        let f = self.failures();
        let shown: Vec<String> = f
            .iter()
            .take(10)
            .map(|r| format!("at {:?}: {:?} {:?}", r.at, r.status, r.error))
            .collect();
        format!(
            "{} of {} failed; first: {shown:?}",
            f.len(),
            self.records.len()
        )
    }

    /// Asserts that every request got a 200 and that at least `min` were sent.
    pub fn assert_all_ok(&self, min: usize) {
        assert!(
            self.failures().is_empty(),
            "client-visible errors: {}",
            self.describe_failures()
        );
        assert!(
            self.records.len() >= min,
            "only {} requests sent (wanted at least {min})",
            self.records.len()
        );
    }
}
