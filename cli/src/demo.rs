//! `sluicectl demo`: a local mesh (controller, echo workloads, sidecars on
//! loopback) running `examples/`, with live traffic shown per route and version.

mod check;
mod counters;
mod live;
mod table;
mod traces;

use bytes::Bytes;
use sluice_conformance::client::{Call, Via};
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::scenario::{Protocol, Workload};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The example configuration, built in so the demo runs from any folder.
const EXAMPLES: [&str; 3] = [
    include_str!("../../examples/reviews-routing.yaml"),
    include_str!("../../examples/orders-resilience.yaml"),
    include_str!("../../examples/security.yaml"),
];

#[derive(clap::Args)]
pub struct Args {
    /// Play the demo once and exit 0 only when every behaviour matched the YAML.
    #[arg(long)]
    pub check: bool,
    /// Use the YAML files of this folder instead of the built-in `examples/`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Requests per second in live mode.
    #[arg(long, default_value_t = 80)]
    pub rate: u32,
    /// Where binaries are (default: next to sluicectl).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// A kind of request the demo sends, and what the YAML says should happen to it.
pub(crate) struct TrafficClass {
    pub name: &'static str,
    pub url: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    /// Share of all requests in live mode.
    pub weight: u32,
    /// Expected share per answering version (routing checks).
    pub expect: &'static [(&'static str, f64)],
}

pub(crate) const REVIEWS: &str = "http://reviews:9080/reviews/1";
pub(crate) const ORDERS: &str = "http://orders:8080/orders/1";

pub(crate) const CLASSES: &[TrafficClass] = &[
    TrafficClass {
        name: "mobile (user-agent ~ Mobile)",
        url: REVIEWS,
        headers: &[("user-agent", "Mozilla/5.0 (iPhone) Mobile/15E148")],
        weight: 2,
        expect: &[("mobile", 1.0)],
    },
    TrafficClass {
        name: "beta (cookie beta=true)",
        url: REVIEWS,
        headers: &[("cookie", "session=42;beta=true")],
        weight: 2,
        expect: &[("v2", 1.0)],
    },
    TrafficClass {
        name: "everyone else (90/10 canary)",
        url: REVIEWS,
        headers: &[("user-agent", "curl/8.0")],
        weight: 6,
        expect: &[("v1", 0.9), ("v2", 0.1)],
    },
    TrafficClass {
        name: "orders (retries, 100+10/s bucket)",
        url: ORDERS,
        headers: &[("x-api-key", "demo-key")],
        weight: 5,
        expect: &[("v1", 1.0)],
    },
    TrafficClass {
        name: "orders without x-api-key (403)",
        url: ORDERS,
        headers: &[],
        weight: 1,
        expect: &[("none", 1.0)],
    },
];

/// The identity productpage runs as (the seed's AuthorizationPolicy admits it).
pub(crate) const FRONTEND: &str = "spiffe://cluster.local/ns/default/sa/frontend";

/// The demo's workloads: productpage calls reviews (four versions) and orders.
fn workloads() -> Vec<Workload> {
    let w = |service: &str, port: u16, versions: &[(&str, u32)]| Workload {
        service: service.into(),
        namespace: "default".into(),
        // productpage plays the seed's `frontend` caller.
        service_account: (service == "productpage").then(|| "frontend".to_owned()),
        port,
        protocol: Protocol::Http,
        versions: versions
            .iter()
            .map(|(v, n)| (v.to_string(), *n))
            .collect::<BTreeMap<_, _>>(),
    };
    vec![
        w("productpage", 9080, &[("v1", 1)]),
        w("reviews", 9080, &[("v1", 2), ("v2", 1), ("mobile", 1)]),
        w("orders", 8080, &[("v1", 2)]),
    ]
}

fn config_text(args: &Args) -> anyhow::Result<String> {
    let Some(dir) = &args.config else {
        return Ok(EXAMPLES.join("\n---\n"));
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out = String::new();
    for f in files {
        out.push_str(&std::fs::read_to_string(&f)?);
        out.push_str("\n---\n");
    }
    Ok(out)
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn demo(args: Args) -> anyhow::Result<bool> {
    let config = config_text(&args)?;
    let work = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut opts = MeshOptions::new(work.clone());
    opts.bin_dir = args.bin_dir.clone();
    // The trace view: sidecars export their spans to a collector in here.
    let (collector, collector_addr) = traces::Collector::start().await?;
    let mesh_config = work.join("mesh.yaml");
    std::fs::write(&mesh_config, traces::mesh_config(collector_addr))?;
    opts.controller_args = vec!["--mesh-config".into(), mesh_config.display().to_string()];
    let config = format!("{config}\n---\n{}", traces::TELEMETRY);
    let workloads = workloads();
    let instances: u32 = workloads.iter().flat_map(|w| w.versions.values()).sum();
    eprintln!(
        "starting a controller, {instances} echo workloads and their sidecars on loopback (logs: {})",
        work.display()
    );
    let mesh = LocalMesh::start(&workloads, &config, opts).await?;
    let result = if args.check {
        check::run(&mesh, &collector).await
    } else {
        live::run(&mesh, args.rate, &collector).await
    };
    mesh.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The productpage sidecar: where the demo's requests enter the mesh.
pub(crate) fn client(mesh: &LocalMesh) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    mesh.instances()
        .iter()
        .find(|i| i.service == "productpage")
        .map(|i| (i.outbound_addr(), i.admin_addr()))
        .ok_or_else(|| anyhow::anyhow!("productpage instance missing"))
}

pub(crate) fn call(via: SocketAddr, class: &TrafficClass) -> Call {
    Call {
        via: Via::Outbound(via),
        url: class.url.into(),
        method: "GET".into(),
        headers: class
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Bytes::new(),
        h2: false,
        timeout: Duration::from_secs(15),
    }
}
