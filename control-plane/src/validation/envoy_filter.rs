//! EnvoyFilter support: the only patches Sluice understands are the
//! insertion of `envoy.filters.http.local_ratelimit` and the MERGE of its
//! per-route config into inbound routes (`HTTP_ROUTE`, `VIRTUAL_HOST`),
//! each read into a [`LocalRateLimit`]; what they ask that Sluice does not
//! apply is warned about by field ([`patch_warnings`]).
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

/// A token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Bucket {
    /// Bucket capacity.
    pub max_tokens: u32,
    /// Tokens added each `fill_interval` (Envoy's default: 1).
    pub tokens_per_fill: u32,
    /// Refill period (>= 50ms, as Envoy requires).
    pub fill_interval: Duration,
}

/// What adding a header does when the message has it already (Envoy's
/// `HeaderValueOption.append_action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum HeaderAppend {
    /// `APPEND_IF_EXISTS_OR_ADD` (the default; `append: true`).
    #[default]
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (`append: false`).
    OverwriteIfExistsOrAdd,
    /// `OVERWRITE_IF_EXISTS`.
    OverwriteIfExists,
}

/// A header a limit adds (Envoy's `HeaderValueOption`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeaderToAdd {
    /// Lowercase header name.
    pub name: String,
    pub value: String,
    pub append: HeaderAppend,
}

/// Which Envoy object of a sidecar's inbound a patch puts its config on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LimitTarget {
    /// The `local_ratelimit` HTTP filter, inserted into the HTTP filter
    /// chains; `port` (`listener.portNumber` or
    /// `listener.filterChain.destinationPort`) restricts it to the inbound
    /// chain of that application (target) port, as istiod compares both
    /// with the chain's destination port.
    Filter { port: Option<u32> },
    /// A per-route config (`typed_per_filter_config` merged into the
    /// inbound route, or its virtual host): it replaces the filter-level
    /// config for requests on that route, and only where the filter is
    /// inserted. `port` (`routeConfiguration.portNumber`, or the port of a
    /// `routeConfiguration.name` `inbound|<port>||`) is the application
    /// (target) port; `service_port` comes from a virtual host name
    /// `inbound|http|<port>`, which istiod gives the inbound route of that
    /// service port.
    Route {
        virtual_host: bool,
        port: Option<u32>,
        service_port: Option<u32>,
    },
    /// The match names nothing in a sidecar's inbound (another virtual
    /// host or route, conflicting ports): istiod patches nothing.
    Nowhere,
}

/// A local (per proxy) rate limit read from an EnvoyFilter patch.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LocalRateLimit {
    /// Direction the limit applies to.
    pub context: PatchContext,
    /// Where the config goes.
    pub target: LimitTarget,
    /// The bucket; a filter-level config may have none (it then limits
    /// nothing by itself, only per-route configs do).
    pub bucket: Option<Bucket>,
    /// Share of requests (0..=100) the filter checks; Envoy's default when
    /// `filter_enabled` is absent is 0, i.e. the filter does nothing.
    pub enabled_percent: f64,
    /// Share of checked requests (0..=100) actually refused;
    /// Envoy's default when `filter_enforced` is absent is 0 (count only).
    pub enforced_percent: f64,
    /// `stat_prefix` of the filter, when given.
    pub stat_prefix: Option<String>,
    /// `enable_x_ratelimit_headers: DRAFT_VERSION_03`: answers carry the
    /// `x-ratelimit-*` headers (Envoy sends none by default).
    pub x_ratelimit_headers: bool,
    /// Which inbound checks run before it (for a per-route config, the
    /// filter that applies it decides).
    pub stage: LimitStage,
    /// Status of refusals: `status.code`, 429 when absent or below 400.
    pub status: u16,
    /// `response_headers_to_add`: added to refusals.
    pub response_headers: Vec<HeaderToAdd>,
    /// `request_headers_to_add_when_not_enforced`: added to requests the
    /// bucket would refuse but enforcement lets through.
    pub request_headers_when_not_enforced: Vec<HeaderToAdd>,
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
            if let Err(e) = read_patch(&item(spec, "configPatches", i), patch, &mut Vec::new()) {
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
        .filter_map(|(i, patch)| {
            read_patch(&item("spec", "configPatches", i), patch, &mut Vec::new()).transpose()
        })
        .collect()
}

