//! `--config-dir` mode: turns a folder of Istio YAML into a stream of mesh
//! indexes, the same input `kubectl apply` would take.
//!
//! The folder is watched with inotify (the `notify` crate): an event that can
//! mean changed text (a create, write, rename or removal; not the opens and
//! reads of the source's own scans) wakes the source at once. The first
//! change after a quiet period is loaded as soon as every write the watch saw
//! begin has ended (closed, renamed into place or removed; at most one
//! debounce period is spent waiting for that); later changes of the same
//! burst wait for the folder to be quiet for one debounce period (see
//! [`crate::debounce`]). What changed is always
//! decided by comparing every file's size and modification time, so events
//! only say *when* to look: ConfigMaps whose files are swapped through
//! symlinks and editors that write through a temporary file behave like a
//! plain write. A `stat` poll every second stays on as a safety net, for
//! filesystems that send no events (NFS, some bind mounts) and for files
//! written into a new folder before its watch was added; a root that is
//! replaced (deleted and made again, or a symlink pointed elsewhere) is
//! watched again. Without inotify the folder is polled every 100 ms, and a
//! watch is tried again every 10 s.
//! `sluice_config_dir_watching` and `sluice_config_dir_scans_total{trigger}`
//! show which mode is in force.
//!
//! An ingest reads only the files whose stamp (modification and change
//! times, inode, size) differs from the one seen when they were last read;
//! the others keep the text read then (`sluice_config_dir_file_loads_total`).
//! A file changed within [`RACY`] of its last read is read again anyway, as
//! git treats "racily clean" files: a second write in the same timestamp tick
//! with the same size would otherwise look unchanged. For the same reason the
//! folder is loaded once more [`RACY`] after a load that read such a file,
//! even when no stamp moved. Failed reads are never kept.

use crate::debounce::{self, Edge};
use crate::index::{Intake, MeshIndex};
use crate::metrics::{ControllerMetrics, FileLoadLabels, ScanLabels};
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

/// How often to try watching again while the folder is only polled.
const RETRY_WATCH: Duration = Duration::from_secs(10);

/// A file modified this close to (or after) its last read is read again:
/// file timestamps are coarse (a kernel tick; 2 s on FAT, a server's clock on NFS).
const RACY: Duration = Duration::from_secs(2);

/// What identifies one version of a file without reading it. The change time
/// moves on every write and cannot be set back, unlike the modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    changed: (i64, i64),
    inode: u64,
    len: u64,
}

impl Stamp {
    #[cfg(unix)]
    fn of(meta: &std::fs::Metadata) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        Some(Self {
            modified: meta.modified().ok()?,
            changed: (meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
            len: meta.len(),
        })
    }

    #[cfg(not(unix))]
    fn of(meta: &std::fs::Metadata) -> Option<Self> {
        Some(Self {
            modified: meta.modified().ok()?,
            changed: (0, 0),
            inode: 0,
            len: meta.len(),
        })
    }

    /// The later of the modification and change times: the modification time
    /// can be set back (`cp -p`, `tar x`), the change time cannot.
    fn newest(&self) -> SystemTime {
        let (secs, nanos) = self.changed;
        let changed = u64::try_from(secs)
            .ok()
            .and_then(|s| {
                let nanos = u32::try_from(nanos).unwrap_or(0);
                SystemTime::UNIX_EPOCH.checked_add(Duration::new(s, nanos))
            })
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.modified.max(changed)
    }
}

/// A file's text as last read, with the stamp it had just before. Only
/// successful reads are kept: a failed one may be passing (no descriptors
/// left, a network filesystem's hiccup) and is tried again next time.
struct Loaded {
    stamp: Stamp,
    read_at: SystemTime,
    text: Arc<str>,
}

impl Loaded {
    /// Whether the file was last changed longer than `window` before the
    /// read, so an equal stamp now means equal text.
    fn settled(&self, window: Duration) -> bool {
        self.stamp
            .newest()
            .checked_add(window)
            .is_some_and(|clean_after| clean_after < self.read_at)
    }

    /// Whether the text read then is still the file's, judging by `stamp` now.
    fn still_valid(&self, stamp: Option<Stamp>, window: Duration) -> bool {
        stamp == Some(self.stamp) && self.settled(window)
    }
}

