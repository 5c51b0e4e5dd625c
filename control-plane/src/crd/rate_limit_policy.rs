//! `RateLimitPolicy` (sluice.io): a token bucket on a workload's inbound,
//! optionally per route and per source principal.

use super::status::IstioStatus;
use super::string_match::{StringMatch, WorkloadLabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Spec of a `RateLimitPolicy`.
#[derive(
    CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq,
)]
#[kube(
    group = "sluice.io",
    version = "v1alpha1",
    kind = "RateLimitPolicy",
    plural = "ratelimitpolicies",
    shortname = "rlp",
    namespaced,
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Token bucket rate limit on a workload's inbound traffic."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitPolicySpec {
    /// Workloads limited; all in the namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadLabelSelector>,
    /// Bucket capacity.
    #[serde(default)]
    pub max_tokens: i64,
    /// Tokens added every `fillInterval`.
    #[serde(default)]
    pub tokens_per_fill: i64,
    /// Refill period (duration).
    #[serde(default)]
    pub fill_interval: String,
    /// Requests limited: any entry matching; all requests when empty.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<RateLimitMatch>,
    /// Peer identities the limit applies to; every peer when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_principals: Vec<String>,
}

/// Request match of a rate limit; all set fields must match.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitMatch {
    /// Request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Request headers by lowercase name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
}
