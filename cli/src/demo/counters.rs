//! Resilience counters read from the sidecars' Prometheus endpoints.

use sluice_conformance::mesh::LocalMesh;
use sluice_conformance::metrics::{Sample, scrape};

/// What the resilience features did so far, summed over the demo's sidecars.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    /// Retries sent by the client sidecar.
    pub retries: f64,
    /// Retries refused because the retry budget was spent.
    pub budget_exhausted: f64,
    /// Endpoints ejected by outlier detection.
    pub ejections: f64,
    /// Endpoints ejected right now.
    pub ejected_now: f64,
    /// Requests refused with 429 by a token bucket.
    pub rate_limited: f64,
}

fn sum(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v)))
        .map(|s| s.value)
        .sum()
}

/// Scrapes every sidecar of the mesh.
pub async fn read(mesh: &LocalMesh) -> Counters {
    let mut c = Counters::default();
    for instance in mesh.instances() {
        let Ok(samples) = scrape(instance.stats_addr()).await else {
            continue;
        };
        c.retries += sum(&samples, "sluice_retries_total", None);
        c.budget_exhausted += sum(&samples, "sluice_retry_budget_exhausted_total", None);
        c.ejections += sum(&samples, "sluice_outlier_ejections_total", None);
        c.ejected_now += sum(&samples, "sluice_endpoints_ejected", None);
        c.rate_limited += sum(
            &samples,
            "sluice_rate_limit_decisions_total",
            Some(("decision", "limited")),
        );
    }
    c
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "retries {:.0} (budget exhausted {:.0}) · outlier ejections {:.0} (ejected now {:.0}) · rate limited (429) {:.0}",
            self.retries,
            self.budget_exhausted,
            self.ejections,
            self.ejected_now,
            self.rate_limited
        )
    }
}
