//! `sluicectl analyze FILE...` (owned by the CRD/validation work).
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// YAML files to check.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

pub fn run(_args: Args) -> ExitCode {
    eprintln!("analyze: not built yet");
    ExitCode::FAILURE
}
