//! CPU time and memory of a process from `/proc/<pid>/stat` and `/proc/<pid>/status`.

#[cfg(test)]
mod tests;

/// Clock ticks per second of `/proc/<pid>/stat` times; Linux fixes USER_HZ at 100 for
/// userspace on every architecture we run on.
const TICKS_PER_S: f64 = 100.0;

/// CPU time of a process and all its threads, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuTimes {
    /// utime: in the process's own code.
    pub user: f64,
    /// stime: in the kernel on its behalf (system calls, and on loopback the TCP
    /// processing a send runs for the receiving socket too).
    pub system: f64,
}

impl CpuTimes {
    /// user + system.
    pub fn total(self) -> f64 {
        self.user + self.system
    }

    /// The time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// utime and stime of `pid` and all its threads; `None` if the process is gone.
pub fn cpu_times(pid: u32) -> Option<CpuTimes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu(&text)
}

/// utime + stime of `pid` and all its threads, seconds; `None` if the process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_times(pid).map(CpuTimes::total)
}

/// Parses utime and stime from a `/proc/<pid>/stat` line. The command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_stat_cpu(text: &str) -> Option<CpuTimes> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        user: utime as f64 / TICKS_PER_S,
        system: stime as f64 / TICKS_PER_S,
    })
}

/// Memory of a process, MB.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_mb: f64,
    /// VmHWM: peak resident.
    pub hwm_mb: f64,
}

/// Resets `pid`'s VmHWM to its current RSS (`clear_refs` value 5), so the next
/// [`memory`] reports the peak since now; `false` if the kernel refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// VmRSS and VmHWM of `pid`; `None` if the process is gone.
pub fn memory(pid: u32) -> Option<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_memory(&text)
}

/// Parses VmRSS and VmHWM (kB) from `/proc/<pid>/status`.
pub fn parse_status_memory(text: &str) -> Option<Memory> {
    let kb = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    Some(Memory {
        rss_mb: kb("VmRSS:")? / 1024.0,
        hwm_mb: kb("VmHWM:")? / 1024.0,
    })
}
