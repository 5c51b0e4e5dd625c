//! A soak: steady load through a sidecar pair while the sidecars' and the controller's
//! memory and open descriptors are sampled every second; none may grow. 2 minutes in CI;
//! `SLUICE_SOAK_SECONDS=3600` for the hour-long form (bench/README.md, "Soak").
use super::load::Load;
use super::sampler::Sampler;
use super::{SERIAL, get, outbound_of, start_mesh};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_steady_load_memory_and_descriptors_stay_flat() {
    let seconds: u64 = std::env::var("SLUICE_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let _turn = SERIAL.lock().await;
    let (_work, mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 2}}]",
        "",
        &[],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let mut targets = vec![("controller".to_owned(), mesh.controller_pid().unwrap())];
    for (n, i) in mesh.instances().iter().enumerate() {
        targets.push((
            format!("sidecar {}", i.workload_name()),
            mesh.sidecar_pid(n).unwrap(),
        ));
    }

    let load = Load::start(2, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/get", Duration::from_secs(5))
    });
    // Allocator pools and connection pools fill during the first seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let sampler = Sampler::start(targets, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let series = sampler.finish().await;
    let report = load.finish_after(seconds as usize * 50).await;

    eprintln!(
        "soak: {seconds} s, {} requests, slowest {:?}",
        report.records.len(),
        report.max_latency()
    );
    for s in &series {
        eprintln!("soak: {}", s.summary());
    }
    report.assert_all_ok(seconds as usize * 50);
    let min_samples = usize::try_from(seconds * 9 / 10).unwrap_or(usize::MAX);
    for s in &series {
        s.assert_flat(min_samples, 0.10, 4096.0, 16);
    }
    mesh.shutdown().await;
}
