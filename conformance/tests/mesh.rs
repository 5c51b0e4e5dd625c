//! The local mesh library API against the real controller, sidecar and echo binaries (found next
//! to the test executable: `cargo build --workspace --bins` first).
use bytes::Bytes;
use sluice_conformance::client::{self, Call, Via};
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::metrics;
use sluice_conformance::scenario::Workload;
use std::time::Duration;

const DR: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
";

fn vs(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"
    )
}

async fn versions(mesh: &LocalMesh, n: usize) -> Vec<Option<String>> {
    let sleep = mesh.instances()[mesh.select("sleep", None, None)[0]].outbound_addr();
    let mut out = Vec::new();
    for _ in 0..n {
        let o = client::send(&Call {
            via: Via::Outbound(sleep),
            url: "http://reviews:9080/x".into(),
            method: "GET".into(),
            headers: vec![],
            body: Bytes::new(),
            h2: false,
            timeout: Duration::from_secs(5),
        })
        .await;
        out.push(o.version().map(str::to_string));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mesh_apply_delete_kill_start_behave() {
    let work = tempfile::tempdir().unwrap();
    let workloads: Vec<Workload> = serde_yaml::from_str(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 1, v2: 1}}]",
    )
    .unwrap();
    let config = format!("{DR}---\n{}", vs("v2"));
    let mut mesh = LocalMesh::start(&workloads, &config, MeshOptions::new(work.path().into()))
        .await
        .unwrap();
    assert_eq!(mesh.instances().len(), 3);
    let v2 = Some("v2".to_string());
    assert!(versions(&mesh, 10).await.iter().all(|v| *v == v2));

    mesh.apply(&vs("v1")).await.unwrap();
    let v1 = Some("v1".to_string());
    assert!(versions(&mesh, 10).await.iter().all(|v| *v == v1));

    mesh.delete("kind: VirtualService\nmetadata: {name: reviews}\n")
        .await
        .unwrap();
    let seen = versions(&mesh, 40).await;
    assert!(seen.contains(&v1) && seen.contains(&v2), "{seen:?}");

    let reviews = mesh.select("reviews", None, None);
    for &n in &reviews {
        mesh.behave(n, Some(503), 0).await.unwrap();
    }
    let app = mesh.instances()[reviews[0]].app_addr();
    let direct = client::http_get(app, "/").await.unwrap();
    assert_eq!(direct.status, 503);
    for &n in &reviews {
        mesh.behave(n, None, 0).await.unwrap();
        mesh.kill_echo(n).await;
    }
    assert!(client::http_get(app, "/").await.is_err());
    assert!(versions(&mesh, 3).await.iter().all(Option::is_none));
    for &n in &reviews {
        mesh.start_echo(n).await.unwrap();
    }
    assert_eq!(client::http_get(app, "/").await.unwrap().status, 200);

    let stats = mesh.instances()[reviews[0]].stats_addr();
    assert!(!metrics::scrape(stats).await.unwrap().is_empty());

    // Dropping the mesh kills every process.
    let ready = mesh.instances()[0].ready_addr();
    drop(mesh);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client::http_get(ready, "/healthz/ready").await.is_err());
    assert!(client::http_get(app, "/").await.is_err());
}
