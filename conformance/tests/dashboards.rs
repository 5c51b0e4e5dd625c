//! The Helm chart's Grafana dashboards (`charts/sluice/dashboards/*.json`)
//! query only what Sluice really exports: every metric of every panel and
//! variable query appears in a scrape of the real sidecars (`:15090`) or the
//! real controller (`:15014`), with every label the query filters or groups
//! by. The mesh runs on loopback with HTTP and TCP workloads over mTLS and
//! traffic that triggers retries, an ejection, a rate limit, authorization
//! decisions and a connection pool overflow; the controller's Kubernetes-only
//! metrics come from a second controller against a real API server.
//! `cargo build --workspace --bins` first.
use serde_json::Value;
use sluice_conformance::client;
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::scenario::Workload;
use std::path::Path;
use std::process::Command;

#[path = "dashboards/check.rs"]
mod check;
#[path = "dashboards/kube.rs"]
mod kube;
#[path = "dashboards/promql.rs"]
mod promql;
#[path = "dashboards/traffic.rs"]
mod traffic;

use check::Exported;

/// Every dashboard of the chart: (file stem, JSON).
fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/sluice/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
            let stem = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            out.push((stem, json));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Opens a config stream on the controller's TLS port without a token, so
/// the controller counts a refused stream (`reason="unauthenticated"`).
fn refused_config_stream(mesh: &LocalMesh) {
    let tls = std::net::SocketAddr::new(
        mesh.controller_metrics_addr().ip(),
        sluice_conformance::mesh::CONTROLLER_SECURE_PORT,
    );
    let status = Command::new("curl")
        .args(["-sk", "--http2", "-o", "/dev/null", "-X", "POST"])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["--data-binary", ""])
        .arg(format!(
            "https://{tls}/sluice.config.v1.ConfigDiscovery/Stream"
        ))
        .status()
        .expect("run curl");
    assert!(
        status.success(),
        "curl to the config stream failed: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_query_only_exported_metrics_and_labels() {
    let boards = dashboards();
    let stems: Vec<&str> = boards.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(stems, ["controller", "mesh", "service", "workload"]);

    let work = tempfile::tempdir().unwrap();
    let workloads: Vec<Workload> = serde_yaml::from_str(traffic::WORKLOADS).unwrap();
    let opts = MeshOptions::new(work.path().into());
    let mesh = LocalMesh::start(&workloads, traffic::CONFIG, opts)
        .await
        .unwrap();
    traffic::drive(&mesh).await;
    refused_config_stream(&mesh);

    let mut sidecars = Exported::default();
    for i in mesh.instances() {
        let r = client::http_get(i.stats_addr(), "/stats/prometheus")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{} scrape", i.id());
        sidecars.add(&String::from_utf8_lossy(&r.body));
    }
    let mut controller = Exported::default();
    let r = client::http_get(mesh.controller_metrics_addr(), "/metrics")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "controller scrape");
    controller.add(&String::from_utf8_lossy(&r.body));
    drop(mesh);
    controller.add(&kube::controller_scrape(work.path()).await);

    let mut problems = Vec::new();
    let mut counted = 0;
    for (stem, board) in &boards {
        let queries = check::queries(board);
        assert!(
            queries.len() >= 10,
            "{stem}: only {} queries",
            queries.len()
        );
        counted += queries.len();
        let exported = if stem == "controller" {
            &controller
        } else {
            &sidecars
        };
        problems.extend(check::problems(&queries, exported));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the dashboards:\n{}",
        problems.len(),
        problems.join("\n")
    );
    println!("{counted} dashboard queries checked");
}
