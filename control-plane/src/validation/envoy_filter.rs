//! EnvoyFilter support: the only patch Sluice understands is the insertion
//! of `envoy.filters.http.local_ratelimit`, read into a [`LocalRateLimit`].
//! Patches that cannot change what a sidecar does (those for gateways, a
//! cluster added for other patches to use) are accepted with a warning;
//! every other patch is refused by name, never silently ignored.

use super::field::{at, check_labels, item, one_of};
use super::{FieldError, FieldErrors, Validate, parse_duration};
use crate::crd::envoy_filter::EnvoyConfigObjectPatch;
use crate::crd::{EnvoyFilter, EnvoyFilterSpec};
use serde_json::Value;
use std::time::Duration;

const FILTER_NAME: &str = "envoy.filters.http.local_ratelimit";
const CONFIG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";
const TYPED_STRUCTS: &[&str] = &[
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
];
const HCM_NAMES: &[&str] = &[
    "envoy.filters.network.http_connection_manager",
    "envoy.http_connection_manager",
];
const INSERT_OPERATIONS: &[&str] = &["ADD", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST"];
/// Istio's `EnvoyFilter.ApplyTo` values (without `INVALID`, refused as unset).
const APPLY_TO: &[&str] = &[
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
];
/// `applyTo` values patched through a listener match.
const LISTENER_OBJECTS: &[&str] = &["LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER"];
/// `applyTo` values patched through a route configuration match.
const ROUTE_OBJECTS: &[&str] = &["ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE"];
/// Istio's `Patch.Operation` values (without `INVALID`, refused as unset).
const OPERATIONS: &[&str] = &[
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
];
const CONTEXTS: &[&str] = &["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"];
const FILTER_CLASSES: &[&str] = &["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"];
const ROUTE_ACTIONS: &[&str] = &["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"];
/// Envoy refuses token buckets that refill faster than this.
const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

/// Which traffic of the selected workloads a limit applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PatchContext {
    /// `SIDECAR_INBOUND`: requests the workload receives.
    Inbound,
    /// `SIDECAR_OUTBOUND`: requests the workload sends.
    Outbound,
    /// `ANY` (or unset): both directions.
    Any,
}

/// Where an inserted filter lands among the HTTP filters istiod generates for
/// a sidecar's inbound (`istio.metadata_exchange`, `envoy.filters.http.jwt_authn`,
/// `istio_authn`, `envoy.filters.http.rbac`, then stats, the router), as far as
/// it decides which requests the limit sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum LimitStage {
    /// After authorization: requests refused by a policy never reach it.
    #[default]
    AfterAuthorization,
    /// After JWT authentication, before authorization.
    BeforeAuthorization,
    /// Before JWT authentication and authorization: every request spends a token.
    BeforeAuthentication,
}

impl LimitStage {
    /// The stage of a filter inserted with `operation` next to `sub_filter`.
    /// Istio puts `INSERT_FIRST` and an `INSERT_BEFORE` without a subFilter
    /// at the front of the chain, `ADD` and an `INSERT_AFTER` without one at
    /// the end.
    fn of(operation: &str, sub_filter: Option<&str>) -> Self {
        const METADATA: &str = "istio.metadata_exchange";
        const JWT: &[&str] = &["envoy.filters.http.jwt_authn", "envoy.jwt_authn"];
        const AUTHN: &str = "istio_authn";
        const RBAC: &[&str] = &["envoy.filters.http.rbac", "envoy.rbac"];
        match (operation, sub_filter) {
            ("INSERT_FIRST", _) | ("INSERT_BEFORE", None) => Self::BeforeAuthentication,
            ("INSERT_BEFORE", Some(f)) if f == METADATA || JWT.contains(&f) => {
                Self::BeforeAuthentication
            }
            ("INSERT_BEFORE", Some(f)) if f == AUTHN || RBAC.contains(&f) => {
                Self::BeforeAuthorization
            }
            ("INSERT_AFTER", Some(f)) if f == METADATA => Self::BeforeAuthentication,
            ("INSERT_AFTER", Some(f)) if f == AUTHN || JWT.contains(&f) => {
                Self::BeforeAuthorization
            }
            _ => Self::AfterAuthorization,
        }
    }
}

