//! Per traffic class and answering version: counts, latency percentiles,
//! status codes, and the terminal table that shows them.

use sluice_conformance::client::Outcome;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::time::{Duration, Instant};

/// What the YAML asks for one traffic class: share per version.
pub struct Expectation<'a> {
    pub shares: &'a [(&'a str, f64)],
    pub tolerance: f64,
}

#[derive(Clone, Default)]
struct PerVersion {
    count: u64,
    latencies_ms: Vec<f64>,
    codes: BTreeMap<String, u64>,
    recent: VecDeque<Instant>,
    /// Caller identity the answering app saw (x-echo-peer-principal) last.
    peer: Option<String>,
}

/// Results of one traffic class.
#[derive(Clone)]
pub struct Stats {
    name: &'static str,
    versions: BTreeMap<String, PerVersion>,
    total: u64,
}

/// Window for the live request rate.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Stats {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            versions: BTreeMap::new(),
            total: 0,
        }
    }

    pub fn record(&mut self, outcome: &Outcome) {
        let version = outcome.version().unwrap_or("none").to_owned();
        let code = outcome
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "error".into());
        let v = self.versions.entry(version).or_default();
        v.peer = outcome
            .headers
            .get("x-echo-peer-principal")
            .and_then(|p| p.to_str().ok())
            .map(str::to_owned);
        v.count += 1;
        v.latencies_ms.push(outcome.latency.as_secs_f64() * 1000.0);
        *v.codes.entry(code).or_default() += 1;
        let now = Instant::now();
        v.recent.push_back(now);
        while v
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            v.recent.pop_front();
        }
        self.total += 1;
    }

    fn share(&self, version: &str) -> f64 {
        let n = self.versions.get(version).map_or(0, |v| v.count);
        if self.total == 0 {
            0.0
        } else {
            n as f64 / self.total as f64
        }
    }

    /// Answers whose app did not see `principal` as the mTLS caller.
    pub fn without_peer(&self, principal: &str) -> u64 {
        self.versions
            .values()
            .filter(|v| v.peer.as_deref() != Some(principal))
            .map(|v| v.count)
            .sum()
    }

    /// `Ok` when every expected share holds within the tolerance and every answer was a 200.
    pub fn check(&self, expect: &Expectation<'_>) -> Result<(), String> {
        if self.total == 0 {
            return Err("no requests completed".into());
        }
        for (version, v) in &self.versions {
            let not_ok: u64 = v
                .codes
                .iter()
                .filter(|(c, _)| c.as_str() != "200")
                .map(|(_, n)| n)
                .sum();
            if not_ok > 0 {
                return Err(format!(
                    "{not_ok} answers from {version} were not 200: {:?}",
                    v.codes
                ));
            }
        }
        for (version, want) in expect.shares {
            let got = self.share(version);
            if (got - want).abs() > expect.tolerance {
                return Err(format!(
                    "version {version} share {got:.3}, expected {want:.2} ± {:.2} (n={})",
                    expect.tolerance, self.total
                ));
            }
        }
        for version in self.versions.keys() {
            if !expect.shares.iter().any(|(v, _)| v == version) {
                return Err(format!("unexpected answers from version {version}"));
            }
        }
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The table: one row per (traffic class, answering version).
pub fn render(stats: &[Stats], elapsed: Option<Duration>) -> String {
    let mut out = String::new();
    if let Some(e) = elapsed {
        let _ = writeln!(out, "Sluice demo — live for {:.0}s\n", e.as_secs_f64());
    }
    let _ = writeln!(
        out,
        "{:<32} {:<8} {:>7} {:>8} {:>8} {:>8}  {:<22} STATUS CODES",
        "ROUTE (request class)",
        "VERSION",
        "SHARE",
        "RATE/s",
        "P50 ms",
        "P99 ms",
        "mTLS PEER (seen by app)"
    );
    for s in stats {
        let mut first = true;
        for (version, v) in &s.versions {
            let mut lat = v.latencies_ms.clone();
            lat.sort_by(f64::total_cmp);
            let codes: Vec<String> = v.codes.iter().map(|(c, n)| format!("{c}×{n}")).collect();
            let rate = v.recent.len() as f64 / RATE_WINDOW.as_secs_f64();
            // Only the service-account part fits; the trust domain is the mesh's.
            let peer = v.peer.as_deref().map_or("-".to_owned(), |p| {
                p.split_once("/ns/").map_or(p, |(_, rest)| rest).to_owned()
            });
            let _ = writeln!(
                out,
                "{:<32} {:<8} {:>6.1}% {:>8.1} {:>8.2} {:>8.2}  {:<22} {}",
                if first { s.name } else { "" },
                version,
                s.share(version) * 100.0,
                rate,
                percentile(&lat, 0.50),
                percentile(&lat, 0.99),
                peer,
                codes.join(" ")
            );
            first = false;
        }
        if s.versions.is_empty() {
            let _ = writeln!(out, "{:<32} (waiting for answers)", s.name);
        }
    }
    out
}
