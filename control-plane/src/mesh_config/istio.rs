//! Reading Istio's MeshConfig YAML (the `mesh` key of Istio's `istio`
//! ConfigMap). Only the fields Sluice applies are read; any other top-level
//! field is reported back so the controller can log that it is ignored.

use super::{AccessLogEncoding, ENVOY_PROVIDER, MeshConfig, PathNormalization, Provider};
use serde_yaml::{Mapping, Value};

/// A MeshConfig field Sluice reads has a value it cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mesh config {path}: {message}")]
pub struct MeshConfigError {
    /// Field path, e.g. `extensionProviders[0].opentelemetry.port`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> MeshConfigError {
    MeshConfigError {
        path: path.into(),
        message: message.into(),
    }
}

/// Top-level fields read; every other one is returned as ignored.
const READ: &[&str] = &[
    "rootNamespace",
    "enableTracing",
    "defaultConfig",
    "extensionProviders",
    "defaultProviders",
    "accessLogFile",
    "accessLogEncoding",
    "h2UpgradePolicy",
    "outboundTrafficPolicy",
    "pathNormalization",
];

/// Applies the MeshConfig YAML in `text` over `base`; returns the result and
/// the names of top-level fields Sluice does not read.
pub fn parse_mesh_config(
    text: &str,
    base: MeshConfig,
) -> Result<(MeshConfig, Vec<String>), MeshConfigError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| err("", e.to_string()))?;
    let root = match value {
        Value::Null => return Ok((base, Vec::new())),
        Value::Mapping(m) => m,
        _ => return Err(err("", "must be a mapping")),
    };
    let mut mesh = base;
    let mut ignored = Vec::new();
    for key in root.keys() {
        match key.as_str() {
            Some(k) if READ.contains(&k) => {}
            Some(k) => ignored.push(k.to_string()),
            None => return Err(err("", format!("non-string key {key:?}"))),
        }
    }
    if let Some(ns) = string(&root, "rootNamespace", "rootNamespace")? {
        mesh.root_namespace = ns;
    }
    if let Some(policy) = string(&root, "h2UpgradePolicy", "h2UpgradePolicy")? {
        mesh.h2_upgrade = match policy.as_str() {
            "UPGRADE" => true,
            "DO_NOT_UPGRADE" => false,
            other => {
                return Err(err(
                    "h2UpgradePolicy",
                    format!("unknown value `{other}` (expected DO_NOT_UPGRADE or UPGRADE)"),
                ));
            }
        };
    }
    match root.get("pathNormalization") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            let path = "pathNormalization.normalization";
            if let Some(mode) = string(m, "normalization", path)? {
                mesh.path_normalization = match mode.as_str() {
                    "DEFAULT" | "BASE" => PathNormalization::Base,
                    "NONE" => PathNormalization::None,
                    "MERGE_SLASHES" => PathNormalization::MergeSlashes,
                    "DECODE_AND_MERGE_SLASHES" => PathNormalization::DecodeAndMergeSlashes,
                    other => {
                        return Err(err(
                            path,
                            format!(
                                "unknown value `{other}` (expected DEFAULT, NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES)"
                            ),
                        ));
                    }
                };
            }
            if let Some(k) = m.keys().find(|k| k.as_str() != Some("normalization")) {
                return Err(err(
                    "pathNormalization",
                    format!("unknown field {k:?} (expected normalization)"),
                ));
            }
        }
        Some(_) => return Err(err("pathNormalization", "must be a mapping")),
    }
    match root.get("outboundTrafficPolicy") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            let path = "outboundTrafficPolicy.mode";
            if let Some(mode) = string(m, "mode", path)? {
                mesh.registry_only = match mode.as_str() {
                    "REGISTRY_ONLY" => true,
                    "ALLOW_ANY" => false,
                    other => {
                        return Err(err(
                            path,
                            format!(
                                "unknown value `{other}` (expected ALLOW_ANY or REGISTRY_ONLY)"
                            ),
                        ));
                    }
                };
            }
            // `egressProxy` (ALLOW_ANY through a gateway) is not served.
            if let Some(k) = m.keys().find(|k| k.as_str() != Some("mode")) {
                return Err(err(
                    "outboundTrafficPolicy",
                    format!("unsupported field {k:?} (only mode is read)"),
                ));
            }
        }
        Some(_) => return Err(err("outboundTrafficPolicy", "must be a mapping")),
    }
    let t = &mut mesh.telemetry;
    if let Some(v) = root.get("enableTracing") {
        t.enable_tracing = v
            .as_bool()
            .ok_or_else(|| err("enableTracing", "must be true or false"))?;
    }
    if let Some(sampling) = root
        .get("defaultConfig")
        .and_then(|d| d.get("tracing"))
        .and_then(|t| t.get("sampling"))
    {
        let path = "defaultConfig.tracing.sampling";
        let pct = sampling
            .as_f64()
            .ok_or_else(|| err(path, "must be a number"))?;
        if !(0.0..=100.0).contains(&pct) {
            return Err(err(path, format!("{pct} must be within 0 and 100")));
        }
        t.default_sampling = pct;
    }
    if let Some(v) = root.get("defaultConfig").and_then(|d| d.get("concurrency")) {
        let path = "defaultConfig.concurrency";
        mesh.proxy_concurrency = match v {
            Value::Null => None,
            v => Some(
                crate::inject::concurrency_value(v)
                    .ok_or_else(|| err(path, crate::inject::CONCURRENCY_EXPECTED))?,
            ),
        };
    }
    if let Some(file) = string(&root, "accessLogFile", "accessLogFile")? {
        t.access_log_file = (!file.is_empty()).then_some(file);
    }
    if let Some(enc) = string(&root, "accessLogEncoding", "accessLogEncoding")? {
        t.access_log_encoding = encoding(&enc, "accessLogEncoding")?;
    }
    if let Some(defaults) = root.get("defaultProviders") {
        let defaults = defaults
            .as_mapping()
            .ok_or_else(|| err("defaultProviders", "must be a mapping"))?;
        t.default_tracing = names(defaults, "tracing")?;
        if defaults.get("metrics").is_some() {
            t.default_metrics = names(defaults, "metrics")?;
        }
        t.default_access_logging = names(defaults, "accessLogging")?;
    }
    if let Some(list) = root.get("extensionProviders") {
        let list = list
            .as_sequence()
            .ok_or_else(|| err("extensionProviders", "must be a list"))?;
        for (i, entry) in list.iter().enumerate() {
            let path = format!("extensionProviders[{i}]");
            let entry = entry
                .as_mapping()
                .ok_or_else(|| err(&path, "must be a mapping"))?;
            let name = string(entry, "name", &format!("{path}.name"))?
                .filter(|n| !n.is_empty())
                .ok_or_else(|| err(format!("{path}.name"), "name is required"))?;
            if name == ENVOY_PROVIDER {
                return Err(err(
                    format!("{path}.name"),
                    "`envoy` is the built-in access log provider's name",
                ));
            }
            let provider = provider(entry, &path)?;
            if t.providers.insert(name.clone(), provider).is_some() {
                return Err(err(
                    format!("{path}.name"),
                    format!("provider `{name}` is defined twice"),
                ));
            }
        }
    }
    Ok((mesh, ignored))
}

