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
    _task: tokio::task::JoinHandle<()>,
}

fn start(root: &Path) -> Running {
    let metrics = Arc::new(ControllerMetrics::new());
    let mut dir = ConfigDir::new(root.to_path_buf(), Duration::from_millis(10), metrics);
    // Neither poll can find the change within the tests' 20 s.
    dir.poll = Duration::from_secs(3600);
    dir.safety_poll = Duration::from_secs(3600);
    let mut intake = Intake::new();
    let first = dir.load(&mut intake);
    let (tx, rx) = watch::channel(Arc::new(first));
    Running {
        rx,
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
