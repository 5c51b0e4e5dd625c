//! `sluicectl proxy-status` against a real local mesh.

use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::scenario::{Protocol, Workload};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_status_lists_synced_proxies() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut opts = MeshOptions::new(work.path().to_path_buf());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sluicectl"));
    opts.bin_dir = bin.parent().map(|p| p.to_path_buf());
    let workloads = vec![Workload {
        service: "reviews".into(),
        namespace: "default".into(),
        service_account: None,
        port: 9080,
        protocol: Protocol::Http,
        versions: [("v1".to_string(), 2)].into_iter().collect(),
    }];
    let mesh = LocalMesh::start(&workloads, "", opts)
        .await
        .expect("mesh starts");
    let controller = mesh.controller_metrics_addr().to_string();
    let out = Command::new(bin)
        .args(["proxy-status", "--controller", &controller])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    mesh.shutdown().await;
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("SYNCED")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows[0].starts_with("reviews-v1-0.default"), "{stdout}");

    let unreachable = Command::new(bin)
        .args(["proxy-status", "--controller", "127.0.0.1:1"])
        .output()
        .expect("runs");
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the controller"));
}
