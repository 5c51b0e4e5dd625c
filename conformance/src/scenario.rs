//! The scenario file format of `CONFORMANCE.md`: typed, strict (unknown fields are errors) and
//! loaded with the path of any bad field in the error message.
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[cfg(test)]
mod tests;

/// Why a scenario file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or has a wrong/unknown field.
    #[error("{path}: field `{field}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Path of the offending field inside the document (e.g. `steps[1].expect`).
        field: String,
        /// What serde reported.
        message: String,
    },
    /// The document parsed but does not make sense (e.g. a step with two actions).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One conformance scenario: a mesh to start, config to apply and steps to play.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// Unique name across the suite.
    pub name: String,
    /// The document whose behaviour this scenario checks.
    pub source: String,
    /// Whether sidecars talk mTLS to each other (default true).
    #[serde(default = "default_true")]
    pub mtls: bool,
    /// The workloads of the mesh; every instance is an echo app plus its sidecar.
    pub workloads: Vec<Workload>,
    /// Multi-document YAML applied before the first step.
    #[serde(default)]
    pub config: String,
    /// Steps played in order.
    #[serde(default)]
    pub steps: Vec<StepDoc>,
}

/// Application protocol a workload speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (and h2c, the echo accepts both).
    #[default]
    Http,
    /// HTTP/2 prior knowledge.
    Http2,
    /// gRPC over h2c.
    Grpc,
    /// Opaque TCP.
    Tcp,
}

impl Protocol {
    /// Lower-case name as used in flags and port names.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }

    /// Istio's `ServiceEntry` port protocol name.
    pub fn istio_name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Http2 => "HTTP2",
            Protocol::Grpc => "GRPC",
            Protocol::Tcp => "TCP",
        }
    }

    /// Whether clients should speak HTTP/2 prior knowledge to it.
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

/// A service with its instances per version.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    /// Service name (label `app`).
    pub service: String,
    /// Namespace (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Service account (default: the service name).
    #[serde(default)]
    pub service_account: Option<String>,
    /// Service port (default 8080).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Protocol (default http).
    #[serde(default)]
    pub protocol: Protocol,
    /// Instances per version (default `{v1: 1}`).
    #[serde(default = "default_versions")]
    pub versions: BTreeMap<String, u32>,
}

impl Workload {
    /// The effective service account.
    pub fn service_account(&self) -> &str {
        self.service_account.as_deref().unwrap_or(&self.service)
    }
}

/// One step as written: exactly one action key, plus `expect` for requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepDoc {
    /// Send requests.
    #[serde(default)]
    pub request: Option<Request>,
    /// What the responses to `request` must look like.
    #[serde(default)]
    pub expect: Option<Expect>,
    /// Change how echo instances answer.
    #[serde(default)]
    pub behave: Option<Behave>,
    /// Apply more documents.
    #[serde(default)]
    pub apply: Option<String>,
    /// Delete documents.
    #[serde(default)]
    pub delete: Option<String>,
    /// Wait.
    #[serde(default)]
    pub sleep_ms: Option<u64>,
    /// Stop echo instances.
    #[serde(default)]
    pub kill: Option<Selector>,
    /// Start echo instances again.
    #[serde(default)]
    pub start: Option<Selector>,
    /// Check sidecar metrics.
    #[serde(default)]
    pub metrics: Option<MetricsStep>,
}

/// A step with its action resolved.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send requests and check the responses.
    Request(Box<(Request, Expect)>),
    /// Change echo behaviour.
    Behave(Behave),
    /// Apply documents.
    Apply(String),
    /// Delete documents.
    Delete(String),
    /// Sleep this many milliseconds.
    SleepMs(u64),
    /// Kill echo instances.
    Kill(Selector),
    /// Start echo instances.
    Start(Selector),
    /// Check metrics.
    Metrics(MetricsStep),
}

impl StepDoc {
    /// Resolves the single action of this step, or says why it has none or several.
    pub fn resolve(&self) -> Result<Step, String> {
        let mut found = Vec::new();
        if let Some(r) = &self.request {
            let expect = self.expect.clone().unwrap_or_default();
            found.push(Step::Request(Box::new((r.clone(), expect))));
        }
        if let Some(b) = &self.behave {
            found.push(Step::Behave(b.clone()));
        }
        if let Some(a) = &self.apply {
            found.push(Step::Apply(a.clone()));
        }
        if let Some(d) = &self.delete {
            found.push(Step::Delete(d.clone()));
        }
        if let Some(ms) = self.sleep_ms {
            found.push(Step::SleepMs(ms));
        }
        if let Some(s) = &self.kill {
            found.push(Step::Kill(s.clone()));
        }
        if let Some(s) = &self.start {
            found.push(Step::Start(s.clone()));
        }
        if let Some(m) = &self.metrics {
            found.push(Step::Metrics(m.clone()));
        }
        if self.expect.is_some() && self.request.is_none() {
            return Err("`expect` needs a `request` in the same step".to_string());
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(
                "no action (request, behave, apply, delete, sleepMs, kill, start, metrics)".into(),
            ),
            n => Err(format!("{n} actions in one step; use one step per action")),
        }
    }
}

/// Requests to send.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Request {
    /// Service name of the client workload, or `outside`.
    pub from: String,
    /// Client version (default: any, round-robin over instances).
    #[serde(default)]
    pub from_version: Option<String>,
    /// `http://host[:port]/path` or `tcp://host:port`.
    pub url: String,
    /// HTTP method (default GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers.
    #[serde(default, deserialize_with = "string_map")]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default)]
    pub body: String,
    /// How many requests (default 1).
    #[serde(default = "default_one")]
    pub count: u32,
    /// How many in flight at once (default 1).
    #[serde(default = "default_one")]
    pub concurrency: u32,
    /// Requests per second (default: as fast as possible).
    #[serde(default)]
    pub rate: Option<f64>,
}