/// What a valid `patch` (at `path`) asks that Sluice does not do: fields
/// and directions not applied. Nothing for a patch validation refuses.
pub fn patch_warnings(path: &str, patch: &EnvoyConfigObjectPatch) -> Vec<FieldError> {
    let mut warnings = Vec::new();
    match read_patch(path, patch, &mut warnings) {
        Ok(_) => warnings,
        Err(_) => Vec::new(),
    }
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

/// The patch's rate limit; `None` for an inert patch. What it asks that
/// Sluice does not apply goes to `warnings`.
fn read_patch(
    path: &str,
    patch: &EnvoyConfigObjectPatch,
    warnings: &mut Vec<FieldError>,
) -> Result<Option<LocalRateLimit>, FieldError> {
    check_structure(path, patch)?;
    if inert_patch(patch).is_some() {
        return Ok(None);
    }
    let apply_to = patch.apply_to.as_deref().unwrap_or("INVALID");
    let m = patch.match_.clone().unwrap_or_default();
    let context = match m.context.as_deref().unwrap_or("ANY") {
        "SIDECAR_INBOUND" => PatchContext::Inbound,
        "SIDECAR_OUTBOUND" => PatchContext::Outbound,
        "ANY" => PatchContext::Any,
        other => return Err(unsupported(path, format!("match.context {other}"))),
    };
    let limit = match apply_to {
        "HTTP_FILTER" => read_filter_patch(path, patch, context, warnings)?,
        "HTTP_ROUTE" | "VIRTUAL_HOST" => read_route_patch(path, patch, context, warnings)?,
        _ => {
            return Err(unsupported(
                path,
                format!(
                    "applyTo {apply_to} (only HTTP_FILTER, and HTTP_ROUTE or VIRTUAL_HOST merging a local_ratelimit typed_per_filter_config, are supported)"
                ),
            ));
        }
    };
    let context_path = format!("{path}.match.context");
    match context {
        PatchContext::Outbound => warnings.push(FieldError::new(
            context_path,
            "not applied: Sluice enforces local rate limits only on the inbound of a sidecar; the requests the workload sends are not limited",
        )),
        PatchContext::Any => warnings.push(FieldError::new(
            context_path,
            "applied to the inbound only: Sluice does not limit the requests the workload sends (SIDECAR_OUTBOUND)",
        )),
        PatchContext::Inbound => {}
    }
    Ok(Some(limit))
}

/// An insertion of the `local_ratelimit` HTTP filter.
fn read_filter_patch(
    path: &str,
    patch: &EnvoyConfigObjectPatch,
    context: PatchContext,
    warnings: &mut Vec<FieldError>,
) -> Result<LocalRateLimit, FieldError> {
    let m = patch.match_.clone().unwrap_or_default();
    if m.route_configuration.is_some() || m.cluster.is_some() {
        return Err(unsupported(path, "only listener matches are supported"));
    }
    let chain = m.listener.as_ref().and_then(|l| l.filter_chain.as_ref());
    if let Some(name) = chain
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
    let (key, typed) = ["typed_config", "typedConfig"]
        .iter()
        .find_map(|k| value.get(*k).map(|v| (*k, v)))
        .ok_or_else(|| FieldError::new(&value_path, "typed_config is required"))?;
    let (config, config_path) = unpack(typed, &format!("{value_path}.{key}"))?;
    let sub_filter = chain
        .and_then(|c| c.filter.as_ref())
        .and_then(|f| f.sub_filter.as_ref())
        .and_then(|f| f.name.as_deref());
    // istiod compares both with the destination port of each inbound chain.
    let listener_port = m.listener.as_ref().and_then(|l| l.port_number);
    let chain_port = chain.and_then(|c| c.destination_port);
    let target = match (
        listener_port.filter(|p| *p > 0),
        chain_port.filter(|p| *p > 0),
    ) {
        (Some(a), Some(b)) if a != b => LimitTarget::Nowhere,
        (a, b) => LimitTarget::Filter { port: a.or(b) },
    };
    let mut limit = read_config(config, &config_path, context, false, warnings)?;
    limit.stage = LimitStage::of(operation, sub_filter);
    limit.target = target;
    Ok(limit)
}

/// A MERGE of a per-route `local_ratelimit` config into the inbound route
/// (`HTTP_ROUTE`) or its virtual host (`VIRTUAL_HOST`).
fn read_route_patch(
    path: &str,
    patch: &EnvoyConfigObjectPatch,
    context: PatchContext,
    warnings: &mut Vec<FieldError>,
) -> Result<LocalRateLimit, FieldError> {
    let apply_to = patch.apply_to.as_deref().unwrap_or("INVALID");
    let virtual_host = apply_to == "VIRTUAL_HOST";
    let Some(p) = &patch.patch else {
        return Err(unsupported(path, "patch is missing"));
    };
    let operation = p.operation.as_deref().unwrap_or("INVALID");
    if operation != "MERGE" {
        return Err(unsupported(
            path,
            format!(
                "operation {operation} on {apply_to} (only MERGE of a {FILTER_NAME} typed_per_filter_config is supported)"
            ),
        ));
    }
    let value_path = format!("{path}.patch.value");
    let Some(value) = p.value.as_ref().and_then(Value::as_object) else {
        return Err(FieldError::new(value_path, "must be an object"));
    };
    let mut config = None;
    for (key, v) in value {
        let field_path = format!("{value_path}.{key}");
        match snake(key).as_str() {
            "typed_per_filter_config" => config = Some((v, field_path)),
            // The descriptors a route produces for the rate limit filters.
            "rate_limits" if virtual_host => warnings.push(no_descriptors(field_path)),
            "route" if !virtual_host => {
                let Some(route) = v.as_object() else {
                    return Err(FieldError::new(field_path, "must be an object"));
                };
                for (key, _) in route {
                    let inner = format!("{field_path}.{key}");
                    if snake(key) == "rate_limits" {
                        warnings.push(no_descriptors(inner));
                    } else {
                        return Err(unsupported(
                            &inner,
                            format!(
                                "merging {key} into a route (only {FILTER_NAME} per-route configs are applied)"
                            ),
                        ));
                    }
                }
            }
            _ => {
                return Err(unsupported(
                    &field_path,
                    format!(
                        "merging {key} into a {} (only typed_per_filter_config for {FILTER_NAME} is supported)",
                        if virtual_host {
                            "virtual host"
                        } else {
                            "route"
                        }
                    ),
                ));
            }
        }
    }
    let Some((per_filter, per_filter_path)) = config else {
        return Err(FieldError::new(
            value_path,
            format!("typed_per_filter_config with a {FILTER_NAME} config is required"),
        ));
    };
    let Some(per_filter) = per_filter.as_object() else {
        return Err(FieldError::new(per_filter_path, "must be an object"));
    };
    let mut found = None;
    for (name, typed) in per_filter {
        if name != FILTER_NAME {
            return Err(unsupported(
                &format!("{per_filter_path}.{name}"),
                format!("per-route config of `{name}` (only {FILTER_NAME} is supported)"),
            ));
        }
        found = Some(typed);
    }
    let Some(typed) = found else {
        return Err(required(
            per_filter_path,
            &format!("a {FILTER_NAME} config"),
        ));
    };
    let (config, config_path) = unpack(typed, &format!("{per_filter_path}.{FILTER_NAME}"))?;
    let mut limit = read_config(config, &config_path, context, true, warnings)?;
    limit.target = route_target(patch, virtual_host);
    Ok(limit)
}

fn no_descriptors(path: String) -> FieldError {
    FieldError::new(
        path,
        "not applied: Sluice has no rate limit descriptors (rate_limits actions); only the token_bucket of the local_ratelimit config limits",
    )
}

/// What istiod's route configuration match picks among a sidecar's inbound
/// routes: one route configuration `inbound|<target port>||` per HTTP
/// port, holding one virtual host `inbound|http|<service port>` whose one
/// route is named `default` and forwards (action ROUTE).
fn route_target(patch: &EnvoyConfigObjectPatch, virtual_host: bool) -> LimitTarget {
    let Some(rc) = patch
        .match_
        .as_ref()
        .and_then(|m| m.route_configuration.as_ref())
    else {
        return LimitTarget::Route {
            virtual_host,
            port: None,
            service_port: None,
        };
    };
    let mut port = rc.port_number.filter(|p| *p > 0);
    if let Some(name) = rc.name.as_deref().filter(|n| !n.is_empty()) {
        let named = name
            .strip_prefix("inbound|")
            .and_then(|rest| rest.split('|').next())
            .and_then(|p| p.parse::<u32>().ok());
        match (named, port) {
            (None, _) => return LimitTarget::Nowhere,
            (Some(a), Some(b)) if a != b => return LimitTarget::Nowhere,
            (Some(a), _) => port = Some(a),
        }
    }
    let vhost = rc.vhost.as_ref();
    let service_port = match vhost
        .and_then(|v| v.name.as_deref())
        .filter(|n| !n.is_empty())
    {
        None => None,
        Some(name) => match name
            .strip_prefix("inbound|http|")
            .and_then(|p| p.parse::<u32>().ok())
        {
            Some(p) => Some(p),
            None => return LimitTarget::Nowhere,
        },
    };
    if !virtual_host && let Some(route) = vhost.and_then(|v| v.route.as_ref()) {
        if route
            .name
            .as_deref()
            .is_some_and(|n| !n.is_empty() && n != "default")
        {
            return LimitTarget::Nowhere;
        }
        if matches!(
            route.action.as_deref(),
            Some("REDIRECT" | "DIRECT_RESPONSE")
        ) {
            return LimitTarget::Nowhere;
        }
    }
    LimitTarget::Route {
        virtual_host,
        port,
        service_port,
    }
}

/// The LocalRateLimit config of an `Any` (at `path`), directly typed or
/// inside a TypedStruct.
fn unpack<'a>(typed: &'a Value, path: &str) -> Result<(&'a Value, String), FieldError> {
    let type_url = typed.get("@type").and_then(Value::as_str).unwrap_or("");
    if type_url == CONFIG_TYPE {
        return Ok((typed, path.to_owned()));
    }
    if TYPED_STRUCTS.contains(&type_url) {
        let inner = typed
            .get("type_url")
            .or_else(|| typed.get("typeUrl"))
            .and_then(Value::as_str);
        if inner == Some(CONFIG_TYPE) {
            let value = typed
                .get("value")
                .ok_or_else(|| FieldError::new(path, "TypedStruct value is required"))?;
            return Ok((value, format!("{path}.value")));
        }
    }
    Err(FieldError::new(
        format!("{path}.@type"),
        format!("unsupported EnvoyFilter patch: type `{type_url}` (expected {CONFIG_TYPE})"),
    ))
}

