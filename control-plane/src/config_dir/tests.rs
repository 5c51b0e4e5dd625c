//! The watch on a real folder. Both polls are set to an hour, so a change can
//! only arrive through the inotify watch.
use super::*;

const SE: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: NAME
  namespace: default
spec:
  hosts: [NAME.example.com]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 10.1.2.3
";

fn service_entry(name: &str) -> String {
    SE.replace("NAME", name)
}

struct Running {
    rx: watch::Receiver<Arc<MeshIndex>>,
    metrics: Arc<ControllerMetrics>,
    _task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn publishes(&self, edge: &'static str) -> u64 {
        self.metrics
            .config_publishes
            .get_or_create(&crate::metrics::PublishLabels { edge })
            .get()
    }

    fn scans(&self, trigger: &'static str) -> u64 {
        self.metrics
            .config_dir_scans
            .get_or_create(&ScanLabels { trigger })
            .get()
    }
}

fn start(root: &Path) -> Running {
    // Neither poll can find the change within the tests' 20 s.
    start_with(root, Duration::from_secs(3600))
}

fn start_with(root: &Path, safety_poll: Duration) -> Running {
    start_full(root, safety_poll, Duration::from_millis(10))
}

fn start_full(root: &Path, safety_poll: Duration, debounce: Duration) -> Running {
    let metrics = Arc::new(ControllerMetrics::new());
    let mut dir = ConfigDir::new(root.to_path_buf(), debounce, metrics.clone());
    dir.poll = Duration::from_secs(3600);
    dir.safety_poll = safety_poll;
    // Files written by the test are seconds old at most: with the real racy
    // window every read would be a re-read, and stamps would never be trusted.
    dir.texts.get_mut().unwrap().window = Duration::ZERO;
    let mut intake = Intake::new();
    let first = dir.load(&mut intake);
    let (tx, rx) = watch::channel(Arc::new(first));
    Running {
        rx,
        metrics,
        _task: tokio::spawn(dir.run(intake, tx)),
    }
}

/// Waits for an index holding a ServiceEntry named `name`.
async fn until_has(r: &mut Running, name: &str) -> Arc<MeshIndex> {
    let wait = async {
        loop {
            let has =
                r.rx.borrow()
                    .of_kind("ServiceEntry")
                    .any(|se| se.name() == name);
            if has {
                return r.rx.borrow().clone();
            }
            if r.rx.changed().await.is_err() {
                panic!("config source stopped");
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(20), wait).await {
        Ok(index) => index,
        Err(_) => panic!("ServiceEntry {name} never arrived through the watch"),
    }
}

#[tokio::test]
async fn a_new_file_arrives_through_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), service_entry("a")).unwrap();
    let mut r = start(dir.path());
    assert!(
        r.rx.borrow()
            .of_kind("ServiceEntry")
            .any(|se| se.name() == "a")
    );
    // Let the watch start before writing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("b.yaml"), service_entry("b")).unwrap();
    let index = until_has(&mut r, "b").await;
    assert_eq!(index.of_kind("ServiceEntry").count(), 2);
}

#[tokio::test]
async fn a_folder_made_after_the_start_is_watched_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start(dir.path());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sub = dir.path().join("team-a");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("c.yaml"), service_entry("c")).unwrap();
    until_has(&mut r, "c").await;
    // A second write inside the new folder: the watch covers it, not only
    // the event that created it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(sub.join("d.yaml"), service_entry("d")).unwrap();
    until_has(&mut r, "d").await;
}

