//! `sluicectl conformance run PATH...`: runs scenario files against local meshes and prints one
//! `PASS`/`FAIL` line per scenario, then `N passed, N failed`.
use sluice_conformance::runner::{self, RunOptions, ScenarioResult};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run scenario files or folders of them.
    Run {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Scenarios running at once.
        #[arg(long, default_value_t = 2)]
        parallel: usize,
        /// Directory with sluice-controller, sluice-proxy and sluice-echo (default: next to
        /// sluicectl, or $SLUICE_BIN_DIR).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Only run scenarios whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Keep the logs and config of passing scenarios too.
        #[arg(long)]
        keep_logs: bool,
        /// Run against a Kubernetes API server instead of config folders: workloads are
        /// registered as Services and Pods (the runner plays kubelet, so use a test API server
        /// without nodes, e.g. `sluice-testenv`), config goes in with `kubectl apply`, and the
        /// controller runs with `--kubeconfig`. Repeat for several API servers: one scenario
        /// at a time runs on each.
        #[arg(long)]
        kubeconfig: Vec<PathBuf>,
    },
}

pub fn run(cmd: Command) -> ExitCode {
    let Command::Run {
        paths,
        parallel,
        bin_dir,
        filter,
        keep_logs,
        kubeconfig,
    } = cmd;
    let opts = RunOptions {
        parallel,
        bin_dir,
        filter,
        keep_logs,
        kubeconfigs: kubeconfig,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conformance: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let started = std::time::Instant::now();
        let mut done = 0usize;
        let mut print = |r: &ScenarioResult| {
            done += 1;
            println!("{}", r.line());
            let _ = std::io::stdout().flush();
            let logs = r
                .log_dir
                .as_ref()
                .map(|d| format!(" logs: {}", d.display()))
                .unwrap_or_default();
            eprintln!(
                "[{done} done, {:.0?} elapsed] {} in {:.1?}{logs}",
                started.elapsed(),
                r.name,
                r.duration
            );
        };
        // Ctrl-C or SIGTERM drops the run, and with it every mesh, which kills their processes.
        let result = tokio::select! {
            r = runner::run_paths(&paths, &opts, &mut print) => r,
            _ = interrupted() => {
                eprintln!("conformance: interrupted");
                return ExitCode::from(130);
            }
        };
        match result {
            Ok(summary) => {
                println!("{}", summary.line());
                if summary.failed() == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("conformance: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
