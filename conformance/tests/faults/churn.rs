//! Config churn under steady load: the VirtualService's weights change 100 times a second for
//! 10 s. Every request is answered, the controller keeps publishing (it coalesces a folder
//! that is never quiet into one revision per poll plus at most ten debounce periods), both
//! versions answer, the last change wins, and neither the sidecars' nor the controller's
//! memory grows.
use super::load::Load;
use super::sampler::Sampler;
use super::{SERIAL, get, outbound_of, start_mesh};
use sluice_conformance::client;
use sluice_conformance::mesh::sync;
use std::time::Duration;

const SUBSETS: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

fn weights(v1: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {}}}
",
        100 - v1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_churn_100_per_second_under_load_no_errors_and_flat_memory() {
    let _turn = SERIAL.lock().await;
    let config = format!("{SUBSETS}---\n{}", weights(50));
    let (_work, mut mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 1, v2: 1}}]",
        &config,
        &[],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let sleep_n = mesh.select("sleep", None, None)[0];
    let reviews_n = mesh.select("reviews", Some("v1"), None)[0];
    let targets = vec![
        (
            "sidecar sleep".to_owned(),
            mesh.sidecar_pid(sleep_n).unwrap(),
        ),
        (
            "sidecar reviews-v1".to_owned(),
            mesh.sidecar_pid(reviews_n).unwrap(),
        ),
        ("controller".to_owned(), mesh.controller_pid().unwrap()),
    ];
    let metrics_addr = mesh.controller_metrics_addr();
    let first_revision = sync::fetch(metrics_addr).await.unwrap().revision;

    let load = Load::start(2, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/get", Duration::from_secs(5))
    });
    let sampler = Sampler::start(targets, Duration::from_millis(250));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 0..1000u32 {
        tick.tick().await;
        // Always a new split, so no coalesced read equals the last published one.
        mesh.write_config(&weights(if i == 999 { 0 } else { 1 + (i * 37) % 99 }))
            .unwrap();
    }
    let churn_revision = sync::fetch(metrics_addr).await.unwrap().revision;
    let report = load.finish_after(500).await;
    let series = sampler.finish().await;

    // The last change wins once the churn stops (it ended on v2 = 100).
    let before = sync::fetch(metrics_addr).await.unwrap().revision;
    mesh.write_config(&weights(100)).unwrap();
    mesh.wait_converged(Some(before)).await.unwrap();
    for _ in 0..20 {
        let o = client::send(&get(
            sleep,
            "http://reviews:9080/get",
            Duration::from_secs(5),
        ))
        .await;
        assert_eq!(o.version(), Some("v1"), "{:?} {:?}", o.status, o.error);
    }

    eprintln!(
        "config churn: revisions {first_revision} -> {churn_revision}, {} requests (v1 {}, v2 {})",
        report.records.len(),
        report.answered_by("v1"),
        report.answered_by("v2")
    );
    for s in &series {
        eprintln!("config churn: {}", s.summary());
    }
    report.assert_all_ok(500);
    assert!(
        churn_revision >= first_revision + 10,
        "the controller took only {} revisions from 1000 changes",
        churn_revision - first_revision
    );
    assert!(report.answered_by("v1") > 0 && report.answered_by("v2") > 0);
    for s in &series {
        s.assert_flat(30, 0.15, 4096.0, 16);
    }
    mesh.shutdown().await;
}
