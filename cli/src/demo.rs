//! `sluicectl demo`: a local mesh with live traffic.
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Play the demo once and exit 0 only when every behaviour matched the YAML.
    #[arg(long)]
    pub check: bool,
}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("demo: not built yet");
    ExitCode::FAILURE
}