/// A local (per proxy) token bucket read from an EnvoyFilter patch.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LocalRateLimit {
    /// Direction the limit applies to.
    pub context: PatchContext,
    /// Bucket capacity.
    pub max_tokens: u32,
    /// Tokens added each `fill_interval` (Envoy's default: 1).
    pub tokens_per_fill: u32,
    /// Refill period (>= 50ms, as Envoy requires).
    pub fill_interval: Duration,
    /// Share of requests (0..=100) the filter checks; Envoy's default when
    /// `filter_enabled` is absent is 0, i.e. the filter does nothing.
    pub enabled_percent: f64,
    /// Share of checked requests (0..=100) actually refused with 429;
    /// Envoy's default when `filter_enforced` is absent is 0 (count only).
    pub enforced_percent: f64,
    /// `stat_prefix` of the filter, when given.
    pub stat_prefix: Option<String>,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`: answers carry the
    /// `x-ratelimit-*` headers (Envoy sends none by default).
    pub x_ratelimit_headers: bool,
    /// Which inbound checks run before it.
    pub stage: LimitStage,
}

impl Validate for EnvoyFilterSpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        if self.workload_selector.is_some() && !self.target_refs.is_empty() {
            errors.push(
                spec,
                "only one of targetRefs or workloadSelector can be set",
            );
        }
        if let Some(sel) = &self.workload_selector {
            check_labels(errors, &at(spec, "workloadSelector.labels"), &sel.labels);
        }
        if self.config_patches.is_empty() {
            errors.push(
                at(spec, "configPatches"),
                "at least one config patch is required",
            );
        }
        for (i, patch) in self.config_patches.iter().enumerate() {
            if let Err(e) = read_patch(&item(spec, "configPatches", i), patch) {
                errors.push(e.path, e.message);
            }
        }
    }
}

/// The first local rate limit of `filter`; `Ok(None)` when it has no patches.
/// Errors name the first unsupported or malformed patch.
pub fn local_rate_limit(filter: &EnvoyFilter) -> Result<Option<LocalRateLimit>, FieldError> {
    local_rate_limits(filter).map(|limits| limits.into_iter().next())
}

/// Every local rate limit of `filter`, in patch order.
pub fn local_rate_limits(filter: &EnvoyFilter) -> Result<Vec<LocalRateLimit>, FieldError> {
    filter
        .spec
        .config_patches
        .iter()
        .enumerate()
        .filter_map(|(i, patch)| read_patch(&item("spec", "configPatches", i), patch).transpose())
        .collect()
}

/// Why `patch` is accepted without being applied, when it cannot change what
/// a sidecar does.
pub fn inert_patch(patch: &EnvoyConfigObjectPatch) -> Option<&'static str> {
    // A malformed patch is refused, whatever it is for.
    if check_structure("", patch).is_err() {
        return None;
    }
    let context = patch.match_.as_ref().and_then(|m| m.context.as_deref());
    let operation = patch.patch.as_ref().and_then(|p| p.operation.as_deref());
    if context == Some("GATEWAY") {
        Some(
            "not applied: the patch is for gateways, and Sluice runs no gateway proxy (Istio's sidecars ignore it too)",
        )
    } else if patch.apply_to.as_deref() == Some("CLUSTER") && operation == Some("ADD") {
        Some(
            "not applied: it adds a cluster that no sidecar route uses (only other EnvoyFilter patches could refer to it)",
        )
    } else {
        None
    }
}

fn unsupported(path: &str, why: impl std::fmt::Display) -> FieldError {
    FieldError::new(path, format!("unsupported EnvoyFilter patch: {why}"))
}

fn required(path: String, why: &str) -> FieldError {
    FieldError::new(path, format!("required: {why}"))
}

fn known(path: String, value: &str, allowed: &[&str]) -> Result<(), FieldError> {
    one_of(value, allowed).map_err(|e| FieldError::new(path, e))
}

/// Istio's structural rules for any patch (`ValidateEnvoyFilter`), whether
/// or not Sluice applies it: `applyTo`, `patch`, `patch.operation` set and
/// known, `patch.value` set unless the operation is `REMOVE`, known enum
/// values, a proxy version regex that compiles, a match of the kind
/// `applyTo` patches (listener, route configuration or cluster, only one
/// of them) and well-formed filter matches. The first problem is returned.
fn check_structure(path: &str, patch: &EnvoyConfigObjectPatch) -> Result<(), FieldError> {
    let apply_to = match patch.apply_to.as_deref() {
        None | Some("INVALID") => {
            return Err(required(
                at(path, "applyTo"),
                "the kind of Envoy object patched",
            ));
        }
        Some(a) => a,
    };
    known(at(path, "applyTo"), apply_to, APPLY_TO)?;
    let patch_path = at(path, "patch");
    let Some(p) = &patch.patch else {
        return Err(required(patch_path, "the operation and value of the patch"));
    };
    let operation = match p.operation.as_deref() {
        None | Some("INVALID") => {
            return Err(required(
                at(&patch_path, "operation"),
                "how the patch is applied",
            ));
        }
        Some(o) => o,
    };
    known(at(&patch_path, "operation"), operation, OPERATIONS)?;
    if operation != "REMOVE" && p.value.is_none() {
        return Err(required(
            at(&patch_path, "value"),
            &format!("operation {operation} needs a value (only REMOVE takes none)"),
        ));
    }
    if let Some(class) = &p.filter_class {
        known(at(&patch_path, "filterClass"), class, FILTER_CLASSES)?;
    }
    let Some(m) = &patch.match_ else {
        return Ok(());
    };
    let match_path = at(path, "match");
    if let Some(context) = &m.context {
        known(at(&match_path, "context"), context, CONTEXTS)?;
    }
    if let Some(version) = m.proxy.as_ref().and_then(|p| p.proxy_version.as_deref())
        && !version.is_empty()
        && let Err(e) = regex::Regex::new(version)
    {
        return Err(FieldError::new(
            at(&match_path, "proxy.proxyVersion"),
            format!("invalid regular expression: {e}"),
        ));
    }
    let objects = [
        m.listener.is_some(),
        m.route_configuration.is_some(),
        m.cluster.is_some(),
    ];
    if objects.iter().filter(|set| **set).count() > 1 {
        return Err(FieldError::new(
            match_path,
            "set only one of listener, routeConfiguration and cluster",
        ));
    }
    if let Some(action) = m
        .route_configuration
        .as_ref()
        .and_then(|r| r.vhost.as_ref())
        .and_then(|v| v.route.as_ref())
        .and_then(|r| r.action.as_deref())
    {
        known(
            at(&match_path, "routeConfiguration.vhost.route.action"),
            action,
            ROUTE_ACTIONS,
        )?;
    }
    let any_object = objects.iter().any(|set| *set);
    if LISTENER_OBJECTS.contains(&apply_to) {
        if any_object && m.listener.is_none() {
            return Err(FieldError::new(
                match_path,
                format!(
                    "applyTo {apply_to} patches listener objects: the match must be a listener match"
                ),
            ));
        }
        if let Some(filter) = m
            .listener
            .as_ref()
            .and_then(|l| l.filter_chain.as_ref())
            .and_then(|c| c.filter.as_ref())
        {
            let filter_path = at(&match_path, "listener.filterChain.filter");
            let name = filter.name.as_deref().unwrap_or("");
            if name.is_empty() {
                return Err(required(
                    at(&filter_path, "name"),
                    "a filter match needs a name to match on",
                ));
            }
            if let Some(sub) = &filter.sub_filter {
                let sub_path = at(&filter_path, "subFilter");
                if apply_to != "HTTP_FILTER" {
                    return Err(FieldError::new(
                        sub_path,
                        format!(
                            "a subFilter match is only for applyTo HTTP_FILTER (not {apply_to})"
                        ),
                    ));
                }
                if !HCM_NAMES.contains(&name) {
                    return Err(FieldError::new(
                        sub_path,
                        format!(
                            "a subFilter match needs the filter match to name {}",
                            HCM_NAMES[0]
                        ),
                    ));
                }
                if sub.name.as_deref().unwrap_or("").is_empty() {
                    return Err(required(
                        at(&sub_path, "name"),
                        "a subFilter match needs a name to match on",
                    ));
                }
            }
        }
    } else if ROUTE_OBJECTS.contains(&apply_to) {
        if any_object && m.route_configuration.is_none() {
            return Err(FieldError::new(
                match_path,
                format!(
                    "applyTo {apply_to} patches route objects: the match must be a routeConfiguration match"
                ),
            ));
        }
    } else if apply_to == "CLUSTER" && any_object && m.cluster.is_none() {
        return Err(FieldError::new(
            match_path,
            "applyTo CLUSTER patches clusters: the match must be a cluster match",
        ));
    }
    Ok(())
}

/// The patch's rate limit; `None` for an inert patch.
fn read_patch(
    path: &str,
    patch: &EnvoyConfigObjectPatch,
) -> Result<Option<LocalRateLimit>, FieldError> {
    check_structure(path, patch)?;
    if inert_patch(patch).is_some() {
        return Ok(None);
    }
    let apply_to = patch.apply_to.as_deref().unwrap_or("INVALID");
    if apply_to != "HTTP_FILTER" {
        return Err(unsupported(
            path,
            format!("applyTo {apply_to} (only HTTP_FILTER is supported)"),
        ));
    }
    let m = patch.match_.clone().unwrap_or_default();
    let context = match m.context.as_deref().unwrap_or("ANY") {
        "SIDECAR_INBOUND" => PatchContext::Inbound,
        "SIDECAR_OUTBOUND" => PatchContext::Outbound,
        "ANY" => PatchContext::Any,
        other => return Err(unsupported(path, format!("match.context {other}"))),
    };
    if m.route_configuration.is_some() || m.cluster.is_some() {
        return Err(unsupported(path, "only listener matches are supported"));
    }
    if let Some(name) = m
        .listener
        .as_ref()
        .and_then(|l| l.filter_chain.as_ref())
        .and_then(|c| c.filter.as_ref())
        .and_then(|f| f.name.as_ref())
        && !HCM_NAMES.contains(&name.as_str())
    {
        return Err(unsupported(path, format!("filter {name}")));
    }
    let Some(p) = &patch.patch else {
        return Err(unsupported(path, "patch is missing"));
    };
    let operation = p.operation.as_deref().unwrap_or("INVALID");
    if !INSERT_OPERATIONS.contains(&operation) {
        return Err(unsupported(
            path,
            format!("operation {operation} (only filter insertion is supported)"),
        ));
    }
    let value = p.value.as_ref().unwrap_or(&Value::Null);
    let name = value.get("name").and_then(Value::as_str).unwrap_or("");
    if name != FILTER_NAME {
        return Err(unsupported(
            path,
            format!("filter `{name}` (only {FILTER_NAME} is supported)"),
        ));
    }
    let value_path = format!("{path}.patch.value");
    let (config, config_path) = typed_config(value, &value_path)?;
    let sub_filter = m
        .listener
        .as_ref()
        .and_then(|l| l.filter_chain.as_ref())
        .and_then(|c| c.filter.as_ref())
        .and_then(|f| f.sub_filter.as_ref())
        .and_then(|f| f.name.as_deref());
    let stage = LimitStage::of(operation, sub_filter);
    read_config(config, &config_path, context).map(|limit| Some(LocalRateLimit { stage, ..limit }))
}

/// Finds the LocalRateLimit config, directly typed or inside a TypedStruct.
fn typed_config<'a>(value: &'a Value, path: &str) -> Result<(&'a Value, String), FieldError> {
    let (key, typed) = ["typed_config", "typedConfig"]
        .iter()
        .find_map(|k| value.get(*k).map(|v| (*k, v)))
        .ok_or_else(|| FieldError::new(path, "typed_config is required"))?;
    let path = format!("{path}.{key}");
    let type_url = typed.get("@type").and_then(Value::as_str).unwrap_or("");
    if type_url == CONFIG_TYPE {
        return Ok((typed, path));
    }
    if TYPED_STRUCTS.contains(&type_url) {
        let inner = typed
            .get("type_url")
            .or_else(|| typed.get("typeUrl"))
            .and_then(Value::as_str);
        if inner == Some(CONFIG_TYPE) {
            let value = typed
                .get("value")
                .ok_or_else(|| FieldError::new(&path, "TypedStruct value is required"))?;
            return Ok((value, format!("{path}.value")));
        }
    }
    Err(FieldError::new(
        format!("{path}.@type"),
        format!("unsupported EnvoyFilter patch: type `{type_url}` (expected {CONFIG_TYPE})"),
    ))
}

/// Reads a protobuf-JSON field under either its snake_case or camelCase name.
fn field<'a>(v: &'a Value, snake: &str, camel: &str) -> Option<(&'a Value, String)> {
    v.get(snake)
        .map(|x| (x, snake.to_string()))
        .or_else(|| v.get(camel).map(|x| (x, camel.to_string())))
}

/// A positive uint32, given as a number or (protobuf JSON) a string.
fn positive_u32(v: &Value, path: &str) -> Result<u32, FieldError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match n.map(u32::try_from) {
        Some(Ok(n)) if n > 0 => Ok(n),
        _ => Err(FieldError::new(path, "must be an integer in 1..4294967295")),
    }
}

fn read_config(
    config: &Value,
    path: &str,
    context: PatchContext,
) -> Result<LocalRateLimit, FieldError> {
    let (bucket, key) = field(config, "token_bucket", "tokenBucket")
        .ok_or_else(|| FieldError::new(path, "token_bucket is required"))?;
    let bp = format!("{path}.{key}");
    let (max, key) = field(bucket, "max_tokens", "maxTokens")
        .ok_or_else(|| FieldError::new(&bp, "max_tokens is required"))?;
    let max_tokens = positive_u32(max, &format!("{bp}.{key}"))?;
    let tokens_per_fill = match field(bucket, "tokens_per_fill", "tokensPerFill") {
        Some((v, key)) => positive_u32(v, &format!("{bp}.{key}"))?,
        None => 1,
    };
    let (interval, key) = field(bucket, "fill_interval", "fillInterval")
        .ok_or_else(|| FieldError::new(&bp, "fill_interval is required"))?;
    let ip = format!("{bp}.{key}");
    let fill_interval = interval
        .as_str()
        .ok_or_else(|| FieldError::new(&ip, "must be a duration string"))
        .and_then(|s| parse_duration(s).map_err(|e| FieldError::new(&ip, e)))?;
    if fill_interval < MIN_FILL_INTERVAL {
        return Err(FieldError::new(ip, "fill_interval must be >= 50ms"));
    }
    let enabled_percent = fraction(config, path, "filter_enabled", "filterEnabled")?;
    let enforced_percent = fraction(config, path, "filter_enforced", "filterEnforced")?;
    let stat_prefix = field(config, "stat_prefix", "statPrefix")
        .and_then(|(v, _)| v.as_str().map(str::to_string));
    // Envoy: `OFF` (the default) or `DRAFT_VERSION_03`.
    let x_ratelimit_headers = match field(
        config,
        "enable_x_ratelimit_headers",
        "enableXRatelimitHeaders",
    ) {
        None => false,
        Some((v, key)) => match v.as_str() {
            Some("OFF") => false,
            Some("DRAFT_VERSION_03") => true,
            _ => {
                return Err(FieldError::new(
                    format!("{path}.{key}"),
                    "must be OFF or DRAFT_VERSION_03",
                ));
            }
        },
    };
    Ok(LocalRateLimit {
        context,
        max_tokens,
        tokens_per_fill,
        fill_interval,
        enabled_percent,
        enforced_percent,
        stat_prefix,
        x_ratelimit_headers,
        stage: LimitStage::default(),
    })
}

/// A `RuntimeFractionalPercent`'s default value as a percentage (0 when absent).
fn fraction(config: &Value, path: &str, snake: &str, camel: &str) -> Result<f64, FieldError> {
    let Some((v, key)) = field(config, snake, camel) else {
        return Ok(0.0);
    };
    let p = format!("{path}.{key}");
    let Some((default, key)) = field(v, "default_value", "defaultValue") else {
        return Ok(0.0);
    };
    let p = format!("{p}.{key}");
    let numerator = match field(default, "numerator", "numerator").map(|(v, _)| v) {
        None => 0,
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            FieldError::new(format!("{p}.numerator"), "must be a non-negative integer")
        })?,
        Some(_) => {
            return Err(FieldError::new(
                format!("{p}.numerator"),
                "must be a non-negative integer",
            ));
        }
    };
    let denominator = match field(default, "denominator", "denominator")
        .and_then(|(v, _)| v.as_str())
    {
        None | Some("HUNDRED") => 100.0,
        Some("TEN_THOUSAND") => 10_000.0,
        Some("MILLION") => 1_000_000.0,
        Some(other) => {
            return Err(FieldError::new(
                format!("{p}.denominator"),
                format!("unknown value `{other}` (expected one of HUNDRED, TEN_THOUSAND, MILLION)"),
            ));
        }
    };
    // Envoy caps the fraction at 100%.
    Ok((numerator as f64 / denominator * 100.0).min(100.0))
}

#[cfg(test)]
mod tests;
