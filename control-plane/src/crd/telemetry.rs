//! `Telemetry` (telemetry.istio.io): tracing and access logging of
//! workloads, scoped from the root namespace, a namespace or a selector.

use super::status::IstioStatus;
use super::string_match::{PolicyTargetReference, WorkloadLabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Spec of a `Telemetry`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "telemetry.istio.io",
    version = "v1",
    kind = "Telemetry",
    plural = "telemetries",
    shortname = "telemetry",
    namespaced,
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "Tracing, access logging and metrics settings of workloads."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetrySpec {
    /// Workloads the settings apply to; the whole namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadLabelSelector>,
    /// Gateway or waypoint attachment (not supported by sidecars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Gateway or waypoint attachments (not supported by sidecars).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Tracing settings; Sluice applies the first entry per mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracing: Vec<TelemetryTracing>,
    /// Access logging settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_logging: Vec<TelemetryAccessLogging>,
    /// Metrics customization: overrides may switch standard metrics off per mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<TelemetryMetrics>,
}

/// A reference to an extension provider of the mesh config.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRef {
    /// Name as in `extensionProviders[].name` (or the built-in `envoy`).
    pub name: String,
}

/// Which side of the traffic a setting applies to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadModeSelector {
    /// `CLIENT_AND_SERVER` (default), `CLIENT` or `SERVER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// `Tracing`: providers, sampling and span tags.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryTracing {
    /// Traffic the entry applies to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<WorkloadModeSelector>,
    /// Providers spans are sent to; inherited (or the mesh default) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Share of requests sampled, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_sampling_percentage: Option<f64>,
    /// Keep propagating trace context but report no spans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_span_reporting: Option<bool>,
    /// Extra span attributes by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// Sample by `x-request-id` (accepted; Sluice samples at random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_request_id_for_trace_sampling: Option<bool>,
    /// Istio's own span tags (accepted; Sluice always adds them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_istio_tags: Option<bool>,
}

/// Where a custom tag's value comes from; exactly one is set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomTag {
    /// A fixed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<LiteralTag>,
    /// An environment variable of the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<NamedTag>,
    /// A request header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedTag>,
}

/// A literal tag value.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LiteralTag {
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// A tag read from an environment variable or a header.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedTag {
    /// Variable or header name.
    #[serde(default)]
    pub name: String,
    /// Value when it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
}

/// `AccessLogging`: providers and whether logging is off.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryAccessLogging {
    /// Traffic the entry applies to.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<WorkloadModeSelector>,
    /// Providers to log to; inherited (or the mesh default) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Turns logging off for the selected providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// CEL filter (not supported: refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<AccessLogFilter>,
}

/// A CEL expression choosing which requests are logged.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogFilter {
    /// The expression.
    #[serde(default)]
    pub expression: String,
}

/// `Metrics`: providers and per-metric overrides.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetryMetrics {
    /// Providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderRef>,
    /// Per-metric overrides, as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "overrides_schema")]
    pub overrides: Vec<serde_json::Value>,
    /// Reporting interval (duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_interval: Option<String>,
}

fn overrides_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

impl TelemetryMetrics {
    /// The overrides, each parsed (they are kept as written in the object).
    pub fn parsed_overrides(&self) -> impl Iterator<Item = Result<MetricsOverride, String>> + '_ {
        self.overrides
            .iter()
            .map(|v| MetricsOverride::deserialize(v).map_err(|e| e.to_string()))
    }
}

/// One `metrics[].overrides[]` entry.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsOverride {
    /// The metrics and mode it applies to; every metric on both sides when absent.
    #[serde(default, rename = "match")]
    pub match_: Option<MetricSelector>,
    /// Turns the selected metrics off (`true`) or on again (`false`).
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Label changes by label name.
    #[serde(default)]
    pub tag_overrides: BTreeMap<String, TagOverride>,
}

/// `MetricSelector`: a standard metric (or `ALL_METRICS`) or a custom one, and a mode.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSelector {
    /// `ALL_METRICS` (default), `REQUEST_COUNT`, `REQUEST_DURATION`, ...
    #[serde(default)]
    pub metric: Option<String>,
    /// A custom metric's name.
    #[serde(default)]
    pub custom_metric: Option<String>,
    /// `CLIENT_AND_SERVER` (default), `CLIENT` or `SERVER`.
    #[serde(default)]
    pub mode: Option<String>,
}

/// A `tagOverrides` entry.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TagOverride {
    /// `UPSERT` (default) or `REMOVE`.
    #[serde(default)]
    pub operation: Option<String>,
    /// A CEL expression giving the label's value (UPSERT).
    #[serde(default)]
    pub value: Option<String>,
}

/// Istio's standard metric names a selector may use, `ALL_METRICS` first.
pub const METRIC_NAMES: &[&str] = &[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
];
