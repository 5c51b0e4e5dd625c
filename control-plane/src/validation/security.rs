//! PeerAuthentication, AuthorizationPolicy and RequestAuthentication rules.

use super::field::{at, check_enum, check_selector, header_name, ip_or_cidr, item, port};
use super::{FieldErrors, Validate};
use crate::crd::authorization_policy::{Operation, Rule, Source};
use crate::crd::request_authentication::JwtRule;
use crate::crd::{
    AuthorizationPolicySpec, PeerAuthenticationSpec, PolicyTargetReference,
    RequestAuthenticationSpec, WorkloadLabelSelector,
};

const MTLS_MODES: &[&str] = &["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];
const ACTIONS: &[&str] = &["ALLOW", "DENY", "AUDIT", "CUSTOM"];
/// Condition keys Istio accepts (bracketed ones take a name: `request.headers[x-id]`).
const CONDITION_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "source.serviceAccount",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];
const CONDITION_PREFIXES: &[&str] = &[
    "request.headers[",
    "request.auth.claims[",
    "experimental.envoy.filters.",
];

impl Validate for PeerAuthenticationSpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        check_selector(errors, &at(spec, "selector"), self.selector.as_ref());
        if let Some(m) = &self.mtls {
            check_enum(errors, at(spec, "mtls.mode"), m.mode.as_deref(), MTLS_MODES);
        }
        if !self.port_level_mtls.is_empty() {
            let has_labels = self
                .selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty());
            if !has_labels {
                errors.push(
                    at(spec, "portLevelMtls"),
                    "portLevelMtls requires a workload selector with labels",
                );
            }
        }
        for (key, m) in &self.port_level_mtls {
            let p = format!("{spec}.portLevelMtls.{}", key.0);
            errors.check(p.clone(), port(key.0));
            check_enum(errors, at(&p, "mode"), m.mode.as_deref(), MTLS_MODES);
        }
    }
}

impl Validate for AuthorizationPolicySpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        check_attachment(
            errors,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
        );
        check_enum(errors, at(spec, "action"), self.action.as_deref(), ACTIONS);
        let action = self.action.as_deref().unwrap_or("ALLOW");
        if action == "CUSTOM" {
            // Sluice has no external authorizers yet; refusing the policy keeps
            // it from silently allowing (or denying) what it should not.
            errors.push(
                at(spec, "action"),
                "CUSTOM is not supported by Sluice (no external authorization providers); use ALLOW, DENY or AUDIT",
            );
            if self.rules.is_empty() {
                errors.push(
                    at(spec, "rules"),
                    "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
                );
            }
            if self.provider.as_ref().is_none_or(|p| p.name.is_empty()) {
                errors.push(
                    at(spec, "provider.name"),
                    "`provider.name` must not be empty",
                );
            }
        } else if self.provider.is_some() {
            errors.push(
                at(spec, "provider"),
                format!("`provider` must not be with non CUSTOM action, found {action}"),
            );
        }
        if action == "DENY" && self.rules.is_empty() {
            errors.push(
                at(spec, "rules"),
                "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request",
            );
        }
        for (i, rule) in self.rules.iter().enumerate() {
            check_rule(errors, &item(spec, "rules", i), rule, action == "CUSTOM");
        }
    }
}

/// A policy attaches by `selector`, `targetRef` or `targetRefs`: one of them at most.
fn check_attachment(
    errors: &mut FieldErrors,
    selector: Option<&WorkloadLabelSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let spec = "spec";
    let attachments = [
        selector.is_some(),
        target_ref.is_some(),
        !target_refs.is_empty(),
    ];
    if attachments.iter().filter(|a| **a).count() > 1 {
        errors.push(
            spec,
            "only one of selector, targetRef or targetRefs can be set",
        );
    }
    check_selector(errors, &at(spec, "selector"), selector);
    if let Some(t) = target_ref {
        check_target_ref(errors, &at(spec, "targetRef"), t);
    }
    for (i, t) in target_refs.iter().enumerate() {
        check_target_ref(errors, &item(spec, "targetRefs", i), t);
    }
}

