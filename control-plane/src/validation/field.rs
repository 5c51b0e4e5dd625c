//! Checks of single values shared by every kind: host names, labels, ports,
//! header names, string matches, percentages, durations and enum values.

use super::FieldErrors;
use super::duration::check_duration;
use crate::crd::{Percent, StringMatch, WorkloadLabelSelector};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// `prefix.field`.
pub(crate) fn at(path: &str, field: &str) -> String {
    format!("{path}.{field}")
}

/// `prefix.field[index]`.
pub(crate) fn item(path: &str, field: &str, index: usize) -> String {
    format!("{path}.{field}[{index}]")
}

/// Istio's DNS-1123 label (letters of either case, digits, inner dashes; max 63).
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn dns_preconditions(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("empty domain name not allowed".into());
    }
    if domain.len() > 255 {
        return Err(format!("domain name `{domain}` too long (max 255)"));
    }
    Ok(())
}

fn dns1123_labels(domain: &str, whole: &str) -> Result<(), String> {
    let labels: Vec<&str> = domain.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        // A trailing dot (fully qualified form) leaves an empty last label.
        if i + 1 == labels.len() && label.is_empty() && i > 0 {
            continue;
        }
        if !is_dns1123_label(label) {
            return Err(format!(
                "domain name `{whole}` invalid (label `{label}` invalid)"
            ));
        }
    }
    Ok(())
}

/// A fully qualified (or short) domain name without wildcards.
pub(crate) fn fqdn(domain: &str) -> Result<(), String> {
    dns_preconditions(domain)?;
    dns1123_labels(domain, domain)
}

/// A domain whose first label may be `*`, or a DNS label after a leading
/// `*` or `*-` (`*foo`, `*-foo`), as Istio's `ValidateWildcardDomain` takes
/// it. A host with a leading `*` matches by the suffix after the `*`.
pub(crate) fn wildcard_domain(domain: &str) -> Result<(), String> {
    dns_preconditions(domain)?;
    let (first, rest) = match domain.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (domain, None),
    };
    let first_ok = first.len() <= 63
        && (first == "*"
            || is_dns1123_label(first)
            || first.strip_prefix('*').is_some_and(|l| {
                is_dns1123_label(l) || l.strip_prefix('-').is_some_and(is_dns1123_label)
            }));
    if !first_ok {
        return Err(format!(
            "domain name `{domain}` invalid (label `{first}` invalid)"
        ));
    }
    match rest {
        Some(rest) => dns1123_labels(rest, domain),
        None => Ok(()),
    }
}

/// Port numbers are 1..65535.
pub(crate) fn port(number: u32) -> Result<(), String> {
    if (1..=65535).contains(&number) {
        Ok(())
    } else {
        Err(format!(
            "port number {number} must be in the range 1..65535"
        ))
    }
}

