//! Mesh-wide settings of the controller (Istio's MeshConfig equivalents).

/// Settings that apply to every proxy unless an object overrides them.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshConfig {
    /// Namespace whose policies apply mesh-wide (Istio's root namespace).
    pub root_namespace: String,
    /// Retry budget: retries allowed as a share (%) of requests in the last 10 s.
    pub retry_budget_percent: f64,
    /// Retry budget: retries always allowed per second, on top of the share.
    pub retry_budget_min_per_second: u32,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            retry_budget_percent: 20.0,
            retry_budget_min_per_second: 10,
        }
    }
}

/// VirtualService annotation overriding the retry budget's share (%) for its routes.
pub const RETRY_BUDGET_PERCENT_ANNOTATION: &str = "retry.sluice.io/budget-percent";
/// VirtualService annotation overriding the retry budget's floor (retries per second).
pub const RETRY_BUDGET_MIN_ANNOTATION: &str = "retry.sluice.io/budget-min-retries-per-second";
