//! `--config-dir` mode: turns a folder of Istio YAML into a stream of mesh
//! indexes, the same input `kubectl apply` would take.
//!
//! The folder is polled (cheap `stat`s) rather than watched with inotify, so it
//! works the same on every filesystem, including bind mounts and ConfigMaps
//! whose files are swapped through symlinks.

use crate::index::{Intake, MeshIndex};
use crate::metrics::ControllerMetrics;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Longest wait for a quiet folder, in debounce periods.
const MAX_DEBOUNCE_ROUNDS: u32 = 10;

/// What identifies one version of a file without reading it.
type Stamp = (SystemTime, u64);

/// Watches a folder and publishes a new [`MeshIndex`] whenever its YAML changes.
pub struct ConfigDir {
    root: PathBuf,
    poll: Duration,
    debounce: Duration,
    metrics: Arc<ControllerMetrics>,
}

impl ConfigDir {
    /// Creates a watcher of `root`.
    pub fn new(root: PathBuf, debounce: Duration, metrics: Arc<ControllerMetrics>) -> Self {
        Self {
            root,
            poll: Duration::from_millis(100),
            debounce,
            metrics,
        }
    }

    /// Reads the folder once and builds the first index.
    pub fn load(&self, intake: &mut Intake) -> MeshIndex {
        let files = read_files(&self.root);
        intake.ingest(files, Instant::now(), &self.metrics)
    }

    /// Polls until `tx` is closed, publishing each changed index.
    pub async fn run(self, mut intake: Intake, tx: watch::Sender<Arc<MeshIndex>>) {
        let mut last = stamps(&self.root);
        loop {
            tokio::time::sleep(self.poll).await;
            if tx.is_closed() {
                return;
            }
            let now = stamps(&self.root);
            if now == last {
                continue;
            }
            let seen = Instant::now();
            // Debounce: editors and `kubectl`-like writers touch several files
            // in a row. Under constant churn the folder is never quiet, so a
            // change waits at most MAX_DEBOUNCE_ROUNDS debounce periods.
            let mut settled = now;
            for _ in 0..MAX_DEBOUNCE_ROUNDS {
                tokio::time::sleep(self.debounce).await;
                let again = stamps(&self.root);
                if again == settled {
                    break;
                }
                settled = again;
            }
            last = settled;
            let files = read_files(&self.root);
            let index = intake.ingest(files, seen, &self.metrics);
            // Compare first: the watch's read guard must be gone before `send`.
            let changed = {
                let current = tx.borrow();
                index.changed_from(&current)
            };
            if let Some(index) = changed {
                tracing::info!(revision = index.revision, "configuration changed");
                let _ = tx.send(Arc::new(index));
            }
        }
    }
}

fn yaml_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn stamps(root: &Path) -> BTreeMap<PathBuf, Stamp> {
    yaml_files(root)
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            Some((p, (meta.modified().ok()?, meta.len())))
        })
        .collect()
}

/// Reads every YAML file: `Ok(text)` or `Err(reason)` per path.
fn read_files(root: &Path) -> BTreeMap<String, Result<String, String>> {
    yaml_files(root)
        .into_iter()
        .map(|p| {
            let name = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&p).map_err(|e| e.to_string());
            (name, text)
        })
        .collect()
}
