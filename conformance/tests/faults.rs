//! Failures and load against a real local mesh (controller, sidecars and echo apps as real
//! processes; `cargo build --workspace --bins` first), each asserting numbers: requests that
//! failed, ejections and rotations counted by the sidecars, memory and descriptors sampled
//! from `/proc`. The tests take turns (one mesh at a time) so timing-sensitive numbers are
//! not skewed by each other on a small CI machine.
use bytes::Bytes;
use sluice_conformance::client::{Call, Via};
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::metrics;
use sluice_conformance::scenario::Workload;
use std::net::SocketAddr;
use std::time::Duration;

#[path = "faults/load.rs"]
mod load;
#[path = "faults/sampler.rs"]
mod sampler;

#[path = "faults/backend.rs"]
mod backend;
#[path = "faults/certificates.rs"]
mod certificates;
#[path = "faults/churn.rs"]
mod churn;
#[path = "faults/connections.rs"]
mod connections;
#[path = "faults/controller.rs"]
mod controller;
#[path = "faults/root_rotation.rs"]
mod root_rotation;
#[path = "faults/sidecar.rs"]
mod sidecar;
#[path = "faults/soak.rs"]
mod soak;

/// One mesh at a time: the tests measure latency, errors and memory.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Starts a mesh of `workloads` (YAML list) with `config`, extra sidecar flags, in a fresh
/// temporary folder (kept alive by the returned guard).
pub async fn start_mesh(
    workloads: &str,
    config: &str,
    sidecar_args: &[&str],
) -> (tempfile::TempDir, LocalMesh) {
    let work = tempfile::tempdir().unwrap();
    let workloads: Vec<Workload> = serde_yaml::from_str(workloads).unwrap();
    let mut opts = MeshOptions::new(work.path().into());
    opts.sidecar_args = sidecar_args.iter().map(|s| (*s).to_owned()).collect();
    let mesh = LocalMesh::start(&workloads, config, opts).await.unwrap();
    (work, mesh)
}

/// The outbound listener of `service`'s first instance.
pub fn outbound_of(mesh: &LocalMesh, service: &str) -> SocketAddr {
    mesh.instances()[mesh.select(service, None, None)[0]].outbound_addr()
}

/// A GET of `url` through the client sidecar at `via`, given up after `timeout`.
pub fn get(via: SocketAddr, url: &str, timeout: Duration) -> Call {
    Call {
        via: Via::Outbound(via),
        url: url.into(),
        method: "GET".into(),
        headers: vec![],
        body: Bytes::new(),
        h2: false,
        timeout,
    }
}

/// Sum of every series of metric `name` carrying `labels`, on one sidecar's `:15090`.
pub async fn metric(stats: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let samples = metrics::scrape(stats).await.unwrap();
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}