fn provider(entry: &Mapping, path: &str) -> Result<Provider, MeshConfigError> {
    let kinds: Vec<&str> = entry
        .keys()
        .filter_map(Value::as_str)
        .filter(|k| *k != "name")
        .collect();
    let [kind] = kinds.as_slice() else {
        return Err(err(path, "exactly one provider type must be set"));
    };
    let body = entry.get(*kind).cloned().unwrap_or(Value::Null);
    let path = format!("{path}.{kind}");
    match *kind {
        "opentelemetry" => {
            let body = body
                .as_mapping()
                .ok_or_else(|| err(&path, "must be a mapping"))?;
            let service = string(body, "service", &format!("{path}.service"))?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| err(format!("{path}.service"), "service is required"))?;
            // Istio also takes `namespace/host`; the host is what to dial.
            let host = service
                .split_once('/')
                .map_or(service.as_str(), |(_, h)| h)
                .to_string();
            let port = body
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0)
                .ok_or_else(|| err(format!("{path}.port"), "a port from 1 to 65535 is required"))?;
            if body.get("http").is_some() {
                return Err(err(
                    format!("{path}.http"),
                    "OTLP over HTTP is not supported; Sluice exports OTLP over gRPC",
                ));
            }
            Ok(Provider::OpenTelemetry { host, port })
        }
        "envoyFileAccessLog" => {
            let body = body.as_mapping().cloned().unwrap_or_default();
            if let Some(p) = string(&body, "path", &format!("{path}.path"))?
                && p != "/dev/stdout"
            {
                return Err(err(
                    format!("{path}.path"),
                    "only /dev/stdout is supported (container logs)",
                ));
            }
            // Without logFormat Envoy's default text line is written;
            // accessLogEncoding is for accessLogFile and the built-in provider.
            let encoding = match body.get("logFormat") {
                None => AccessLogEncoding::Text,
                Some(f) if f.get("labels").is_some() => AccessLogEncoding::Json,
                Some(f) if f.get("text").is_some() => {
                    return Err(err(
                        format!("{path}.logFormat.text"),
                        "custom text formats are not supported; omit logFormat for Envoy's default line or use labels for JSON",
                    ));
                }
                Some(_) => AccessLogEncoding::Text,
            };
            Ok(Provider::FileAccessLog { encoding })
        }
        "prometheus" => Ok(Provider::Prometheus),
        other => Ok(Provider::Unsupported {
            kind: other.to_string(),
        }),
    }
}

fn string(map: &Mapping, key: &str, path: &str) -> Result<Option<String>, MeshConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(path, "must be a string")),
    }
}

fn names(map: &Mapping, key: &str) -> Result<Vec<String>, MeshConfigError> {
    let path = format!("defaultProviders.{key}");
    match map.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err(format!("{path}[{i}]"), "must be a provider name"))
            })
            .collect(),
        Some(_) => Err(err(path, "must be a list of provider names")),
    }
}

fn encoding(value: &str, path: &str) -> Result<AccessLogEncoding, MeshConfigError> {
    match value {
        "TEXT" => Ok(AccessLogEncoding::Text),
        "JSON" => Ok(AccessLogEncoding::Json),
        other => Err(err(path, format!("`{other}` must be TEXT or JSON"))),
    }
}
