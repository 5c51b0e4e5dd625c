//! `sluice-bench`: side-by-side benchmarks of the Sluice data plane (against direct, HAProxy
//! and nginx) and of the controller at scale; results as JSON, rendered to BENCHMARKS.md.
#![forbid(unsafe_code)]

mod dataplane;
mod point;
mod procstat;
mod render;
mod results;
mod scale;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "sluice-bench", about = "Sluice side-by-side benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Data plane: direct, Sluice pair, HAProxy pair, nginx pair under fortio load.
    Dataplane {
        /// Results file to create or update.
        #[arg(long)]
        out: PathBuf,
        /// Fewer points, 10 s each, 1 repetition.
        #[arg(long)]
        quick: bool,
        /// Seconds per repetition (default: 10 quick, 60 full).
        #[arg(long)]
        seconds: Option<u32>,
        /// Repetitions per point (default: 1 quick, 3 full).
        #[arg(long)]
        reps: Option<u32>,
        /// fortio binary.
        #[arg(long, default_value = "bench/.cache/bin/fortio")]
        fortio: PathBuf,
        /// Directory with sluice-controller and sluice-proxy.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Scratch directory for logs and raw fortio output.
        #[arg(long, default_value = "bench/results/raw")]
        work_dir: PathBuf,
        /// Peer config templates.
        #[arg(long, default_value = "bench/peers")]
        peers_dir: PathBuf,
        /// Core the proxies are pinned to.
        #[arg(long, default_value_t = 1)]
        proxy_core: u32,
        /// Core fortio (load and server) and the controller are pinned to.
        #[arg(long, default_value_t = 0)]
        load_core: u32,
        /// Only these targets (direct, sluice, sluice-plain, haproxy, nginx, haproxy-tls, nginx-tls); repeatable.
        #[arg(long)]
        only: Vec<String>,
    },
    /// Controller scale: synthetic mesh, simulated proxies on real gRPC streams.
    Scale {
        /// Results file to create or update.
        #[arg(long)]
        out: PathBuf,
        /// Shorter churn and fewer changes.
        #[arg(long)]
        quick: bool,
        /// ServiceEntries (default 1000; 100 with --quick).
        #[arg(long)]
        services: Option<usize>,
        /// WorkloadEntries (default 10000; 1000 with --quick).
        #[arg(long)]
        endpoints: Option<usize>,
        /// Simulated proxies (default 2000).
        #[arg(long)]
        proxies: Option<usize>,
        /// Endpoint changes per second during churn.
        #[arg(long, default_value_t = 100)]
        churn_rate: u64,
        /// Controller --debounce-ms.
        #[arg(long, default_value_t = 50)]
        debounce_ms: u64,
        /// Directory with sluice-controller.
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        /// Scratch directory.
        #[arg(long, default_value = "bench/results/raw")]
        work_dir: PathBuf,
        /// Core the controller is pinned to.
        #[arg(long, default_value_t = 1)]
        controller_core: u32,
        /// Core this process (the proxy simulator) is pinned to.
        #[arg(long, default_value_t = 0)]
        sim_core: u32,
    },
    /// Renders a results file into BENCHMARKS.md and PNG plots.
    Render {
        /// Results file.
        file: PathBuf,
        /// Markdown output.
        #[arg(long, default_value = "bench/BENCHMARKS.md")]
        md: PathBuf,
        /// Directory for the PNGs (linked relative to the markdown).
        #[arg(long, default_value = "bench/plots")]
        plots: PathBuf,
        /// Hand-written analysis appended under "Analysis" when the file exists.
        #[arg(long, default_value = "bench/analysis.md")]
        notes: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Dataplane {
            out,
            quick,
            seconds,
            reps,
            fortio,
            bin_dir,
            work_dir,
            peers_dir,
            proxy_core,
            load_core,
            only,
        } => {
            let opts = dataplane::Opts {
                quick,
                seconds: seconds.unwrap_or(if quick { 10 } else { 60 }),
                reps: reps.unwrap_or(if quick { 1 } else { 3 }),
                fortio: std::path::absolute(fortio)?,
                bin_dir: std::path::absolute(bin_dir)?,
                work_dir: std::path::absolute(work_dir)?,
                peers_dir,
                proxy_core,
                load_core,
                only,
            };
            let block = sluice_conformance::mesh::addr::AddrBlock::reserve()?;
            let a = block.ip(0).octets();
            let addrs = dataplane::targets::Addrs { a: a[1], b: a[2] };
            let points = dataplane::run(&opts, addrs).await?;
            let mut file = results::load_or_new(&out)?;
            file.meta.quick = quick;
            file.meta.seconds = opts.seconds;
            file.meta.repetitions = opts.reps;
            file.meta.fill_machine(&opts.fortio);
            file.points = points;
            results::save(&out, &file)?;
        }
        Cmd::Scale {
            out,
            quick,
            services,
            endpoints,
            proxies,
            churn_rate,
            debounce_ms,
            bin_dir,
            work_dir,
            controller_core,
            sim_core,
        } => {
            anyhow::ensure!(
                sim_core != controller_core,
                "--sim-core and --controller-core must differ"
            );
            // The simulator's runtime threads already exist: pin them all,
            // or they share the controller's core with it.
            scale::pin_process(sim_core)?;
            // --quick shrinks the mesh (every proxy gets all of it, ~2.2 MB at the full size)
            // and keeps the 2,000 streams; the results say so.
            let services = services.unwrap_or(if quick { 100 } else { 1000 });
            let endpoints = endpoints.unwrap_or(if quick { 1000 } else { 10_000 });
            let proxies = proxies.unwrap_or(2000);
            let opts = scale::Opts {
                services,
                endpoints,
                proxies,
                changes: if quick { 3 } else { 5 },
                churn_s: if quick { 10 } else { 60 },
                churn_rate,
                debounce_ms,
                bin_dir: std::path::absolute(bin_dir)?,
                work_dir: std::path::absolute(work_dir)?,
                controller_core,
                scaled_down: (services < 1000 || endpoints < 10_000 || proxies < 2000).then(|| {
                    format!("{services} services, {endpoints} endpoints, {proxies} proxies (issue: 1000 / 10000 / 2000)")
                }),
            };
            std::fs::create_dir_all(&opts.work_dir)?;
            let block = sluice_conformance::mesh::addr::AddrBlock::reserve()?;
            let r = scale::run(&opts, block.ip(1)).await?;
            let mut file = results::load_or_new(&out)?;
            file.scale = Some(r);
            results::save(&out, &file)?;
        }
        Cmd::Render {
            file,
            md,
            plots,
            notes,
        } => {
            let run = results::load_or_new(&file)?;
            std::fs::create_dir_all(&plots)?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let pngs = render::plots(&run, &plots)?;
            let mut text = render::markdown(&run, &name, &pngs);
            if let Ok(analysis) = std::fs::read_to_string(&notes) {
                text.push_str("## Analysis\n\n");
                text.push_str(&analysis);
            }
            std::fs::write(&md, text)?;
            eprintln!("wrote {} and {} plots", md.display(), pngs.len());
        }
    }
    Ok(())
}