/// The folder's files as last read, so an ingest reads only what changed.
struct Texts {
    /// [`RACY`] (tests shorten it).
    window: Duration,
    files: BTreeMap<PathBuf, Loaded>,
    /// Some file of the last load changed too recently to be trusted: the
    /// folder is loaded once more after [`RACY`], even with equal stamps.
    racy: bool,
}

impl Default for Texts {
    fn default() -> Self {
        Self {
            window: RACY,
            files: BTreeMap::new(),
            racy: false,
        }
    }
}

impl Texts {
    /// Every YAML file's text (`Ok`) or why it cannot be read (`Err`), by name
    /// relative to `root`; files whose stamp is as at their last read (and not
    /// racy) are not read again.
    fn load(
        &mut self,
        root: &Path,
        metrics: &ControllerMetrics,
    ) -> BTreeMap<String, Result<Arc<str>, String>> {
        let mut files = BTreeMap::new();
        // Entries are moved over one by one, so files that are gone drop out.
        let mut kept = BTreeMap::new();
        let (mut read, mut reused) = (0u64, 0u64);
        let mut racy = false;
        for path in yaml_files(root) {
            let stamp = std::fs::metadata(&path).ok().and_then(|m| Stamp::of(&m));
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let window = self.window;
            let trusted = self
                .files
                .remove(&path)
                .filter(|l| l.still_valid(stamp, window));
            if let Some(loaded) = trusted {
                reused += 1;
                files.insert(name, Ok(loaded.text.clone()));
                kept.insert(path, loaded);
                continue;
            }
            read += 1;
            let read_at = SystemTime::now();
            let text = std::fs::read_to_string(&path)
                .map(Arc::<str>::from)
                .map_err(|e| e.to_string());
            if let (Some(stamp), Ok(text)) = (stamp, &text) {
                let loaded = Loaded {
                    stamp,
                    read_at,
                    text: text.clone(),
                };
                racy |= !loaded.settled(self.window);
                kept.insert(path, loaded);
            }
            files.insert(name, text);
        }
        self.files = kept;
        self.racy = racy;
        let loads = &metrics.config_dir_file_loads;
        loads
            .get_or_create(&FileLoadLabels { source: "read" })
            .inc_by(read);
        loads
            .get_or_create(&FileLoadLabels { source: "reused" })
            .inc_by(reused);
        files
    }
}