/// A protobuf JSON name in snake_case (`fillInterval` -> `fill_interval`).
fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
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

/// LocalRateLimit fields Sluice reads.
const APPLIED_FIELDS: &[&str] = &[
    "stat_prefix",
    "status",
    "token_bucket",
    "filter_enabled",
    "filter_enforced",
    "request_headers_to_add_when_not_enforced",
    "response_headers_to_add",
    "enable_x_ratelimit_headers",
];

/// LocalRateLimit fields Sluice accepts without applying them, and why.
const NOT_APPLIED_FIELDS: &[(&str, &str)] = &[
    (
        "descriptors",
        "descriptors not applied: Sluice has no rate limit descriptors; only the token_bucket limits",
    ),
    (
        "rate_limits",
        "not applied: Sluice has no rate limit descriptors; only the token_bucket limits",
    ),
    (
        "vh_rate_limits",
        "not applied: Sluice has no rate limit descriptors; only the token_bucket limits",
    ),
    (
        "always_consume_default_token_bucket",
        "not applied: Sluice has no rate limit descriptors; every checked request takes a token from the token_bucket",
    ),
    (
        "max_dynamic_descriptors",
        "not applied: Sluice has no rate limit descriptors",
    ),
    (
        "stage",
        "not applied: Sluice has no rate limit descriptors, which this stage selects",
    ),
    (
        "local_rate_limit_per_downstream_connection",
        "not applied: the bucket is shared by every connection of the sidecar",
    ),
    (
        "local_cluster_rate_limit",
        "not applied: the bucket is not shared with other instances of the workload",
    ),
    (
        "rate_limited_as_resource_exhausted",
        "not applied: a refused gRPC request answers with the HTTP status (gRPC status UNAVAILABLE), not RESOURCE_EXHAUSTED",
    ),
];