fn check_target_ref(errors: &mut FieldErrors, path: &str, t: &PolicyTargetReference) {
    if t.name.is_empty() {
        errors.push(at(path, "name"), "targetRef name must be set");
    }
    if t.namespace.as_deref().is_some_and(|ns| !ns.is_empty()) {
        errors.push(
            at(path, "namespace"),
            "targetRef namespace must not be set; cross namespace referencing is not supported",
        );
    }
    let group = t.group.as_deref().unwrap_or("");
    let allowed = matches!(
        (group, t.kind.as_str()),
        ("" | "core", "Service")
            | ("networking.istio.io", "ServiceEntry")
            | ("gateway.networking.k8s.io", "Gateway" | "GatewayClass")
    );
    if !allowed {
        errors.push(path, format!("targetRef must be to a Service, ServiceEntry, Gateway or GatewayClass but was {group}/{}", t.kind));
    }
}

fn check_rule(errors: &mut FieldErrors, path: &str, rule: &Rule, custom: bool) {
    for (i, from) in rule.from.iter().enumerate() {
        let p = item(path, "from", i);
        match &from.source {
            None => errors.push(at(&p, "source"), "`from.source` must not be nil"),
            Some(src) => check_source(errors, &at(&p, "source"), src, custom),
        }
    }
    for (i, to) in rule.to.iter().enumerate() {
        let p = item(path, "to", i);
        match &to.operation {
            None => errors.push(at(&p, "operation"), "`to.operation` must not be nil"),
            Some(op) => check_operation(errors, &at(&p, "operation"), op),
        }
    }
    for (i, c) in rule.when.iter().enumerate() {
        let p = item(path, "when", i);
        if c.key.is_empty() {
            errors.push(at(&p, "key"), "`key` must not be empty");
            continue;
        }
        let known = CONDITION_KEYS.contains(&c.key.as_str())
            || CONDITION_PREFIXES
                .iter()
                .any(|pre| c.key.starts_with(pre) && (!pre.ends_with('[') || c.key.ends_with(']')));
        if !known {
            errors.push(at(&p, "key"), format!("unknown attribute `{}`", c.key));
        } else if c.key.starts_with("experimental.envoy.filters.") {
            // Envoy filter metadata does not exist in Sluice's sidecar; a
            // policy using it could never be enforced as written.
            errors.push(
                at(&p, "key"),
                format!(
                    "`{}` is not supported by Sluice (no Envoy filter metadata)",
                    c.key
                ),
            );
        }
        if custom
            && (matches!(
                c.key.as_str(),
                "source.namespace" | "source.serviceAccount" | "source.principal"
            ) || c.key.starts_with("request.auth."))
        {
            errors.push(
                at(&p, "key"),
                format!("{} is currently not supported with CUSTOM action", c.key),
            );
        }
        if c.values.is_empty() && c.not_values.is_empty() {
            errors.push(
                p.clone(),
                format!(
                    "at least one of `values` or `notValues` must be set for key {}",
                    c.key
                ),
            );
        }
        for (field, values) in [("values", &c.values), ("notValues", &c.not_values)] {
            for (j, v) in values.iter().enumerate() {
                let vp = item(&p, field, j);
                match c.key.as_str() {
                    "source.ip" | "remote.ip" | "destination.ip" => errors.check(vp, ip_or_cidr(v)),
                    "destination.port" => errors.check(vp, port_string(v)),
                    _ => {}
                }
            }
        }
    }
}

fn port_string(v: &str) -> Result<(), String> {
    v.parse::<u32>()
        .map_err(|_| format!("`{v}` is not a port number"))
        .and_then(port)
}

fn non_empty_values(errors: &mut FieldErrors, path: &str, field: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        if v.is_empty() {
            errors.push(item(path, field, i), "empty value is not allowed");
        }
    }
}

/// Istio matches values exactly, by prefix (`abc*`), by suffix (`*abc`) or
/// by presence (`*`); a `*` anywhere else, or white space, would silently be
/// compared literally, so it is refused as malformed.
fn wildcard_values(errors: &mut FieldErrors, path: &str, field: &str, values: &[String]) {
    for (i, v) in values.iter().enumerate() {
        let inner = v.trim_start_matches('*').trim_end_matches('*');
        if v.len() > 1 && (inner.contains('*') || v.starts_with('*') && v.ends_with('*')) {
            errors.push(
                item(path, field, i),
                format!("`{v}`: `*` is allowed only as the whole value, a prefix or a suffix"),
            );
        } else if v.chars().any(char::is_whitespace) {
            errors.push(item(path, field, i), format!("`{v}` contains white space"));
        }
    }
}