/// An IP address or CIDR block.
pub(crate) fn ip_or_cidr(value: &str) -> Result<(), String> {
    let (ip, prefix) = match value.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (value, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{value}` is not a valid IP address or CIDR block"))?;
    if let Some(prefix) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        // Digits only, as Go's net.ParseCIDR (Rust's parse would take `+8`).
        let digits = !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit());
        match prefix.parse::<u8>() {
            Ok(p) if digits && p <= max => {}
            _ => return Err(format!("`{value}` has an invalid prefix length")),
        }
    }
    Ok(())
}

/// Whether `value` is a literal IP address.
pub(crate) fn is_ip(value: &str) -> bool {
    value.parse::<IpAddr>().is_ok()
}

/// `value` is one of `allowed`.
pub(crate) fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "unknown value `{value}` (expected one of {})",
            allowed.join(", ")
        ))
    }
}

/// Checks an optional enum field.
pub(crate) fn check_enum(
    errors: &mut FieldErrors,
    path: String,
    value: Option<&str>,
    allowed: &[&str],
) {
    if let Some(value) = value {
        errors.check(path, one_of(value, allowed));
    }
}

/// Checks an optional duration field (Istio: >= 1ms, ms precision).
pub(crate) fn check_duration_field(errors: &mut FieldErrors, path: String, value: Option<&str>) {
    if let Some(value) = value {
        errors.check(path, check_duration(value).map(drop));
    }
}

/// `Percent` in [0, 100].
pub(crate) fn check_percent(errors: &mut FieldErrors, path: String, value: Option<&Percent>) {
    if let Some(p) = value
        && (!(0.0..=100.0).contains(&p.value) || p.value.is_nan())
    {
        errors.push(at(&path, "value"), "percentage must be in [0, 100]");
    }
}

/// Integer percentage in [0, 100].
pub(crate) fn check_int_percent(errors: &mut FieldErrors, path: String, value: Option<i32>) {
    if let Some(v) = value
        && !(0..=100).contains(&v)
    {
        errors.push(path, format!("percentage {v} must be in [0, 100]"));
    }
}

/// An RE2-compatible regex, as Envoy will run it.
pub(crate) fn regex(re: &str) -> Result<(), String> {
    if re.is_empty() {
        return Err("regex string match should not be empty".into());
    }
    if re.len() > 1024 {
        return Err("regex is too large, max length allowed is 1024".into());
    }
    regex::Regex::new(re).map(drop).map_err(|e| {
        format!(
            "invalid regex: {}",
            e.to_string().lines().last().unwrap_or("")
        )
    })
}

/// `StringMatch` is a oneof: at most one of exact, prefix, regex.
pub(crate) fn check_string_match(errors: &mut FieldErrors, path: &str, m: &StringMatch) {
    let set = [m.exact.is_some(), m.prefix.is_some(), m.regex.is_some()]
        .iter()
        .filter(|s| **s)
        .count();
    if set > 1 {
        errors.push(path, "only one of exact, prefix or regex may be set");
    }
    if let Some(re) = &m.regex {
        errors.check(at(path, "regex"), regex(re));
    }
}

/// An HTTP header name (an RFC 7230 token).
pub(crate) fn header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name cannot be empty".into());
    }
    let token = name
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
    if token {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid header name"))
    }
}

/// A header that may be edited: no pseudo-headers and no `host`, except
/// that request `set`/`add` may write the authority.
pub(crate) fn editable_header(name: &str, authority_allowed: bool) -> Result<(), String> {
    let authority = name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host");
    if authority && authority_allowed {
        return Ok(());
    }
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(format!(
            "invalid header `{name}`: pseudo-headers and `host` cannot be edited here"
        ));
    }
    header_name(name)
}

/// Header values cannot carry line breaks or NULs.
pub(crate) fn header_value(value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n', '\0']) {
        Err("header value must not contain CR, LF or NUL".into())
    } else {
        Ok(())
    }
}

fn qualified_name(key: &str) -> bool {
    let ok = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
    };
    match key.split_once('/') {
        Some((prefix, name)) => fqdn(prefix).is_ok() && prefix.len() <= 253 && ok(name),
        None => ok(key),
    }
}

/// Kubernetes label keys and values.
pub(crate) fn check_labels(
    errors: &mut FieldErrors,
    path: &str,
    labels: &BTreeMap<String, String>,
) {
    for (key, value) in labels {
        check_label(errors, path, key, value);
    }
}

fn check_label(errors: &mut FieldErrors, path: &str, key: &str, value: &str) {
    if !qualified_name(key) {
        errors.push(at(path, key), format!("invalid label key `{key}`"));
    }
    let value_ok = value.is_empty() || qualified_name(value) && !value.contains('/');
    if !value_ok {
        errors.push(at(path, key), format!("invalid label value `{value}`"));
    }
}

/// `istio.type.v1beta1.WorkloadSelector`: no empty keys, no wildcards.
pub(crate) fn check_selector(
    errors: &mut FieldErrors,
    path: &str,
    selector: Option<&WorkloadLabelSelector>,
) {
    let Some(selector) = selector else { return };
    let labels = at(path, "matchLabels");
    for (key, value) in &selector.match_labels {
        if key.is_empty() {
            errors.push(&labels, "empty key is not supported in selector");
        } else if key.contains('*') || value.contains('*') {
            errors.push(at(&labels, key), "wildcard is not supported in selector");
        } else {
            check_label(errors, &labels, key, value);
        }
    }
}

/// `exportTo`: `.`, `*`, `~` or namespace names, without repeats.
pub(crate) fn check_export_to(errors: &mut FieldErrors, path: &str, export_to: &[String]) {
    let mut seen = BTreeSet::new();
    for (i, ns) in export_to.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !seen.insert(ns.as_str()) {
            errors.push(p, format!("duplicate entry `{ns}`"));
        } else if !matches!(ns.as_str(), "." | "*" | "~") && !is_dns1123_label(ns) {
            errors.push(p, format!("invalid namespace `{ns}`"));
        }
    }
    if seen.contains("*") && seen.len() > 1 {
        errors.push(path, "`*` cannot be combined with other values");
    }
    if seen.contains("~") && seen.len() > 1 {
        errors.push(path, "`~` cannot be combined with other values");
    }
}

/// Gateway references: `mesh`, `<namespace>/<name>` or a legacy FQDN.
pub(crate) fn check_gateways(errors: &mut FieldErrors, path: &str, gateways: &[String]) {
    for (i, gateway) in gateways.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if gateway == "mesh" {
            continue;
        }
        match gateway.split_once('/') {
            None => errors.check(p, fqdn(gateway)),
            Some((ns, name)) => {
                if ns.is_empty() || name.is_empty() {
                    errors.push(p, "config namespace and gateway name cannot be empty");
                } else if !is_dns1123_label(ns) {
                    errors.push(p, format!("invalid value for namespace: `{ns}`"));
                } else if !is_dns1123_label(name) {
                    errors.push(p, format!("invalid value for gateway name: `{name}`"));
                }
            }
        }
    }
}

/// Whether every host matched by `a` is also matched by `b` (wildcards in
/// the first label only).
pub(crate) fn host_subset_of(a: &str, b: &str) -> bool {
    if b == "*" || a == b {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (None, Some(suffix)) => a.ends_with(suffix),
        (Some(a_suffix), Some(b_suffix)) => a_suffix.ends_with(b_suffix),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
