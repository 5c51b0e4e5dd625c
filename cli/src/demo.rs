//! `sluicectl demo`: a local mesh (controller, echo workloads, sidecars on
//! loopback) running `examples/`, with live traffic shown per route and version.

mod table;

use bytes::Bytes;
use sluice_conformance::client::{self, Call, Via};
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::scenario::{Protocol, Workload};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use table::{Expectation, Stats};

/// The example configuration, built in so the demo runs from any folder.
const EXAMPLE: &str = include_str!("../../examples/reviews-routing.yaml");

#[derive(clap::Args)]
pub struct Args {
    /// Play the demo once and exit 0 only when every behaviour matched the YAML.
    #[arg(long)]
    pub check: bool,
    /// Use the YAML files of this folder instead of the built-in `examples/`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Requests per second in live mode.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// Where binaries are (default: next to sluicectl).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// A kind of request the demo sends, and what the YAML says should happen to it.
struct TrafficClass {
    name: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// Share of all requests.
    weight: u32,
    expect: &'static [(&'static str, f64)],
}

const CLASSES: &[TrafficClass] = &[
    TrafficClass {
        name: "mobile (user-agent ~ Mobile)",
        headers: &[("user-agent", "Mozilla/5.0 (iPhone) Mobile/15E148")],
        weight: 2,
        expect: &[("mobile", 1.0)],
    },
    TrafficClass {
        name: "beta (cookie beta=true)",
        headers: &[("cookie", "session=42;beta=true")],
        weight: 2,
        expect: &[("v2", 1.0)],
    },
    TrafficClass {
        name: "everyone else (90/10 canary)",
        headers: &[("user-agent", "curl/8.0")],
        weight: 6,
        expect: &[("v1", 0.9), ("v2", 0.1)],
    },
];

fn workloads() -> Vec<Workload> {
    let w = |service: &str, versions: &[(&str, u32)]| Workload {
        service: service.into(),
        namespace: "default".into(),
        service_account: None,
        port: 9080,
        protocol: Protocol::Http,
        versions: versions
            .iter()
            .map(|(v, n)| (v.to_string(), *n))
            .collect::<BTreeMap<_, _>>(),
    };
    vec![
        w("productpage", &[("v1", 1)]),
        w("reviews", &[("v1", 2), ("v2", 1), ("mobile", 1)]),
    ]
}

fn config_text(args: &Args) -> anyhow::Result<String> {
    let Some(dir) = &args.config else {
        return Ok(EXAMPLE.to_owned());
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
    eprintln!(
        "starting controller, 5 echo workloads and their sidecars on loopback (logs: {})",
        work.display()
    );
    let mesh = LocalMesh::start(&workloads(), &config, opts).await?;
    let client = mesh
        .instances()
        .iter()
        .find(|i| i.service == "productpage")
        .map(|i| i.outbound_addr())
        .ok_or_else(|| anyhow::anyhow!("productpage instance missing"))?;
    let admin = mesh
        .instances()
        .iter()
        .find(|i| i.service == "productpage")
        .map(|i| i.admin_addr())
        .ok_or_else(|| anyhow::anyhow!("productpage instance missing"))?;
    let result = if args.check {
        check(client, admin).await
    } else {
        live(client, args.rate).await
    };
    mesh.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn call(via: std::net::SocketAddr, class: &TrafficClass) -> Call {
    Call {
        via: Via::Outbound(via),
        url: "http://reviews:9080/reviews/1".into(),
        method: "GET".into(),
        headers: class
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: Bytes::new(),
        h2: false,
        timeout: Duration::from_secs(5),
    }
}

/// Sends a fixed number of each class, prints the table, checks it against the YAML.
async fn check(client: std::net::SocketAddr, admin: std::net::SocketAddr) -> anyhow::Result<bool> {
    let stats: Vec<Stats> = CLASSES.iter().map(|c| Stats::new(c.name)).collect();
    let stats = Arc::new(Mutex::new(stats));
    for (i, class) in CLASSES.iter().enumerate() {
        let n = class.weight as usize * 60;
        let mut tasks = Vec::new();
        for worker in 0..4 {
            let stats = stats.clone();
            let call = call(client, class);
            tasks.push(tokio::spawn(async move {
                for _ in (worker..n).step_by(4) {
                    let outcome = client::send(&call).await;
                    if let Ok(mut s) = stats.lock() {
                        s[i].record(&outcome);
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
    }
    let mut all_ok = true;
    {
        let stats = stats.lock().map_err(|_| anyhow::anyhow!("stats lock"))?;
        println!("{}", table::render(&stats, None));
        for (class, s) in CLASSES.iter().zip(stats.iter()) {
            let expect = Expectation {
                shares: class.expect,
                tolerance: 0.05,
            };
            match s.check(&expect) {
                Ok(()) => println!("PASS {}", class.name),
                Err(why) => {
                    all_ok = false;
                    println!("FAIL {}: {why}", class.name);
                }
            }
        }
    }
    let why = client::http_get(
        admin,
        "/debug/route?host=reviews:9080&path=/reviews/1&header=cookie:beta%3Dtrue",
    )
    .await;
    if let Ok(plain) = why {
        println!("\nWhy a beta request goes to v2 (productpage sidecar /debug/route):");
        println!("{}", String::from_utf8_lossy(&plain.body));
    }
    Ok(all_ok)
}

/// Drives traffic until Ctrl-C, redrawing the table every second.
async fn live(client: std::net::SocketAddr, rate: u32) -> anyhow::Result<bool> {
    let stats: Vec<Stats> = CLASSES.iter().map(|c| Stats::new(c.name)).collect();
    let stats = Arc::new(Mutex::new(stats));
    let total_weight: u32 = CLASSES.iter().map(|c| c.weight).sum();
    let started = Instant::now();
    let driver = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let slot = u32::try_from(n % u64::from(total_weight)).unwrap_or(0);
                n += 1;
                let mut acc = 0;
                let Some(i) = CLASSES.iter().position(|c| {
                    acc += c.weight;
                    slot < acc
                }) else {
                    continue;
                };
                let call = call(client, &CLASSES[i]);
                let stats = stats.clone();
                tokio::spawn(async move {
                    let outcome = client::send(&call).await;
                    if let Ok(mut s) = stats.lock() {
                        s[i].record(&outcome);
                    }
                });
            }
        })
    };
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = redraw.tick() => {
                if let Ok(s) = stats.lock() {
                    // Clear the screen and home the cursor, then draw.
                    print!("\x1b[2J\x1b[H{}", table::render(&s, Some(started.elapsed())));
                    println!("\nproductpage --(sidecar)--> reviews  ·  YAML: examples/reviews-routing.yaml  ·  Ctrl-C to stop");
                }
            }
        }
    }
    driver.abort();
    Ok(true)
}
