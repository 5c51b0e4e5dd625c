//! Backends failing under steady load: one instance killed (its sidecar answers 503), one hung
//! (answers after 20 s). A VirtualService retry policy and DestinationRule outlier detection
//! keep every idempotent GET answered, and the client sidecar counts both ejections.
use super::load::Load;
use super::{SERIAL, get, metric, outbound_of, start_mesh};
use std::time::Duration;

const CONFIG: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 3, perTryTimeout: 300ms, retryOn: 'connect-failure,refused-stream,5xx,reset'}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_and_hung_under_load_retries_and_ejection_hide_every_failure() {
    let _turn = SERIAL.lock().await;
    let (_work, mut mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 3}}]",
        CONFIG,
        &[],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let sleep_stats = mesh.instances()[mesh.select("sleep", None, None)[0]].stats_addr();
    let reviews = mesh.select("reviews", None, None);

    let load = Load::start(2, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/get", Duration::from_secs(5))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    mesh.kill_echo(reviews[0]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    mesh.behave(reviews[1], None, 20_000).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let report = load.finish_after(300).await;

    report.assert_all_ok(300);
    // Bounded by the per-try timeout and three retries, never by the hung backend.
    assert!(
        report.max_latency() < Duration::from_secs(2),
        "slowest request {:?}",
        report.max_latency()
    );
    let ejections = metric(sleep_stats, "sluice_outlier_ejections_total", &[]).await;
    let ejected = metric(sleep_stats, "sluice_endpoints_ejected", &[]).await;
    let retried = metric(
        sleep_stats,
        "sluice_retries_total",
        &[("outcome", "success")],
    )
    .await;
    eprintln!(
        "backend faults: {} requests, slowest {:?}, ejections {ejections}, ejected now {ejected}, retried and succeeded {retried}",
        report.records.len(),
        report.max_latency()
    );
    assert!(ejections >= 2.0, "ejections counted: {ejections}");
    assert_eq!(ejected, 2.0, "endpoints ejected now");
    assert!(retried >= 2.0, "retried requests that succeeded: {retried}");
    mesh.shutdown().await;
}