fn check_source(errors: &mut FieldErrors, path: &str, s: &Source, custom: bool) {
    let identity = [
        ("principals", &s.principals),
        ("notPrincipals", &s.not_principals),
        ("requestPrincipals", &s.request_principals),
        ("notRequestPrincipals", &s.not_request_principals),
        ("namespaces", &s.namespaces),
        ("notNamespaces", &s.not_namespaces),
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ];
    let ips = [
        ("ipBlocks", &s.ip_blocks),
        ("notIpBlocks", &s.not_ip_blocks),
        ("remoteIpBlocks", &s.remote_ip_blocks),
        ("notRemoteIpBlocks", &s.not_remote_ip_blocks),
    ];
    if identity.iter().chain(ips.iter()).all(|(_, v)| v.is_empty()) {
        errors.push(path, "`from.source` must not be empty");
    }
    let by_name =
        s.principals.len() + s.not_principals.len() + s.namespaces.len() + s.not_namespaces.len();
    if by_name > 0 && s.service_accounts.len() + s.not_service_accounts.len() > 0 {
        errors.push(
            path,
            "cannot set serviceAccounts with namespaces or principals",
        );
    }
    for (field, values) in identity {
        non_empty_values(errors, path, field, values);
        wildcard_values(errors, path, field, values);
        if custom && !values.is_empty() {
            errors.push(
                at(path, field),
                format!("{field} is currently not supported with CUSTOM action"),
            );
        }
    }
    for (field, values) in [
        ("serviceAccounts", &s.service_accounts),
        ("notServiceAccounts", &s.not_service_accounts),
    ] {
        for (i, sa) in values.iter().enumerate() {
            if !sa.is_empty() && sa.split('/').count() != 2 {
                errors.push(
                    item(path, field, i),
                    format!("service account `{sa}` must be <namespace>/<name>"),
                );
            }
        }
    }
    for (field, values) in ips {
        for (i, v) in values.iter().enumerate() {
            errors.check(item(path, field, i), ip_or_cidr(v));
        }
    }
}

fn check_operation(errors: &mut FieldErrors, path: &str, op: &Operation) {
    let fields = [
        ("hosts", &op.hosts),
        ("notHosts", &op.not_hosts),
        ("ports", &op.ports),
        ("notPorts", &op.not_ports),
        ("methods", &op.methods),
        ("notMethods", &op.not_methods),
        ("paths", &op.paths),
        ("notPaths", &op.not_paths),
    ];
    if fields.iter().all(|(_, v)| v.is_empty()) {
        errors.push(path, "`to.operation` must not be empty");
    }
    for (field, values) in fields {
        non_empty_values(errors, path, field, values);
        if !matches!(field, "paths" | "notPaths") {
            wildcard_values(errors, path, field, values);
        }
    }
    for (field, values) in [("ports", &op.ports), ("notPorts", &op.not_ports)] {
        for (i, v) in values.iter().enumerate() {
            if !v.is_empty() {
                errors.check(item(path, field, i), port_string(v));
            }
        }
    }
}

#[cfg(test)]
mod tests;

impl Validate for RequestAuthenticationSpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        check_attachment(
            errors,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
        );
        for (i, rule) in self.jwt_rules.iter().enumerate() {
            check_jwt_rule(errors, &item(spec, "jwtRules", i), rule);
        }
    }
}

