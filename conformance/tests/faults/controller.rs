//! The controller killed under steady load: proxies keep serving their last config while it
//! is gone, and resync (picking up changes made meanwhile) when it is back.
use super::load::Load;
use super::{SERIAL, get, outbound_of, start_mesh};
use sluice_conformance::client;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_killed_under_load_proxies_keep_serving_and_resync_on_return() {
    let _turn = SERIAL.lock().await;
    let (_work, mut mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080}]",
        "",
        &[],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");

    // Steady load, about 100 requests per second, for the whole test.
    let load = Load::start(1, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/load", Duration::from_secs(5))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    mesh.kill_controller().await;
    assert!(!mesh.controller_running());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Changed while nobody serves config: the files are the source of truth.
    mesh.write_config(CHANGED).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = load.count();

    mesh.start_controller().unwrap();
    mesh.wait_converged(None).await.unwrap();
    let changed = client::send(&get(
        sleep,
        "http://reviews:9080/changed",
        Duration::from_secs(5),
    ))
    .await;
    assert_eq!(changed.status, Some(418), "{:?}", changed.error);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let report = load.finish_after(100).await;
    report.assert_all_ok(100);
    assert!(
        during >= 100 && report.ok() > during,
        "requests during the outage {during}, total ok {}",
        report.ok()
    );
    mesh.shutdown().await;
}
