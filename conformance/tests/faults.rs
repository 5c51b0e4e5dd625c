//! Failures of the mesh's own parts under steady load, with the real
//! controller, sidecar and echo binaries (`cargo build --workspace --bins`
//! first): proxies keep serving their last config while the controller is
//! gone, and resync (picking up changes made meanwhile) when it is back.
use bytes::Bytes;
use sluice_conformance::client::{self, Call, Via};
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::scenario::Workload;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

const CHANGED: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {exact: /changed}}]
    directResponse: {status: 418, body: {string: changed while the controller was down}}
  - route: [{destination: {host: reviews}}]
";

fn call(via: std::net::SocketAddr, path: &str) -> Call {
    Call {
        via: Via::Outbound(via),
        url: format!("http://reviews:9080{path}"),
        method: "GET".into(),
        headers: vec![],
        body: Bytes::new(),
        h2: false,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_under_load_proxies_keep_serving_and_resync_on_return() {
    let work = tempfile::tempdir().unwrap();
    let workloads: Vec<Workload> =
        serde_yaml::from_str("[{service: sleep}, {service: reviews, port: 9080}]").unwrap();
    let mut mesh = LocalMesh::start(&workloads, "", MeshOptions::new(work.path().into()))
        .await
        .unwrap();
    let sleep = mesh.instances()[mesh.select("sleep", None, None)[0]].outbound_addr();

    // Steady load, about 100 requests per second, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = {
        let (stop, ok, failed, failures) =
            (stop.clone(), ok.clone(), failed.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let o = client::send(&call(sleep, "/load")).await;
                if o.status == Some(200) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut f) = failures.lock() {
                        f.push(format!("{:?} {:?}", o.status, o.error));
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    mesh.kill_controller().await;
    assert!(!mesh.controller_running());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Changed while nobody serves config: the files are the source of truth.
    mesh.write_config(CHANGED).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = ok.load(Ordering::Relaxed);

    mesh.start_controller().unwrap();
    mesh.wait_converged(None).await.unwrap();
    let changed = client::send(&call(sleep, "/changed")).await;
    assert_eq!(changed.status, Some(418), "{:?}", changed.error);
    tokio::time::sleep(Duration::from_millis(500)).await;

    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed,
        0,
        "{failed} failed requests: {:?}",
        failures.lock().map(|f| f.clone()).unwrap_or_default()
    );
    assert!(
        during >= 100 && ok > during,
        "ok during outage {during}, total {ok}"
    );
    mesh.shutdown().await;
}
