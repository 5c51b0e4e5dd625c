//! `--config-dir` mode: turns a folder of Istio YAML into a stream of mesh
//! indexes, the same input `kubectl apply` would take.
//!
//! The folder is watched with inotify (the `notify` crate): an event wakes the
//! source at once, then it waits for the folder to be quiet for one debounce
//! period. What changed is always decided by comparing every file's size and
//! modification time, so events only say *when* to look, never *what* changed:
//! ConfigMaps whose files are swapped through symlinks and editors that write
//! through a temporary file behave like a plain write. A slow `stat` poll
//! (every second) stays on as a safety net for filesystems that send no events
//! (NFS, some bind mounts) and for a lost watch; without inotify the folder is
//! polled every 100 ms, as before.

use crate::index::{Intake, MeshIndex};
use crate::metrics::ControllerMetrics;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Longest wait for a quiet folder, in debounce periods.
const MAX_DEBOUNCE_ROUNDS: u32 = 10;

/// Poll period when the folder cannot be watched.
const POLL: Duration = Duration::from_millis(100);

/// Poll period next to a working watch: a safety net, not the way changes arrive.
const SAFETY_POLL: Duration = Duration::from_secs(1);

/// What identifies one version of a file without reading it.
type Stamp = (SystemTime, u64);

/// Watches a folder and publishes a new [`MeshIndex`] whenever its YAML changes.
pub struct ConfigDir {
    root: PathBuf,
    poll: Duration,
    safety_poll: Duration,
    debounce: Duration,
    metrics: Arc<ControllerMetrics>,
}

impl ConfigDir {
    /// Creates a watcher of `root`.
    pub fn new(root: PathBuf, debounce: Duration, metrics: Arc<ControllerMetrics>) -> Self {
        Self {
            root,
            poll: POLL,
            safety_poll: SAFETY_POLL,
            debounce,
            metrics,
        }
    }

    /// Reads the folder once and builds the first index.
    pub fn load(&self, intake: &mut Intake) -> MeshIndex {
        let files = read_files(&self.root);
        intake.ingest(files, Instant::now(), &self.metrics)
    }

    /// Watches until `tx` is closed, publishing each changed index.
    pub async fn run(self, mut intake: Intake, tx: watch::Sender<Arc<MeshIndex>>) {
        let (wake_tx, wake) = tokio::sync::mpsc::channel::<()>(1);
        // Kept alive for the whole loop: dropping the watcher ends the watch.
        let watcher = watch_folder(&self.root, wake_tx);
        let (mut wake, mut every) = if watcher.is_some() {
            (Some(wake), self.safety_poll)
        } else {
            (None, self.poll)
        };
        let mut last = stamps(&self.root);
        loop {
            let woken = async {
                match wake.as_mut() {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            };
            let watch_ended = tokio::select! {
                r = woken => r.is_none(),
                () = tokio::time::sleep(every) => false,
            };
            if watch_ended {
                tracing::warn!(
                    dir = %self.root.display(),
                    "the config folder watch ended; polling it every 100 ms"
                );
                wake = None;
                every = self.poll;
            }
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

/// Starts an inotify watch of `root` (and the folders under it) that wakes the
/// source on any event; `None`, with a warning, when the folder cannot be watched.
fn watch_folder(
    root: &Path,
    wake: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |_event: notify::Result<notify::Event>| {
        // A full channel already holds a wake-up; errors (a queue overflow, a
        // removed folder) wake the source too, and the stat comparison decides.
        let _ = wake.try_send(());
    };
    let watched = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(root, notify::RecursiveMode::Recursive)?;
        Ok(w)
    });
    match watched {
        Ok(w) => {
            tracing::info!(dir = %root.display(), "watching the config folder for changes");
            Some(w)
        }
        Err(error) => {
            tracing::warn!(
                dir = %root.display(),
                %error,
                "cannot watch the config folder; polling it every 100 ms"
            );
            None
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

#[cfg(test)]
mod tests;
