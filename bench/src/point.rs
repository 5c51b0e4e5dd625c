//! One measured point (the JSON schema of `bench/results/*.json`) and the parser of fortio's
//! `-json` output it is built from.
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// Why a fortio result could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not fortio's shape.
    #[error("fortio JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A percentile asked with `-p` is missing.
    #[error("fortio JSON has no p{0} percentile")]
    MissingPercentile(f64),
}

/// The latency and outcome of one fortio run.
#[derive(Debug, Clone, PartialEq)]
pub struct FortioRun {
    /// Achieved requests per second.
    pub qps: f64,
    /// Requests completed (any outcome).
    pub count: u64,
    /// Requests that did not end in 200 / gRPC SERVING.
    pub errors: u64,
    /// p50, p90, p99, p99.9 in milliseconds.
    pub p_ms: [f64; 4],
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "ActualQPS")]
    actual_qps: f64,
    #[serde(rename = "DurationHistogram")]
    histogram: RawHistogram,
    #[serde(rename = "RetCodes", default)]
    ret_codes: std::collections::BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct RawHistogram {
    #[serde(rename = "Count")]
    count: u64,
    #[serde(rename = "Percentiles", default)]
    percentiles: Option<Vec<RawPercentile>>,
}

#[derive(Deserialize)]
struct RawPercentile {
    #[serde(rename = "Percentile")]
    percentile: f64,
    #[serde(rename = "Value")]
    value: f64,
}

/// The percentiles passed to fortio's `-p`, in the order of [`FortioRun::p_ms`].
pub const PERCENTILES: [f64; 4] = [50.0, 90.0, 99.0, 99.9];

/// Reads fortio's `-json` output (latencies are in seconds there).
pub fn parse_fortio(text: &str) -> Result<FortioRun, ParseError> {
    let raw: Raw = serde_json::from_str(text)?;
    let pcts = raw.histogram.percentiles.unwrap_or_default();
    let mut p_ms = [0.0; 4];
    for (slot, want) in p_ms.iter_mut().zip(PERCENTILES) {
        let found = pcts
            .iter()
            .find(|p| (p.percentile - want).abs() < 1e-9)
            .ok_or(ParseError::MissingPercentile(want))?;
        *slot = found.value * 1000.0;
    }
    // HTTP answers are keyed by status code, gRPC health pings by serving status.
    let ok: u64 = ["200", "SERVING"]
        .iter()
        .filter_map(|k| raw.ret_codes.get(*k))
        .sum();
    Ok(FortioRun {
        qps: raw.actual_qps,
        count: raw.histogram.count,
        errors: raw.histogram.count.saturating_sub(ok),
        p_ms,
    })
}

/// One point of the data-plane benchmark: the median over its repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// `direct`, `sluice`, `haproxy`, `nginx`.
    pub target: String,
    /// Honest description of the target (TLS or not, versions).
    pub label: String,
    /// `http1`, `h2`, `grpc`.
    pub protocol: String,
    /// Concurrent connections (fortio `-c`).
    pub connections: u32,
    /// Requested rate; 0 = as fast as possible.
    pub qps_asked: f64,
    /// Achieved rate (median of repetitions).
    pub qps_got: f64,
    /// Latency percentiles, milliseconds (medians of repetitions).
    pub p50_ms: f64,
    /// p90.
    pub p90_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// p99.9.
    pub p999_ms: f64,
    /// CPU seconds per 1,000 requests per proxy process (mean of the pair); at 1,000 rps this
    /// equals vCPU per proxy. `None` for `direct`.
    pub cpu_s_per_1k_req: Option<f64>,
    /// Steady RSS (VmRSS after the point) of the larger proxy of the pair, MB.
    pub rss_mb: Option<f64>,
    /// Peak RSS (VmHWM) of the larger proxy of the pair, MB.
    pub rss_peak_mb: Option<f64>,
    /// Non-success answers summed over repetitions.
    pub errors: u64,
    /// Requests summed over repetitions.
    pub requests: u64,
    /// Repetitions measured.
    pub repetitions: u32,
    /// Seconds per repetition.
    pub seconds: u32,
    /// Spread of p99 over repetitions: (min, max).
    pub p99_ms_spread: (f64, f64),
    /// Spread of achieved qps over repetitions: (min, max).
    pub qps_spread: (f64, f64),
    /// Why this point has no numbers (target does not support the protocol, or it failed).
    pub skipped: Option<String>,
    /// Each proxy process of the pair, client side first (empty for `direct`, and in runs
    /// made before this field existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<ProxyUse>,
}

/// What one proxy process of a pair used during a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyUse {
    /// `client` or `server` side.
    pub side: String,
    /// CPU seconds per 1,000 requests (median of repetitions).
    pub cpu_s_per_1k_req: Option<f64>,
    /// Share of that CPU time spent in the kernel (stime over utime + stime, summed over the
    /// repetitions); absent in runs made before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_share: Option<f64>,
    /// VmRSS after the point, MB.
    pub rss_mb: f64,
    /// VmHWM during the point (reset before its warm-up), MB; the peak since the process
    /// started when the kernel refused the reset.
    pub rss_peak_mb: f64,
}

/// Median of a non-empty slice (mean of the middle two for even lengths); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// (min, max) of a slice; (0, 0) when empty.
pub fn spread(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if min.is_finite() {
        (min, max)
    } else {
        (0.0, 0.0)
    }
}
