//! A client's own sidecar crashes (SIGKILL) and restarts while the app sends load: requests
//! fail fast while it is gone (refused or 503, never a hang), all succeed once it is ready
//! again, and the controller sees it synced again.
use super::load::Load;
use super::{SERIAL, get, outbound_of, start_mesh};
use sluice_conformance::mesh::sync;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_restarted_under_load_fails_fast_then_recovers_and_resyncs() {
    let _turn = SERIAL.lock().await;
    let (_work, mut mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080}]",
        "",
        &[],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let sleep_n = mesh.select("sleep", None, None)[0];
    let old_pid = mesh.sidecar_pid(sleep_n).unwrap();

    let load = Load::start(2, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/get", Duration::from_secs(3))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = load.elapsed();
    mesh.restart_sidecar(sleep_n).await.unwrap();
    let ready_at = load.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.finish().await;

    let new_pid = mesh.sidecar_pid(sleep_n).unwrap();
    assert_ne!(old_pid, new_pid, "the sidecar was not restarted");
    let failures = report.failures();
    eprintln!(
        "sidecar restart: down for {:?}, {} requests, {} failed, slowest failure {:?}, statuses {:?}",
        ready_at - killed_at,
        report.records.len(),
        failures.len(),
        failures.iter().map(|r| r.latency).max().unwrap_or_default(),
        failures
            .iter()
            .map(|r| r
                .status
                .map_or_else(|| "no answer".to_owned(), |s| s.to_string()))
            .collect::<std::collections::BTreeSet<_>>()
    );
    // While it was down: failures, each fast.
    assert!(
        !failures.is_empty(),
        "no request noticed the sidecar was gone"
    );
    for f in &failures {
        assert!(
            f.at + Duration::from_millis(50) >= killed_at,
            "failed before the crash: {f:?}"
        );
        assert!(
            f.latency < Duration::from_millis(500),
            "a failure took {:?}: {f:?}",
            f.latency
        );
    }
    // Once ready again: every request answered.
    let after: Vec<_> = report.records.iter().filter(|r| r.at >= ready_at).collect();
    assert!(
        after.len() >= 100,
        "only {} requests after the restart",
        after.len()
    );
    assert!(
        after.iter().all(|r| r.ok()),
        "failures after the sidecar was ready: {}",
        report.describe_failures()
    );
    // The controller counts it as connected and up to date again.
    let syncz = sync::fetch(mesh.controller_metrics_addr()).await.unwrap();
    let id = mesh.instances()[sleep_n].id();
    assert!(
        syncz.lagging(std::slice::from_ref(&id)).is_empty(),
        "{id} not synced: {syncz:?}"
    );
    mesh.shutdown().await;
}

const RETRY_RESETS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 3, perTryTimeout: 1s, retryOn: 'connect-failure,refused-stream,5xx,reset'}
";

/// A backend's sidecar crashes and restarts under load: with a retry policy that retries
/// resets and refused connections, clients see no error, and the instance serves again
/// once its sidecar is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sidecar_restarted_under_load_retries_hide_it_and_it_serves_again() {
    let _turn = SERIAL.lock().await;
    let (_work, mut mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 1, v2: 1}}]",
        RETRY_RESETS,
        &[],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let v1 = mesh.select("reviews", Some("v1"), None)[0];

    let load = Load::start(2, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/get", Duration::from_secs(5))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    mesh.restart_sidecar(v1).await.unwrap();
    let ready_at = load.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = load.finish_after(300).await;

    let v1_after = report
        .records
        .iter()
        .filter(|r| r.at >= ready_at && r.version.as_deref() == Some("v1"))
        .count();
    eprintln!(
        "backend sidecar restart: {} requests, {} failed, slowest {:?}, v1 answered {v1_after} after its sidecar was ready",
        report.records.len(),
        report.failures().len(),
        report.max_latency()
    );
    report.assert_all_ok(300);
    assert!(
        v1_after >= 20,
        "v1 answered {v1_after} times after its restart"
    );
    mesh.shutdown().await;
}