fn check_jwt_rule(errors: &mut FieldErrors, path: &str, r: &JwtRule) {
    for (i, a) in r.audiences.iter().enumerate() {
        if a.is_empty() {
            errors.push(
                item(path, "audiences", i),
                "audience must be non-empty string",
            );
        }
    }
    let uri = r.jwks_uri.as_deref().unwrap_or("");
    if r.issuer.is_empty() && uri.is_empty() {
        errors.push(
            at(path, "issuer"),
            "issuer or jwksUri must be non-empty string",
        );
    }
    if !uri.is_empty() {
        errors.check(at(path, "jwksUri"), jwks_uri(uri));
    }
    if let Some(jwks) = &r.jwks {
        errors.check(at(path, "jwks"), jwks_document(jwks));
    }
    for (i, h) in r.from_headers.iter().enumerate() {
        let p = item(path, "fromHeaders", i);
        if h.name.is_empty() {
            errors.push(
                at(&p, "name"),
                "location header name must be non-empty string",
            );
        } else {
            errors.check(at(&p, "name"), header_name(&h.name));
        }
    }
    for (i, q) in r.from_params.iter().enumerate() {
        if q.is_empty() {
            errors.push(
                item(path, "fromParams", i),
                "location query must be non-empty string",
            );
        }
    }
    for (i, c) in r.from_cookies.iter().enumerate() {
        if c.is_empty() {
            errors.push(
                item(path, "fromCookies", i),
                "cookie name must be non-empty string",
            );
        }
    }
    if let Some(h) = r
        .output_payload_to_header
        .as_deref()
        .filter(|h| !h.is_empty())
    {
        errors.check(at(path, "outputPayloadToHeader"), header_name(h));
    }
    for (i, c) in r.output_claim_to_headers.iter().enumerate() {
        let p = item(path, "outputClaimToHeaders", i);
        if c.header.is_empty() || c.claim.is_empty() {
            errors.push(
                &p,
                "outputClaimToHeaders header and claim value must be non-empty string",
            );
            continue;
        }
        let plain = c
            .header
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            errors.push(
                at(&p, "header"),
                format!("header name {} is not a valid header name", c.header),
            );
        }
    }
    for (i, c) in r.space_delimited_claims.iter().enumerate() {
        if c.is_empty() {
            errors.push(
                item(path, "spaceDelimitedClaims", i),
                "claim name must be non-empty string",
            );
        }
    }
    if let Some(t) = &r.timeout {
        match crate::validation::parse_duration(t) {
            Ok(d) if d <= std::time::Duration::from_millis(1) => {
                errors.push(at(path, "timeout"), "duration must be greater than 1ms");
            }
            Ok(_) => {}
            Err(e) => errors.push(at(path, "timeout"), e),
        }
    }
}

/// An `http` or `https` URL with a host.
pub(crate) fn jwks_uri(uri: &str) -> Result<(), String> {
    let parsed: http::Uri = uri
        .parse()
        .map_err(|e| format!("`{uri}` is not a valid URI: {e}"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => return Err(format!("URI scheme {other:?} is not supported")),
        None => return Err(format!("`{uri}` must be an absolute http or https URI")),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(format!("`{uri}` has no host"));
    }
    Ok(())
}

/// A JSON Web Key Set (an object with a `keys` list); fetched documents are
/// held to no more than that, since sidecars skip keys they cannot use.
pub(crate) fn jwks_set(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("jwks parse error: {e}"))?;
    match value.get("keys") {
        Some(serde_json::Value::Array(keys)) => Ok(keys.clone()),
        _ => Err("jwks parse error: expected an object with a `keys` list".into()),
    }
}

/// An inline key set: every key usable, as the sidecars read it (type,
/// curve, coordinate sizes, base64url members, string `kid`/`alg`/`use`).
pub(crate) fn jwks_document(text: &str) -> Result<(), String> {
    use base64::Engine;
    use serde_json::Value;
    let keys = jwks_set(text)?;
    let b64 = |key: &Value, m: &str| -> Option<Vec<u8>> {
        let v = key.get(m)?.as_str()?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .ok()
            .filter(|b| !b.is_empty())
    };
    for (i, key) in keys.iter().enumerate() {
        let bad = |why: String| format!("jwks parse error: keys[{i}]{why}");
        for m in ["kid", "alg", "use", "kty", "crv"] {
            if key.get(m).is_some_and(|v| !v.is_string()) {
                return Err(bad(format!(".{m} must be a string")));
            }
        }
        let member = |m: &str, len: Option<usize>| -> Result<(), String> {
            match b64(key, m) {
                Some(b) if len.is_none_or(|l| b.len() == l) => Ok(()),
                Some(b) => Err(bad(format!(
                    ".{m} must be {} bytes, not {}",
                    len.unwrap_or(0),
                    b.len()
                ))),
                None => Err(bad(format!(".{m} must be a non-empty base64url string"))),
            }
        };
        let crv = key.get("crv").and_then(Value::as_str);
        match key.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                member("n", None)?;
                member("e", None)?;
            }
            Some("EC") => {
                let size = match crv {
                    Some("P-256") => 32,
                    Some("P-384") => 48,
                    Some("P-521") => 66,
                    other => {
                        return Err(bad(format!(".crv {other:?} is not P-256, P-384 or P-521")));
                    }
                };
                member("x", Some(size))?;
                member("y", Some(size))?;
            }
            Some("OKP") => member("x", (crv == Some("Ed25519")).then_some(32))?,
            Some("oct") => member("k", None)?,
            Some(_) => {}
            None => return Err(bad(" has no `kty`".into())),
        }
    }
    Ok(())
}
