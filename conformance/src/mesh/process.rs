//! Child processes of a mesh: started with stdout/stderr appended to a log file and killed when
//! their handle is dropped, so no path (error, panic, cancellation) leaves them running.
use super::MeshError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};

/// A running child with the log it writes to.
#[derive(Debug)]
pub struct Proc {
    /// What it is, for messages (`sluice-proxy reviews-v1-0`).
    pub label: String,
    /// Its log file.
    pub log: PathBuf,
    child: Child,
}

impl Proc {
    /// Starts `bin args...`, appending its output to `log`.
    pub fn spawn(
        label: String,
        bin: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Self, MeshError> {
        let io = |what: String| move |source| MeshError::Io { what, source };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(format!("open {}", log.display())))?;
        let out = file
            .try_clone()
            .map_err(io(format!("clone {}", log.display())))?;
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        Ok(Self {
            label,
            log: log.to_path_buf(),
            child,
        })
    }

    /// `Some(why)` when the process has already exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited ({status}); see {}",
                self.label,
                self.log.display()
            )),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.label)),
        }
    }

    /// Kills the process and reaps it.
    pub async fn kill(mut self) {
        self.stop().await;
    }

    /// Kills the process and reaps it, keeping the handle (for a restart in place).
    pub async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}