#[cfg(unix)]
#[tokio::test]
async fn a_configmap_style_symlink_swap_is_seen() {
    // How the kubelet updates a mounted ConfigMap: the files are symlinks
    // through `..data`, which is atomically renamed to a new timestamped folder.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = root.join("..2026_11_26_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("mesh.yaml"), service_entry("old")).unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v1", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/mesh.yaml", root.join("mesh.yaml")).unwrap();
    let mut r = start(root);
    assert!(
        r.rx.borrow()
            .of_kind("ServiceEntry")
            .any(|se| se.name() == "old")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v2 = root.join("..2026_11_26_v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("mesh.yaml"), service_entry("new")).unwrap();
    std::os::unix::fs::symlink("..2026_11_26_v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    let index = until_has(&mut r, "new").await;
    assert!(!index.of_kind("ServiceEntry").any(|se| se.name() == "old"));
}

#[tokio::test]
async fn an_idle_folder_is_not_scanned_over_and_over() {
    // The source's own scans open every folder and file; those events must
    // not wake it again, or it scans in a loop.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/a.yaml"), service_entry("a")).unwrap();
    let mut r = start(dir.path());
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("b.yaml"), service_entry("b")).unwrap();
    until_has(&mut r, "b").await;
    let after_change = r.scans("event");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = r.scans("event") - after_change;
    assert!(idle <= 2, "{idle} scans in 1 s of an idle folder");
    assert_eq!(r.metrics.config_dir_watching.get(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_root_pointed_elsewhere_is_watched_again() {
    // The watch follows the symlink to the folder it named; once the link
    // points elsewhere, the safety poll notices and a new watch starts.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(a.join("mesh.yaml"), service_entry("first")).unwrap();
    std::fs::write(b.join("mesh.yaml"), service_entry("second")).unwrap();
    let root = dir.path().join("config");
    std::os::unix::fs::symlink(&a, &root).unwrap();
    let mut r = start_with(&root, Duration::from_millis(300));
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::os::unix::fs::symlink(&b, dir.path().join("config.tmp")).unwrap();
    std::fs::rename(dir.path().join("config.tmp"), &root).unwrap();
    until_has(&mut r, "second").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = r.scans("event");
    std::fs::write(b.join("more.yaml"), service_entry("third")).unwrap();
    until_has(&mut r, "third").await;
    assert!(
        r.scans("event") > before,
        "the write in the new folder arrived through the safety poll, not a new watch"
    );
}

/// Writes `text` to `path` and sets its modification time an hour back, so
/// its text is trusted after one read (it is not racily clean).
fn write_old(path: &Path, text: &str) -> SystemTime {
    std::fs::write(path, text).unwrap();
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(an_hour_ago).unwrap();
    an_hour_ago
}

impl Running {
    fn loads(&self, source: &'static str) -> u64 {
        self.metrics
            .config_dir_file_loads
            .get_or_create(&FileLoadLabels { source })
            .get()
    }
}

#[tokio::test]
async fn an_ingest_reads_only_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        write_old(
            &dir.path().join(format!("{name}.yaml")),
            &service_entry(name),
        );
    }
    let mut r = start(dir.path());
    assert_eq!((r.loads("read"), r.loads("reused")), (3, 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("c.yaml"), service_entry("renamed")).unwrap();
    let index = until_has(&mut r, "renamed").await;
    assert_eq!(index.of_kind("ServiceEntry").count(), 3);
    assert_eq!((r.loads("read"), r.loads("reused")), (4, 2));
}

#[tokio::test]
async fn a_same_size_rewrite_with_its_old_modification_time_is_read() {
    // An editor or tool that restores the modification time, with text of the
    // same length: the change time (and, here, nothing else) gives it away.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mesh.yaml");
    let mtime = write_old(&path, &service_entry("aaaa"));
    let mut r = start(dir.path());
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(&path, service_entry("bbbb")).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(mtime).unwrap();
    let index = until_has(&mut r, "bbbb").await;
    assert!(!index.of_kind("ServiceEntry").any(|se| se.name() == "aaaa"));
}

#[test]
fn loaded_text_is_trusted_only_for_an_equal_stamp_changed_well_before_the_read() {
    let now = SystemTime::now();
    let stamp = |modified| Stamp {
        modified,
        changed: (1, 2),
        inode: 7,
        len: 100,
    };
    let loaded = |modified| Loaded {
        stamp: stamp(modified),
        read_at: now,
        text: "".into(),
    };
    let old = now - Duration::from_secs(60);
    assert!(loaded(old).still_valid(Some(stamp(old)), RACY));
    // Modified within RACY of the read: a second write in the same tick
    // could hide behind an equal stamp.
    let recent = now - Duration::from_millis(500);
    assert!(!loaded(recent).still_valid(Some(stamp(recent)), RACY));
    let other_inode = Stamp {
        inode: 8,
        ..stamp(old)
    };
    assert!(!loaded(old).still_valid(Some(other_inode), RACY));
    assert!(!loaded(old).still_valid(None, RACY));
    // A modification time set back does not hide a recent change time.
    let recent_secs = (now - Duration::from_millis(500))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let backdated = Stamp {
        changed: (i64::try_from(recent_secs).unwrap(), 0),
        ..stamp(old)
    };
    let l = Loaded {
        stamp: backdated,
        read_at: now,
        text: "".into(),
    };
    assert!(!l.still_valid(Some(backdated), RACY));
}

#[tokio::test]
async fn a_racily_read_file_is_read_once_more_then_trusted() {
    let dir = tempfile::tempdir().unwrap();
    // A 300 ms window: the folder is looked at again 300 ms after a read of a
    // file changed less than 300 ms before it.
    let metrics = Arc::new(ControllerMetrics::new());
    let mut racy = ConfigDir::new(
        dir.path().to_path_buf(),
        Duration::from_millis(10),
        metrics.clone(),
    );
    racy.poll = Duration::from_secs(3600);
    racy.safety_poll = Duration::from_secs(3600);
    racy.texts.get_mut().unwrap().window = Duration::from_millis(300);
    std::fs::write(dir.path().join("a.yaml"), service_entry("a")).unwrap();
    let mut intake = Intake::new();
    let (tx, _rx) = watch::channel(Arc::new(racy.load(&mut intake)));
    let reads = || {
        metrics
            .config_dir_file_loads
            .get_or_create(&FileLoadLabels { source: "read" })
            .get()
    };
    assert_eq!(reads(), 1);
    let _task = tokio::spawn(racy.run(intake, tx));
    // No write after this: only the recheck reads the file again, once.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        reads(),
        2,
        "the racily read file was read exactly once more"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(reads(), 2, "a settled file is trusted");
}

/// A debounce far longer than any wait of the tests below, so whether a
/// change waited for it is plain.
const LONG: Duration = Duration::from_secs(30);

fn start_debounced(root: &Path, debounce: Duration) -> Running {
    start_full(root, Duration::from_secs(3600), debounce)
}

#[tokio::test]
async fn a_lone_write_after_a_quiet_period_is_published_without_the_debounce() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start_debounced(dir.path(), LONG);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Written in place (made, written, closed) and through a temporary file
    // renamed into place, as `kubectl`-like writers and editors do.
    std::fs::write(dir.path().join("a.yaml"), service_entry("a")).unwrap();
    until_has(&mut r, "a").await;
    assert_eq!(r.publishes("leading"), 1);
    assert_eq!(r.publishes("trailing"), 0);
}

#[tokio::test]
async fn a_write_through_a_renamed_temporary_file_is_published_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start_debounced(dir.path(), LONG);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let tmp = dir.path().join(".a.yaml.tmp");
    let scans = r.scans("event");
    std::fs::write(&tmp, service_entry("a")).unwrap();
    // Writing a hidden file cannot change the listing: no scan for it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        r.scans("event"),
        scans,
        "a hidden file's write was scanned for"
    );
    std::fs::rename(&tmp, dir.path().join("a.yaml")).unwrap();
    until_has(&mut r, "a").await;
    assert_eq!(r.publishes("leading"), 1);
}

/// A file holding the first half of ServiceEntry `name`, still open; the
/// second half, for [`finish`].
fn half_written(dir: &Path, name: &str) -> (std::fs::File, String) {
    use std::io::Write as _;
    let text = service_entry(name);
    let (head, tail) = text.split_at(text.len() / 2);
    let mut f = std::fs::File::create(dir.join(format!("{name}.yaml"))).unwrap();
    f.write_all(head.as_bytes()).unwrap();
    f.flush().unwrap();
    (f, tail.to_owned())
}

/// Writes the rest of a [`half_written`] file and closes it.
fn finish((mut f, tail): (std::fs::File, String)) {
    use std::io::Write as _;
    f.write_all(tail.as_bytes()).unwrap();
}

#[tokio::test]
async fn a_file_still_open_for_writing_is_not_read_until_closed() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough that the write below ends within the leading wait.
    let mut r = start_debounced(dir.path(), Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = half_written(dir.path(), "a");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !r.rx.has_changed().unwrap(),
        "half a file was published while it was open"
    );
    assert_eq!(
        r.metrics
            .config_dir_file_loads
            .get_or_create(&FileLoadLabels { source: "read" })
            .get(),
        0
    );
    finish(a);
    let index = until_has(&mut r, "a").await;
    assert!(index.rejected.is_empty(), "{:?}", index.rejected);
    assert_eq!(
        r.publishes("leading"),
        1,
        "published as soon as it was closed"
    );
}

