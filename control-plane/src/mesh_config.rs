//! Mesh-wide settings of the controller (Istio's MeshConfig equivalents),
//! read from flags and from an Istio MeshConfig YAML file (`--mesh-config`).

mod istio;

pub use istio::{MeshConfigError, parse_mesh_config};
/// How sidecars normalize request paths (the config protocol's enum).
pub use sluice_api::config::PathNormalization;

use std::collections::BTreeMap;

/// Settings that apply to every proxy unless an object overrides them.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshConfig {
    /// Namespace whose policies apply mesh-wide (Istio's root namespace).
    pub root_namespace: String,
    /// Sluice's mesh-wide retry budget, when one is set (`None`, the
    /// default: retries are limited only by each route's `attempts`, as in
    /// Istio, where `connectionPool.http.maxRetries` defaults to 2³²−1).
    pub retry_budget: Option<RetryBudget>,
    /// `h2UpgradePolicy: UPGRADE`: HTTP/1.1 requests to ports declared HTTP go
    /// upstream as HTTP/2 unless a DestinationRule says otherwise (Istio's
    /// default `DO_NOT_UPGRADE` is `false`).
    pub h2_upgrade: bool,
    /// `outboundTrafficPolicy.mode: REGISTRY_ONLY`: captured traffic for
    /// destinations no service covers is refused instead of passed through
    /// (Istio's default `ALLOW_ANY` is `false`).
    pub registry_only: bool,
    /// `pathNormalization.normalization` (Istio's `DEFAULT` is `BASE`).
    pub path_normalization: PathNormalization,
    /// Tracing and access logging defaults and providers.
    pub telemetry: MeshTelemetry,
    /// `defaultConfig.concurrency`: worker threads of injected sidecars
    /// (`None`: the CPUs each may use, at most 2; 0: every such CPU).
    pub proxy_concurrency: Option<u32>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            retry_budget: None,
            h2_upgrade: false,
            registry_only: false,
            path_normalization: PathNormalization::Base,
            telemetry: MeshTelemetry::default(),
            proxy_concurrency: None,
        }
    }
}

/// The telemetry part of MeshConfig.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshTelemetry {
    /// `enableTracing`: off turns every span export off (default on).
    pub enable_tracing: bool,
    /// `defaultConfig.tracing.sampling`: percent sampled when no Telemetry sets
    /// one (Istio's default 1%).
    pub default_sampling: f64,
    /// `extensionProviders` by name.
    pub providers: BTreeMap<String, Provider>,
    /// `defaultProviders.tracing`: used when no Telemetry names providers.
    pub default_tracing: Vec<String>,
    /// `defaultProviders.metrics` (Istio's default: `prometheus`).
    pub default_metrics: Vec<String>,
    /// `defaultProviders.accessLogging`.
    pub default_access_logging: Vec<String>,
    /// `accessLogFile`: a non-empty path turns the built-in `envoy` access
    /// log on for every proxy (Sluice writes it to the proxy's stdout).
    pub access_log_file: Option<String>,
    /// `accessLogEncoding`.
    pub access_log_encoding: AccessLogEncoding,
}

impl Default for MeshTelemetry {
    fn default() -> Self {
        Self {
            enable_tracing: true,
            default_sampling: 1.0,
            providers: BTreeMap::new(),
            default_tracing: Vec::new(),
            default_metrics: vec![PROMETHEUS_PROVIDER.to_owned()],
            default_access_logging: Vec::new(),
            access_log_file: None,
            access_log_encoding: AccessLogEncoding::Text,
        }
    }
}

/// Access log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessLogEncoding {
    /// Envoy's default text line.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// An `extensionProviders` entry Sluice can use.
#[derive(Clone, Debug, PartialEq)]
pub enum Provider {
    /// `opentelemetry`: OTLP/gRPC span export to `host:port`.
    OpenTelemetry {
        /// Collector host (a DNS name or an IP).
        host: String,
        /// Collector OTLP/gRPC port.
        port: u16,
    },
    /// `envoyFileAccessLog` (and the built-in `envoy`): a log on stdout.
    FileAccessLog {
        /// Line format.
        encoding: AccessLogEncoding,
    },
    /// `prometheus`: the `istio_*` metrics on the sidecar's :15090.
    Prometheus,
    /// A provider type sidecars cannot use (e.g. `zipkin`, `envoyExtAuthzHttp`);
    /// Telemetry naming it gets nothing from it.
    Unsupported {
        /// The provider's type key in MeshConfig.
        kind: String,
    },
}

/// Name of Istio's built-in access log provider.
pub const ENVOY_PROVIDER: &str = "envoy";

/// Name of Istio's built-in Prometheus metrics provider (the `istio_*`
/// metrics every sidecar serves on :15090).
pub const PROMETHEUS_PROVIDER: &str = "prometheus";

/// A retry budget (after Linkerd's): over the last 10 s, retries may not
/// exceed `percent`% of requests plus `min_per_second` per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// Retries allowed as a share (%) of requests in the last 10 s.
    pub percent: f64,
    /// Retries always allowed per second, on top of the share.
    pub min_per_second: u32,
}

impl RetryBudget {
    /// Linkerd's default, used for whatever part of a budget is not given.
    pub const DEFAULT: RetryBudget = RetryBudget {
        percent: 20.0,
        min_per_second: 10,
    };
}

/// VirtualService annotation setting the retry budget's share (%) for its routes.
pub const RETRY_BUDGET_PERCENT_ANNOTATION: &str = "retry.sluice.io/budget-percent";
/// VirtualService annotation setting the retry budget's floor (retries per second).
pub const RETRY_BUDGET_MIN_ANNOTATION: &str = "retry.sluice.io/budget-min-retries-per-second";

#[cfg(test)]
mod tests;