fn read_config(
    config: &Value,
    path: &str,
    context: PatchContext,
    per_route: bool,
    warnings: &mut Vec<FieldError>,
) -> Result<LocalRateLimit, FieldError> {
    let Some(object) = config.as_object() else {
        return Err(FieldError::new(path, "must be an object"));
    };
    for key in object.keys().filter(|k| *k != "@type") {
        let name = snake(key);
        if APPLIED_FIELDS.contains(&name.as_str()) {
            continue;
        }
        match NOT_APPLIED_FIELDS.iter().find(|(n, _)| *n == name) {
            Some((_, why)) => warnings.push(FieldError::new(format!("{path}.{key}"), *why)),
            None => {
                return Err(FieldError::new(
                    format!("{path}.{key}"),
                    "unknown field of the LocalRateLimit config",
                ));
            }
        }
    }
    let bucket = match field(config, "token_bucket", "tokenBucket") {
        Some((bucket, key)) => Some(read_bucket(bucket, &format!("{path}.{key}"))?),
        // Envoy requires a bucket in a per-route config only.
        None if per_route => {
            return Err(FieldError::new(
                path,
                "token_bucket is required in a per-route config",
            ));
        }
        None => None,
    };
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
    let status = match field(config, "status", "status") {
        None => 429,
        Some((v, key)) => status_code(v, &format!("{path}.{key}"))?,
    };
    let response_headers = match field(config, "response_headers_to_add", "responseHeadersToAdd") {
        None => Vec::new(),
        Some((v, key)) => headers_to_add(v, &format!("{path}.{key}"))?,
    };
    let request_headers_when_not_enforced = match field(
        config,
        "request_headers_to_add_when_not_enforced",
        "requestHeadersToAddWhenNotEnforced",
    ) {
        None => Vec::new(),
        Some((v, key)) => headers_to_add(v, &format!("{path}.{key}"))?,
    };
    Ok(LocalRateLimit {
        context,
        target: LimitTarget::Filter { port: None },
        bucket,
        enabled_percent,
        enforced_percent,
        stat_prefix,
        x_ratelimit_headers,
        stage: LimitStage::default(),
        status,
        response_headers,
        request_headers_when_not_enforced,
    })
}