#[tokio::test]
async fn later_changes_of_a_burst_wait_for_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start_debounced(dir.path(), Duration::from_millis(400));
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(dir.path().join("a.yaml"), service_entry("a")).unwrap();
    until_has(&mut r, "a").await;
    // Within the period of the first: the same burst.
    let started = Instant::now();
    std::fs::write(dir.path().join("b.yaml"), service_entry("b")).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        r.metrics.config_pending.get(),
        1,
        "a change waiting for quiet is pending"
    );
    until_has(&mut r, "b").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        r.metrics.config_pending.get(),
        0,
        "published: nothing pending"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "the second change did not wait for a quiet period"
    );
    assert_eq!(r.publishes("leading"), 1);
    assert_eq!(r.publishes("trailing"), 1);
    // A whole period later a new burst starts, with its own leading edge.
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::write(dir.path().join("c.yaml"), service_entry("c")).unwrap();
    until_has(&mut r, "c").await;
    assert_eq!(r.publishes("leading"), 2);
}

#[tokio::test]
async fn a_closed_file_is_not_published_while_another_is_still_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = start_debounced(dir.path(), Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // As `cp a.yaml b.yaml` does: `a` done, `b` still being written.
    let b = half_written(dir.path(), "b");
    std::fs::write(dir.path().join("a.yaml"), service_entry("a")).unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !r.rx.has_changed().unwrap(),
        "published while b.yaml was open"
    );
    finish(b);
    let index = until_has(&mut r, "b").await;
    assert!(index.of_kind("ServiceEntry").any(|se| se.name() == "a"));
    assert!(index.rejected.is_empty(), "{:?}", index.rejected);
    assert_eq!(r.publishes("leading"), 1);
}
