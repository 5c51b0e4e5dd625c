//! Validation shared by analyze, the controller and the admission webhook:
//! Istio's rules (pkg/config/validation), reported per field path.

mod destination_rule;
mod duration;
mod envoy_filter;
mod field;
mod gateway;
mod http_route;
mod rate_limit_policy;
pub(crate) mod security;
mod service_entry;
mod sidecar;
mod telemetry;
mod virtual_service;
mod warnings;

pub use duration::parse_duration;
pub use envoy_filter::{
    Bucket, HeaderAppend, HeaderToAdd, LimitStage, LimitTarget, LocalRateLimit, PatchContext,
    local_rate_limit, local_rate_limits,
};
pub(crate) use field::host_subset_of;
pub(crate) use sidecar::default_endpoint;
pub use warnings::warnings;

use crate::resource::{Resource, ResourceKey};
use std::fmt;

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Field path, e.g. `spec.http[0].route[1].weight`.
    pub path: String,
    /// What is wrong, e.g. `must be >= 0`.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Problems collected while walking a spec.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem at `path`.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    /// Records `result`'s error, if any, at `path`.
    pub fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.push(path, message);
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }
}

/// A spec that can check itself; paths start at `spec`.
pub trait Validate {
    /// Appends every problem found to `errors`.
    fn validate(&self, errors: &mut FieldErrors);
}

/// Checks `resource` against Istio's (and Sluice's) rules; empty when valid.
pub fn validate(resource: &Resource) -> Vec<FieldError> {
    let mut errors = FieldErrors::new();
    check_metadata(&mut errors, resource);
    match resource {
        Resource::VirtualService(r) => {
            r.spec.validate(&mut errors);
            check_retry_budget_annotations(&mut errors, r.metadata.annotations.as_ref());
        }
        Resource::DestinationRule(r) => r.spec.validate(&mut errors),
        Resource::ServiceEntry(r) => r.spec.validate(&mut errors),
        Resource::WorkloadEntry(r) => r.spec.validate(&mut errors),
        Resource::Sidecar(r) => r.spec.validate(&mut errors),
        Resource::Gateway(r) => {
            r.spec.validate(&mut errors);
            gateway::check_name(&mut errors, resource.name());
        }
        Resource::EnvoyFilter(r) => r.spec.validate(&mut errors),
        Resource::PeerAuthentication(r) => r.spec.validate(&mut errors),
        Resource::AuthorizationPolicy(r) => r.spec.validate(&mut errors),
        Resource::RequestAuthentication(r) => r.spec.validate(&mut errors),
        Resource::RateLimitPolicy(r) => r.spec.validate(&mut errors),
        Resource::Telemetry(r) => r.spec.validate(&mut errors),
    }
    errors.into_vec()
}

/// Sluice's retry-budget annotations on a VirtualService must parse.
fn check_retry_budget_annotations(
    errors: &mut FieldErrors,
    annotations: Option<&std::collections::BTreeMap<String, String>>,
) {
    use crate::mesh_config::{RETRY_BUDGET_MIN_ANNOTATION, RETRY_BUDGET_PERCENT_ANNOTATION};
    let Some(annotations) = annotations else {
        return;
    };
    if let Some(v) = annotations.get(RETRY_BUDGET_PERCENT_ANNOTATION)
        && !v
            .trim()
            .parse::<f64>()
            .is_ok_and(|p| (0.0..=100.0).contains(&p))
    {
        errors.push(
            format!("metadata.annotations[{RETRY_BUDGET_PERCENT_ANNOTATION}]"),
            format!("`{v}` must be a number from 0 to 100"),
        );
    }
    if let Some(v) = annotations.get(RETRY_BUDGET_MIN_ANNOTATION)
        && v.trim().parse::<u32>().is_err()
    {
        errors.push(
            format!("metadata.annotations[{RETRY_BUDGET_MIN_ANNOTATION}]"),
            format!("`{v}` must be a whole number of retries per second"),
        );
    }
}

/// Names as the API server requires them: a lowercase DNS-1123 subdomain
/// for the name, a lowercase DNS-1123 label for the namespace.
fn check_metadata(errors: &mut FieldErrors, resource: &Resource) {
    let lowercase_label =
        |s: &str| field::is_dns1123_label(s) && !s.bytes().any(|c| c.is_ascii_uppercase());
    let name = resource.name();
    if name.len() > 253 || !name.split('.').all(lowercase_label) {
        errors.push(
            "metadata.name",
            format!("`{name}` is not a lowercase DNS-1123 subdomain"),
        );
    }
    let namespace = resource.namespace();
    if !lowercase_label(namespace) {
        errors.push(
            "metadata.namespace",
            format!("`{namespace}` is not a lowercase DNS-1123 label"),
        );
    }
}

/// A report line: `VirtualService default/reviews: spec.http[0].route[1].weight: must be >= 0`.
#[derive(Clone, Copy, Debug)]
pub struct Problem<'a>(pub &'a ResourceKey, pub &'a FieldError);

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests;
