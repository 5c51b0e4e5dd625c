//! `sluice_*` metrics of the resilience layer: retries, retry budgets,
//! circuit-breaker overflow, outlier ejections and inbound rate limits.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::model::Text;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: Text,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    cluster: Text,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OverflowLabels {
    cluster: Text,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    limit: Text,
    decision: &'static str,
}

/// How a request that was retried at least once ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The last attempt got an answer the policy does not retry.
    Success,
    /// Still retriable, but the attempts were used up.
    Exhausted,
    /// Still retriable, but stopped otherwise (budget, overflow, route timeout, body too large).
    Failure,
}

/// The resilience metrics.
#[derive(Default)]
pub struct ResilienceMetrics {
    retries: Family<RetryLabels, Counter>,
    budget_exhausted: Family<ClusterLabels, Counter>,
    overflow: Family<OverflowLabels, Counter>,
    ejections: Family<ClusterLabels, Counter>,
    ejected: Family<ClusterLabels, Gauge>,
    rate_limit: Family<DecisionLabels, Counter>,
}

impl ResilienceMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = ResilienceMetrics::default();
        registry.register(
            "sluice_retries",
            "Requests retried at least once, by how they ended",
            m.retries.clone(),
        );
        registry.register(
            "sluice_retry_budget_exhausted",
            "Retries refused by the route's retry budget",
            m.budget_exhausted.clone(),
        );
        registry.register(
            "sluice_upstream_overflow",
            "Requests or retries refused by a cluster's connection pool limits",
            m.overflow.clone(),
        );
        registry.register(
            "sluice_outlier_ejections",
            "Endpoints ejected by outlier detection",
            m.ejections.clone(),
        );
        registry.register(
            "sluice_endpoints_ejected",
            "Endpoints currently ejected",
            m.ejected.clone(),
        );
        registry.register(
            "sluice_rate_limit_decisions",
            "Inbound rate limit decisions",
            m.rate_limit.clone(),
        );
        m
    }

    /// Counts a retried request's end.
    pub fn retried(&self, cluster: &str, outcome: RetryOutcome) {
        let outcome = match outcome {
            RetryOutcome::Success => "success",
            RetryOutcome::Exhausted => "exhausted",
            RetryOutcome::Failure => "failure",
        };
        let cluster = Text::from(cluster);
        self.retries
            .get_or_create(&RetryLabels { cluster, outcome })
            .inc();
    }

    /// Counts a retry the budget refused.
    pub fn budget_exhausted(&self, cluster: &str) {
        let cluster = Text::from(cluster);
        self.budget_exhausted
            .get_or_create(&ClusterLabels { cluster })
            .inc();
    }

    /// Counts a circuit-breaker overflow of `kind`.
    pub fn overflow(&self, cluster: &str, kind: &'static str) {
        let cluster = Text::from(cluster);
        self.overflow
            .get_or_create(&OverflowLabels { cluster, kind })
            .inc();
    }

    /// Counts an ejection.
    pub fn ejected(&self, cluster: &str) {
        let labels = ClusterLabels {
            cluster: Text::from(cluster),
        };
        self.ejections.get_or_create(&labels).inc();
        self.ejected.get_or_create(&labels).inc();
    }

    /// Notes an endpoint back in service.
    pub fn returned(&self, cluster: &str) {
        let labels = ClusterLabels {
            cluster: Text::from(cluster),
        };
        self.ejected.get_or_create(&labels).dec();
    }

    /// Counts a rate limit decision.
    pub fn rate_limit(&self, limit: &Text, decision: &'static str) {
        self.rate_limit
            .get_or_create(&DecisionLabels {
                limit: limit.clone(),
                decision,
            })
            .inc();
    }
}
