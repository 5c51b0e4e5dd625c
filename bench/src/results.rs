//! The results file: run metadata, data-plane points and the controller-scale result.
use crate::point::Point;
use crate::scale::ScaleResult;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How and where the run was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// `--quick`.
    pub quick: bool,
    /// Seconds per data-plane repetition.
    pub seconds: u32,
    /// Repetitions per point.
    pub repetitions: u32,
    /// Unix time the data-plane run finished.
    pub unix_time: u64,
    /// CPU model and core count.
    pub machine: String,
    /// fortio version.
    pub fortio: String,
}

impl Meta {
    /// Records the machine and tool versions.
    pub fn fill_machine(&mut self, fortio: &Path) {
        self.unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        self.machine = format!("{model}, {cores} cores (shared)");
        self.fortio = std::process::Command::new(fortio)
            .arg("version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
    }
}

/// One results file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunFile {
    /// Metadata.
    pub meta: Meta,
    /// Data-plane points.
    pub points: Vec<Point>,
    /// Controller scale.
    pub scale: Option<ScaleResult>,
}

/// Reads `path`, or an empty run when it does not exist yet.
pub fn load_or_new(path: &Path) -> anyhow::Result<RunFile> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(serde_json::from_str(&t)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RunFile::default()),
        Err(e) => Err(e.into()),
    }
}

/// Writes `run` to `path` as pretty JSON.
pub fn save(path: &Path, run: &RunFile) -> anyhow::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(run)? + "\n")?;
    Ok(())
}