fn read_bucket(bucket: &Value, bp: &str) -> Result<Bucket, FieldError> {
    let (max, key) = field(bucket, "max_tokens", "maxTokens")
        .ok_or_else(|| FieldError::new(bp, "max_tokens is required"))?;
    let max_tokens = positive_u32(max, &format!("{bp}.{key}"))?;
    let tokens_per_fill = match field(bucket, "tokens_per_fill", "tokensPerFill") {
        Some((v, key)) => positive_u32(v, &format!("{bp}.{key}"))?,
        None => 1,
    };
    let (interval, key) = field(bucket, "fill_interval", "fillInterval")
        .ok_or_else(|| FieldError::new(bp, "fill_interval is required"))?;
    let ip = format!("{bp}.{key}");
    let fill_interval = interval
        .as_str()
        .ok_or_else(|| FieldError::new(&ip, "must be a duration string"))
        .and_then(|s| parse_duration(s).map_err(|e| FieldError::new(&ip, e)))?;
    if fill_interval < MIN_FILL_INTERVAL {
        return Err(FieldError::new(ip, "fill_interval must be >= 50ms"));
    }
    Ok(Bucket {
        max_tokens,
        tokens_per_fill,
        fill_interval,
    })
}

/// Envoy's `type.v3.StatusCode` values by name (`Empty`, 0, is refused).
const STATUS_CODES: &[(&str, u16)] = &[
    ("Continue", 100),
    ("OK", 200),
    ("Created", 201),
    ("Accepted", 202),
    ("NonAuthoritativeInformation", 203),
    ("NoContent", 204),
    ("ResetContent", 205),
    ("PartialContent", 206),
    ("MultiStatus", 207),
    ("AlreadyReported", 208),
    ("IMUsed", 226),
    ("MultipleChoices", 300),
    ("MovedPermanently", 301),
    ("Found", 302),
    ("SeeOther", 303),
    ("NotModified", 304),
    ("UseProxy", 305),
    ("TemporaryRedirect", 307),
    ("PermanentRedirect", 308),
    ("BadRequest", 400),
    ("Unauthorized", 401),
    ("PaymentRequired", 402),
    ("Forbidden", 403),
    ("NotFound", 404),
    ("MethodNotAllowed", 405),
    ("NotAcceptable", 406),
    ("ProxyAuthenticationRequired", 407),
    ("RequestTimeout", 408),
    ("Conflict", 409),
    ("Gone", 410),
    ("LengthRequired", 411),
    ("PreconditionFailed", 412),
    ("PayloadTooLarge", 413),
    ("URITooLong", 414),
    ("UnsupportedMediaType", 415),
    ("RangeNotSatisfiable", 416),
    ("ExpectationFailed", 417),
    ("MisdirectedRequest", 421),
    ("UnprocessableEntity", 422),
    ("Locked", 423),
    ("FailedDependency", 424),
    ("UpgradeRequired", 426),
    ("PreconditionRequired", 428),
    ("TooManyRequests", 429),
    ("RequestHeaderFieldsTooLarge", 431),
    ("InternalServerError", 500),
    ("NotImplemented", 501),
    ("BadGateway", 502),
    ("ServiceUnavailable", 503),
    ("GatewayTimeout", 504),
    ("HTTPVersionNotSupported", 505),
    ("VariantAlsoNegotiates", 506),
    ("InsufficientStorage", 507),
    ("LoopDetected", 508),
    ("NotExtended", 510),
    ("NetworkAuthenticationRequired", 511),
];