/// Expectations on the responses of one request step.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// Share per status code; key `error` = no HTTP response.
    #[serde(default, deserialize_with = "share_map")]
    pub status: Option<BTreeMap<String, f64>>,
    /// Share per answering version; key `none` = no echo answered.
    #[serde(default, deserialize_with = "share_map")]
    pub version: Option<BTreeMap<String, f64>>,
    /// Allowed absolute deviation of every share (default 0.05).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Headers every response must carry with these values.
    #[serde(default, deserialize_with = "string_map")]
    pub headers: BTreeMap<String, String>,
    /// Headers every response with the given status must carry; at least one such response must
    /// arrive (for mixed outcomes, e.g. only the 503s of an overflow carry `x-envoy-overloaded`).
    #[serde(default, deserialize_with = "status_string_maps")]
    pub status_headers: BTreeMap<String, BTreeMap<String, String>>,
    /// How many distinct echo instances answered.
    #[serde(default)]
    pub instances: Option<usize>,
    /// A string every response body must contain.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// Lower bound on every request's latency.
    #[serde(default)]
    pub min_latency_ms: Option<u64>,
    /// Upper bound on every request's latency.
    #[serde(default)]
    pub max_latency_ms: Option<u64>,
}

/// Default tolerance of share expectations.
pub const DEFAULT_TOLERANCE: f64 = 0.05;

/// A `behave` step: how selected echo instances answer from now on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Behave {
    /// Service of the instances.
    pub service: String,
    /// Version (default every version).
    #[serde(default)]
    pub version: Option<String>,
    /// Instance indexes within the version (default all).
    #[serde(default)]
    pub instances: Option<Vec<u32>>,
    /// Status to answer with; absent/null = normal again.
    #[serde(default)]
    pub status: Option<u16>,
    /// Delay before answering.
    #[serde(default)]
    pub delay_ms: u64,
    /// gRPC status to answer gRPC requests with (trailers-only); absent = normal again.
    #[serde(default)]
    pub grpc_status: Option<u32>,
}

/// Selects echo instances (for `kill` and `start`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// Service of the instances.
    pub service: String,
    /// Version (default every version).
    #[serde(default)]
    pub version: Option<String>,
    /// Instance indexes within the version (default all).
    #[serde(default)]
    pub instances: Option<Vec<u32>>,
}

/// A `metrics` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricsStep {
    /// Service whose sidecars are scraped.
    pub of: String,
    /// Version (default every version).
    #[serde(default)]
    pub version: Option<String>,
    /// Expressions `name{label="value"} OP number`.
    pub expect: Vec<String>,
}

/// Loads and validates one scenario file.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates scenario text; `path` is only used in error messages.
pub fn parse(text: &str, path: &Path) -> Result<Scenario, LoadError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let scenario: Scenario =
        serde_path_to_error::deserialize(de).map_err(|e| LoadError::Parse {
            path: path.to_path_buf(),
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    let invalid = |message: String| LoadError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if scenario.workloads.is_empty() {
        return Err(invalid("no workloads".into()));
    }
    if !scenario.source.starts_with("https://") && !scenario.source.starts_with("http://") {
        return Err(invalid(format!(
            "source must be the URL of the document the scenario follows, got {:?}",
            scenario.source
        )));
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        step.resolve()
            .map_err(|m| invalid(format!("steps[{i}]: {m}")))?;
        if let Some(r) = &step.request {
            if !r.url.starts_with("http://") && !r.url.starts_with("tcp://") {
                return Err(invalid(format!(
                    "steps[{i}].request.url must start with http:// or tcp://, got {:?}",
                    r.url
                )));
            }
            if r.count == 0 {
                return Err(invalid(format!(
                    "steps[{i}].request.count must be at least 1"
                )));
            }
        }
    }
    Ok(scenario)
}

impl Scenario {
    /// The resolved steps (validated at load time).
    pub fn resolved_steps(&self) -> Result<Vec<Step>, String> {
        self.steps.iter().map(StepDoc::resolve).collect()
    }
}

fn default_true() -> bool {
    true
}
fn default_namespace() -> String {
    "default".into()
}
fn default_port() -> u16 {
    8080
}
fn default_versions() -> BTreeMap<String, u32> {
    BTreeMap::from([("v1".to_string(), 1)])
}
fn default_method() -> String {
    "GET".into()
}
fn default_one() -> u32 {
    1
}

/// YAML scalars (strings, numbers, booleans) as text: `200` and `"200"` are the same key.
fn scalar_text(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = serde_yaml::Mapping::deserialize(d)?;
    raw.iter()
        .map(|(k, v)| match (scalar_text(k), scalar_text(v)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(serde::de::Error::custom("keys and values must be scalars")),
        })
        .collect()
}

fn status_string_maps<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, D::Error> {
    let raw = serde_yaml::Mapping::deserialize(d)?;
    raw.iter()
        .map(|(k, v)| {
            let key = scalar_text(k)
                .ok_or_else(|| serde::de::Error::custom("keys must be status codes"))?;
            let headers = string_map(v.clone()).map_err(serde::de::Error::custom)?;
            Ok((key, headers))
        })
        .collect()
}

fn share_map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, f64>>, D::Error> {
    let raw = Option::<serde_yaml::Mapping>::deserialize(d)?;
    raw.map(|m| {
        m.iter()
            .map(|(k, v)| match (scalar_text(k), v.as_f64()) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(serde::de::Error::custom(
                    "shares must map a status/version to a number",
                )),
            })
            .collect()
    })
    .transpose()
}