/// Watches a folder and publishes a new [`MeshIndex`] whenever its YAML changes.
pub struct ConfigDir {
    root: PathBuf,
    poll: Duration,
    safety_poll: Duration,
    debounce: Duration,
    metrics: Arc<ControllerMetrics>,
    /// Filled by `load`, then owned by `run`.
    texts: std::sync::Mutex<Texts>,
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
            texts: Default::default(),
        }
    }

    /// Reads the folder once and builds the first index.
    pub fn load(&self, intake: &mut Intake) -> MeshIndex {
        let mut texts = self.texts.lock().unwrap_or_else(|p| p.into_inner());
        let files = texts.load(&self.root, &self.metrics);
        intake.ingest(files, Instant::now(), &self.metrics)
    }

    /// Watches until `tx` is closed, publishing each changed index.
    pub async fn run(self, mut intake: Intake, tx: watch::Sender<Arc<MeshIndex>>) {
        let mut watch = Watch::start(&self.root, self.metrics.config_pending.clone());
        let mut tried = Instant::now();
        let mut last = stamps(&self.root);
        let mut texts = std::mem::take(&mut *self.texts.lock().unwrap_or_else(|p| p.into_inner()));
        let mut recheck = texts
            .racy
            .then(|| tokio::time::Instant::now() + texts.window);
        let mut edge = Edge::new(self.debounce);
        let mut burst = Burst::default();
        let mut keys = intake.key_set_changes();
        loop {
            self.metrics
                .config_dir_watching
                .set(i64::from(watch.is_some()));
            let every = if watch.is_some() {
                self.safety_poll
            } else {
                self.poll
            };
            let woken = async {
                match watch.as_mut() {
                    Some(w) => w.wake.recv().await,
                    None => std::future::pending().await,
                }
            };
            let recheck_due = async {
                match recheck {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let trigger = tokio::select! {
                () = tx.closed() => return,
                r = woken => match r {
                    Some((at, seen)) => {
                        edge.note(at);
                        burst.add(seen);
                        "event"
                    }
                    None => "ended",
                },
                () = tokio::time::sleep(every) => "poll",
                // A file read while racily clean: a second write in the same
                // timestamp tick leaves its stamp equal, so look once more.
                () = recheck_due => "recheck",
                () = crate::jwks::changed(&mut keys) => "keys",
            };
            if trigger == "keys" {
                // A fetched key set changed: the same files, a new revision.
                let files = texts.load(&self.root, &self.metrics);
                let index = intake.ingest(files, Instant::now(), &self.metrics);
                let changed = {
                    let current = tx.borrow();
                    index.changed_from(&current)
                };
                if let Some(index) = changed {
                    tracing::info!(
                        revision = index.revision,
                        "RequestAuthentication key sets changed"
                    );
                    let _ = tx.send(Arc::new(index));
                }
                continue;
            }
            drain(&mut watch, &mut edge, &mut burst);
            // A watch sees nothing once its folder is gone: the root deleted
            // and made again, or a symlinked root pointed elsewhere. Start a
            // new one then, and retry now and again while there is none.
            let stale = trigger == "ended"
                || watch
                    .as_ref()
                    .is_some_and(|w| w.root_id != root_id(&self.root));
            if stale || (watch.is_none() && tried.elapsed() >= RETRY_WATCH) {
                if watch.is_some() {
                    tracing::info!(dir = %self.root.display(), "the config folder changed identity; watching it again");
                }
                watch = Watch::start(&self.root, self.metrics.config_pending.clone());
                tried = Instant::now();
                burst.add(Seen::Unknown);
            }
            // Writes to files the listing skips (a temporary file before
            // its rename) cannot change what a scan sees: no need to scan.
            if trigger == "event" && !burst.touched {
                self.settled(&watch);
                continue;
            }
            burst.touched = false;
            self.metrics
                .config_dir_scans
                .get_or_create(&ScanLabels {
                    trigger: if trigger == "event" { "event" } else { "poll" },
                })
                .inc();
            let now = stamps(&self.root);
            if now == last && trigger != "recheck" {
                // Nothing listed changed: what the events said is moot (a
                // symlink made, which never sends a close, would otherwise
                // hold the next leading edge for a period).
                burst.clear();
                self.settled(&watch);
                continue;
            }
            self.metrics.config_pending.set(1);
            recheck = None;
            let seen = Instant::now();
            // The first change after a quiet period goes out at once, as soon
            // as every write the watch saw begin has ended (a file written in
            // place is read only once it is closed). A poll knows nothing of
            // writes in progress, so it always waits for quiet.
            let mut leading = trigger == "event" && edge.leading() && !burst.unknown;
            let mut settled = now;
            let mut waited = false;
            if leading {
                let (ready, moved) = self.until_settled(&mut watch, &mut edge, &mut burst).await;
                leading = ready;
                waited = seen.elapsed() >= self.debounce;
                // The writes waited for moved the stamps seen before; without
                // a leading edge, the stamps from before the wait are what the
                // folder must still match after a quiet period.
                if ready && moved {
                    settled = stamps(&self.root);
                }
            }
            let (files, settled_at) = loop {
                if !leading {
                    // Debounce: editors and `kubectl`-like writers touch
                    // several files in a row. Under constant churn the folder
                    // is never quiet, so a change waits at most
                    // MAX_DEBOUNCE_ROUNDS debounce periods. A period already
                    // spent waiting for an open write to end counts as the first.
                    for round in 0..MAX_DEBOUNCE_ROUNDS {
                        if round > 0 || !waited {
                            tokio::time::sleep(self.debounce).await;
                        }
                        let again = stamps(&self.root);
                        if again == settled {
                            break;
                        }
                        settled = again;
                    }
                }
                edge.published();
                burst.clear();
                let settled_at = Instant::now();
                let files = texts.load(&self.root, &self.metrics);
                // A listed file that began changing before or while it was
                // read on the leading edge may have been read half written
                // (`cp` of several files, a checkout): wait for quiet instead.
                if leading && drain(&mut watch, &mut edge, &mut burst) && burst.writing() {
                    leading = false;
                    waited = false;
                    settled = stamps(&self.root);
                    continue;
                }
                break (files, settled_at);
            };
            last = settled;
            let read = settled_at.elapsed();
            if texts.racy {
                recheck = Some(tokio::time::Instant::now() + texts.window);
            }
            let index = intake.ingest(files, seen, &self.metrics);
            // Compare first: the watch's read guard must be gone before `send`.
            let changed = {
                let current = tx.borrow();
                index.changed_from(&current)
            };
            if let Some(index) = changed {
                tracing::info!(
                    revision = index.revision,
                    edge = debounce::label(leading),
                    debounce_ms = (settled_at - seen).as_millis() as u64,
                    read_ms = read.as_millis() as u64,
                    build_ms = settled_at.elapsed().as_millis() as u64,
                    "configuration changed"
                );
                self.metrics.record_publish(leading);
                let _ = tx.send(Arc::new(index));
            }
            self.settled(&watch);
        }
    }

    /// Clears `sluice_config_pending` unless events wait to be looked at.
    fn settled(&self, watch: &Option<Watch>) {
        if watch.as_ref().is_none_or(|w| w.wake.is_empty()) {
            self.metrics.config_pending.set(0);
        }
    }

    /// Waits at most one debounce period for the writes the watch saw begin
    /// to end, taking in every event queued before deciding. Returns whether
    /// they did (`false` when one is still open then, or an event it cannot
    /// account for arrived), and whether any event came in meanwhile.
    async fn until_settled(
        &self,
        watch: &mut Option<Watch>,
        edge: &mut Edge,
        burst: &mut Burst,
    ) -> (bool, bool) {
        let deadline = tokio::time::Instant::now() + self.debounce;
        let mut moved = false;
        loop {
            moved |= drain(watch, edge, burst);
            if burst.settled() {
                return (true, moved);
            }
            let Some(w) = watch.as_mut() else {
                return (false, moved);
            };
            if burst.unknown {
                return (false, moved);
            }
            match tokio::time::timeout_at(deadline, w.wake.recv()).await {
                Ok(Some((at, seen))) => {
                    moved = true;
                    edge.note(at);
                    burst.add(seen);
                }
                _ => return (false, moved),
            }
        }
    }
}

/// Takes in every event the watch has queued; whether there was any.
fn drain(watch: &mut Option<Watch>, edge: &mut Edge, burst: &mut Burst) -> bool {
    let Some(w) = watch.as_mut() else {
        return false;
    };
    let mut any = false;
    while let Ok((at, seen)) = w.wake.try_recv() {
        any = true;
        edge.note(at);
        burst.add(seen);
    }
    any
}

/// The inotify side of the source: the watcher (dropping it ends the watch),
/// its events, and which folder the root was when the watch started.
struct Watch {
    _watcher: notify::RecommendedWatcher,
    wake: tokio::sync::mpsc::UnboundedReceiver<(Instant, Seen)>,
    root_id: Option<(u64, u64)>,
}

impl Watch {
    /// Watches `root` and the folders under it; `None`, with a warning, when
    /// the folder cannot be watched (missing, or the inotify limits reached).
    fn start(root: &Path, pending: prometheus_client::metrics::gauge::Gauge) -> Option<Self> {
        use notify::Watcher as _;
        // Unbounded: the source needs every event to know which writes are
        // still open. It drains them at each wake-up, so few wait at once.
        let (tx, wake) = tokio::sync::mpsc::unbounded_channel();
        let handler = move |event: notify::Result<notify::Event>| {
            // Errors (a queue overflow) wake the source too: the stat
            // comparison decides what, if anything, changed.
            let seen = match event {
                Ok(e) if !may_change_files(&e.kind) => return,
                Ok(e) => Seen::of(e),
                Err(_) => Seen::Unknown,
            };
            // Until the source has looked, the published revision may lack it.
            pending.set(1);
            let _ = tx.send((Instant::now(), seen));
        };
        let root_id = root_id(root);
        let watched = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(root, notify::RecursiveMode::Recursive)?;
            Ok(w)
        });
        match watched {
            Ok(w) => {
                tracing::info!(dir = %root.display(), "watching the config folder for changes");
                Some(Self {
                    _watcher: w,
                    wake,
                    root_id,
                })
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
}

/// Whether an event can mean changed YAML. Opens, reads and closes after
/// reading are what the source's own scans cause (waking on them would scan
/// forever), and metadata-only changes (access times, modes) change no text:
/// the safety-net poll still notices a touched file.
fn may_change_files(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        notify::EventKind::Modify(ModifyKind::Metadata(_)) => false,
        _ => true,
    }
}

/// What one watch event says about the writes in progress.
#[derive(Debug)]
enum Seen {
    /// A write began (a file made, or data written): its text may be partial
    /// until the file is closed.
    Began(Vec<PathBuf>),
    /// A file was closed after writing: its text is final.
    Closed(Vec<PathBuf>),
    /// Renamed (into place or away) or removed.
    Moved(Vec<PathBuf>),
    /// A folder made: files may be written into it before it is watched.
    Folder(Vec<PathBuf>),
    /// Anything else (a folder made, a queue overflow): wait for quiet.
    Unknown,
}

impl Seen {
    fn of(event: notify::Event) -> Self {
        use notify::EventKind;
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        match event.kind {
            EventKind::Create(CreateKind::File)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Self::Began(event.paths),
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Self::Closed(event.paths),
            EventKind::Modify(ModifyKind::Name(_)) | EventKind::Remove(_) => {
                Self::Moved(event.paths)
            }
            EventKind::Create(CreateKind::Folder) => Self::Folder(event.paths),
            _ => Self::Unknown,
        }
    }
}

/// Whether the folder's listing can hold `path`: a YAML file whose name is
/// not hidden. Writes to anything else (a temporary file before its rename,
/// an editor's swap file, a README) change no stamp and are not waited for.
/// (A YAML symlink pointing at a file that is not listed is the exception:
/// its writes are found by the safety-net poll.)
fn listed(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.as_encoded_bytes();
        !n.starts_with(b".") && (n.ends_with(b".yaml") || n.ends_with(b".yml"))
    })
}