/// `status: {code: <StatusCode>}`: the status of refusals; Envoy answers
/// 429 for a code below 400.
fn status_code(v: &Value, path: &str) -> Result<u16, FieldError> {
    let Some((code, key)) = field(v, "code", "code") else {
        return Err(required(
            format!("{path}.code"),
            "the HTTP status of refusals",
        ));
    };
    let cp = format!("{path}.{key}");
    let code = match code {
        Value::String(name) => STATUS_CODES
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .or_else(|| name.parse::<u16>().ok().filter(|c| known_status(*c))),
        Value::Number(n) => n
            .as_u64()
            .and_then(|c| u16::try_from(c).ok())
            .filter(|c| known_status(*c)),
        _ => None,
    };
    let Some(code) = code else {
        return Err(FieldError::new(
            cp,
            "must be a name of Envoy's type.v3.StatusCode (such as TooManyRequests or ServiceUnavailable) or its number",
        ));
    };
    Ok(if code < 400 { 429 } else { code })
}

fn known_status(code: u16) -> bool {
    STATUS_CODES.iter().any(|(_, c)| *c == code)
}

/// A list of Envoy `HeaderValueOption`s.
fn headers_to_add(v: &Value, path: &str) -> Result<Vec<HeaderToAdd>, FieldError> {
    let Some(list) = v.as_array() else {
        return Err(FieldError::new(path, "must be a list"));
    };
    let mut out = Vec::new();
    for (i, option) in list.iter().enumerate() {
        let op = format!("{path}[{i}]");
        let Some((header, key)) = field(option, "header", "header") else {
            return Err(required(format!("{op}.header"), "the header to add"));
        };
        let hp = format!("{op}.{key}");
        let name = field(header, "key", "key")
            .and_then(|(k, _)| k.as_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(required(format!("{hp}.key"), "the header name"));
        }
        if name.starts_with(':')
            || name == "host"
            || http::HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err(FieldError::new(
                format!("{hp}.key"),
                format!("`{name}` is not a header that can be added"),
            ));
        }
        let value = match field(header, "value", "value").map(|(v, _)| v) {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(FieldError::new(format!("{hp}.value"), "must be a string"));
            }
        };
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(FieldError::new(
                format!("{hp}.value"),
                "is not a valid header value",
            ));
        }
        let action = match field(option, "append_action", "appendAction") {
            None => None,
            Some((a, key)) => Some(match a.as_str() {
                Some("APPEND_IF_EXISTS_OR_ADD") => HeaderAppend::AppendIfExistsOrAdd,
                Some("ADD_IF_ABSENT") => HeaderAppend::AddIfAbsent,
                Some("OVERWRITE_IF_EXISTS_OR_ADD") => HeaderAppend::OverwriteIfExistsOrAdd,
                Some("OVERWRITE_IF_EXISTS") => HeaderAppend::OverwriteIfExists,
                _ => {
                    return Err(FieldError::new(
                        format!("{op}.{key}"),
                        "must be one of APPEND_IF_EXISTS_OR_ADD, ADD_IF_ABSENT, OVERWRITE_IF_EXISTS_OR_ADD, OVERWRITE_IF_EXISTS",
                    ));
                }
            }),
        };
        let append = match field(option, "append", "append") {
            None => None,
            Some((Value::Bool(b), _)) => Some(*b),
            Some((_, key)) => {
                return Err(FieldError::new(
                    format!("{op}.{key}"),
                    "must be true or false",
                ));
            }
        };
        let append = match (append, action) {
            // Envoy refuses the deprecated `append` next to another action.
            (Some(_), Some(a)) if a != HeaderAppend::AppendIfExistsOrAdd => {
                return Err(FieldError::new(
                    format!("{op}.append"),
                    "set only one of append (deprecated) and append_action",
                ));
            }
            (Some(true), _) => HeaderAppend::AppendIfExistsOrAdd,
            (Some(false), _) => HeaderAppend::OverwriteIfExistsOrAdd,
            (None, a) => a.unwrap_or_default(),
        };
        let keep_empty = matches!(
            field(option, "keep_empty_value", "keepEmptyValue"),
            Some((Value::Bool(true), _))
        );
        // Envoy adds an empty value only when asked to keep it.
        if value.is_empty() && !keep_empty {
            continue;
        }
        out.push(HeaderToAdd {
            name,
            value,
            append,
        });
    }
    Ok(out)
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
