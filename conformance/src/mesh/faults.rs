//! What fault and load tests read about a mesh's processes: their pids (found in `/proc` by
//! the flags that make each one unique, so a restarted process is found again) and their
//! resident memory and open descriptors.
use super::{CONTROLLER_PORT, ECHO_CONTROL_PORT, LocalMesh};
use std::path::Path;

#[cfg(test)]
mod tests;

/// Resident memory and open file descriptors of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// `VmRSS` from `/proc/<pid>/status`, in KiB.
    pub rss_kib: u64,
    /// Entries in `/proc/<pid>/fd`.
    pub fds: u64,
}

impl ProcStats {
    /// Reads a process's stats; `None` when it is gone (or not readable).
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Self { rss_kib, fds })
    }
}

/// The pid of a running process started from a binary named `bin` whose arguments hold
/// `flag value` as two consecutive arguments.
fn find_pid(bin: &Path, flag: &str, value: &str) -> Option<u32> {
    let bin_name = bin.file_name()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let Some(argv0) = args.first() else {
            continue;
        };
        // A zombie or kernel thread has an empty cmdline.
        if !Path::new(&*String::from_utf8_lossy(argv0)).ends_with(bin_name) {
            continue;
        }
        if args
            .windows(2)
            .any(|w| w[0] == flag.as_bytes() && w[1] == value.as_bytes())
        {
            return Some(pid);
        }
    }
    None
}

impl LocalMesh {
    /// Pid of instance `n`'s running sidecar (found again after a restart).
    pub fn sidecar_pid(&self, n: usize) -> Option<u32> {
        let i = self.instances.get(n)?;
        find_pid(&self.proxy_bin, "--ip", &i.ip.to_string())
    }

    /// Pid of instance `n`'s running echo app.
    pub fn echo_pid(&self, n: usize) -> Option<u32> {
        let i = self.instances.get(n)?;
        let control = format!("{}:{ECHO_CONTROL_PORT}", i.ip);
        find_pid(&self.echo_bin, "--control-addr", &control)
    }

    /// Pid of the running controller.
    pub fn controller_pid(&self) -> Option<u32> {
        let listen = format!("{}:{CONTROLLER_PORT}", self.block.ip(1));
        find_pid(&self.controller_bin, "--listen", &listen)
    }

    /// The controller's state folder (`<config dir>/.sluice`): its CA root lives in `ca/`.
    pub fn controller_state_dir(&self) -> std::path::PathBuf {
        self.config_dir.join(".sluice")
    }
}
