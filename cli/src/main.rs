//! `sluicectl`: the Sluice command line.
#![forbid(unsafe_code)]

mod analyze;
mod check;
mod conformance;
mod demo;
mod describe;
mod inject;
mod proxy_status;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "sluicectl",
    version,
    about = "Sluice service mesh command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate Istio/Sluice YAML files as the controller and the admission webhook would.
    Analyze(analyze::Args),
    /// Check that a cluster can run Sluice (--pre) or that Sluice works in it.
    Check(check::Args),
    /// Run conformance scenarios against a local mesh.
    #[command(subcommand)]
    Conformance(conformance::Command),
    /// Start a local demo mesh and show its traffic live.
    Demo(demo::Args),
    /// Show which Istio objects apply to a pod or service, where a sample request goes, and conflicts.
    Describe(describe::Args),
    /// Add the sluice-proxy sidecar to the pod templates of Kubernetes YAML, as the webhook would.
    Inject(inject::Args),
    /// Show every connected proxy and whether it runs the latest configuration.
    ProxyStatus(proxy_status::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Check(args) => check::run(args),
        Command::Conformance(cmd) => conformance::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Describe(args) => describe::run(args),
        Command::Inject(args) => inject::run(args),
        Command::ProxyStatus(args) => proxy_status::run(args),
    }
}
