//! Standard `process_*` metrics of the controller (CPU, memory, file
//! descriptors, start time), read from `/proc/self` at scrape time, under the
//! names Prometheus client libraries use so existing dashboards find them.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Kernel clock ticks per second for `/proc/self/stat` times (USER_HZ is
/// 100 on every Linux architecture Sluice builds for).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads `/proc/self` on every scrape; reports nothing it cannot read.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What one scrape reads.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Sample {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<f64>,
}

/// Parses `/proc/self/stat` (fields after the parenthesised command name),
/// `/proc/stat`'s `btime` and the page size into a sample.
pub(crate) fn parse(stat: &str, btime: Option<f64>, page_size: f64) -> Sample {
    // The command name may contain spaces and parentheses: split at the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After ')': state is field 3 of the man page, so index = field - 3.
    let num = |field: usize| fields.get(field - 3).and_then(|v| v.parse::<f64>().ok());
    let cpu = match (num(14), num(15)) {
        (Some(u), Some(s)) => Some((u + s) / TICKS_PER_SECOND),
        _ => None,
    };
    Sample {
        cpu_seconds: cpu,
        virtual_bytes: num(23),
        resident_bytes: num(24).map(|pages| pages * page_size),
        start_time_seconds: match (btime, num(22)) {
            (Some(b), Some(ticks)) => Some(b + ticks / TICKS_PER_SECOND),
            _ => None,
        },
        open_fds: None,
    }
}

fn read() -> Sample {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let btime = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    // The page size is 4 KiB on the targets Sluice ships for; reading it
    // portably needs libc (unsafe), which this crate forbids.
    let mut sample = parse(&stat, btime, 4096.0);
    sample.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as f64);
    sample
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = read();
        if let Some(v) = s.cpu_seconds {
            let m = ConstCounter::new(v);
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                m.metric_type(),
            )?;
            m.encode(e)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                s.virtual_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                s.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                s.open_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                let e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                m.encode(e)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