/// A dot-named path, like the timestamped folder a ConfigMap's files are
/// written into before its `..data` symlink is swapped.
fn hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."))
}

/// The watch events of the current wait: whether the writes they tell of
/// have all ended, so the folder's text is final for now, and whether any
/// can have changed what a scan sees.
#[derive(Debug, Default)]
struct Burst {
    open: std::collections::HashSet<PathBuf>,
    ended: bool,
    unknown: bool,
    /// Some event since the last scan can have changed what it sees.
    touched: bool,
}

impl Burst {
    fn add(&mut self, seen: Seen) {
        match seen {
            Seen::Began(paths) => {
                let paths = paths.into_iter().filter(|p| listed(p));
                let before = self.open.len();
                self.open.extend(paths);
                self.touched |= self.open.len() > before;
            }
            Seen::Closed(paths) => {
                for p in paths.iter().filter(|p| listed(p)) {
                    self.touched = true;
                    self.ended = true;
                    self.open.remove(p);
                }
            }
            // A rename or removal of even a hidden name can change what the
            // listing sees: a ConfigMap's `..data` symlink is swapped so.
            Seen::Moved(paths) => {
                self.touched = true;
                self.ended = true;
                for p in &paths {
                    self.open.remove(p);
                }
            }
            // Nothing is listed from a hidden folder but through a symlink,
            // and those are swapped in by a rename, which is scanned for.
            Seen::Folder(paths) if paths.iter().all(|p| hidden(p)) => {}
            Seen::Folder(_) | Seen::Unknown => {
                self.touched = true;
                self.unknown = true;
            }
        }
    }

    /// Some write to a listed file may still be going on.
    fn writing(&self) -> bool {
        self.unknown || !self.open.is_empty()
    }

    /// Some write ended and none is still open.
    fn settled(&self) -> bool {
        self.ended && !self.unknown && self.open.is_empty()
    }

    /// Gives up on the writes still open: a wait for quiet covered them.
    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// Device and inode of the folder `root` names now (following a symlink).
#[cfg(unix)]
fn root_id(root: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(root).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn root_id(root: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(root).ok().map(|_| (0, 0))
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
            // The entry's type comes with the listing; only a symlink (as in
            // a mounted ConfigMap) costs a stat to see what it points at.
            let is_dir = match entry.file_type() {
                Ok(t) if t.is_symlink() => path.is_dir(),
                Ok(t) => t.is_dir(),
                Err(_) => path.is_dir(),
            };
            if is_dir {
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
            let stamp = Stamp::of(&std::fs::metadata(&p).ok()?)?;
            Some((p, stamp))
        })
        .collect()
}

#[cfg(test)]
mod tests;
