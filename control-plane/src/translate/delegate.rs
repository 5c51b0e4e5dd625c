//! VirtualService delegation (`http[].delegate`), merged as istiod merges it
//! before any proxy sees the routes:
//!
//! - a delegate is a VirtualService without `hosts`; it never applies on its
//!   own, only through a root's rule that names it (`namespace` defaults to the
//!   root's) and only when its `exportTo` lets the root's namespace see it;
//! - the naming rule is replaced, in place, by the delegate's rules in order,
//!   each merged with it: the delegate's `route`/`redirect`, the root's
//!   `rewrite`, `directResponse`, `timeout`, `retries`, `fault`, mirrors,
//!   `corsPolicy` and `headers` where the delegate sets none, names joined
//!   `root-delegate`;
//! - matches are merged pairwise (delegate match × root match, delegate
//!   first); a pair whose fields conflict is dropped, and a delegate rule with
//!   a match compatible with no root match is dropped;
//! - short destination hosts of a delegate resolve in the delegate's namespace;
//! - a missing or hidden delegate drops only the naming rule, and delegation
//!   is one level deep (a delegate's own `delegate` rules are not expanded).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::crd::{HttpMatchRequest, HttpRoute, StringMatch, VirtualService};
use crate::index::MeshIndex;
use crate::resource::{Resource, ResourceKey, kind};

use super::{fqdn, namespace_of, visible};

/// One HTTP rule as the proxy gets it.
pub(crate) struct Rule<'a> {
    pub rule: Cow<'a, HttpRoute>,
    /// Where short destination hosts resolve: the delegate's namespace for a
    /// merged rule, else the root's.
    pub namespace: &'a str,
    /// Index of the root's rule it comes from.
    pub index: usize,
}

/// The HTTP rules of `vs` with every delegating rule replaced by the
/// delegate's rules merged into it.
pub(crate) fn expand<'a>(index: &'a MeshIndex, vs: &'a VirtualService) -> Vec<Rule<'a>> {
    let ns = namespace_of(&vs.metadata);
    let mut out = Vec::with_capacity(vs.spec.http.len());
    for (i, rule) in vs.spec.http.iter().enumerate() {
        // A delegate's own `delegate` rules stay as they are (one level only).
        let Some(target) = rule.delegate.as_ref().filter(|_| !vs.spec.hosts.is_empty()) else {
            out.push(Rule {
                rule: Cow::Borrowed(rule),
                namespace: ns,
                index: i,
            });
            continue;
        };
        let Some(delegate) = find(index, target, ns) else {
            let root = vs.metadata.name.as_deref().unwrap_or("");
            tracing::debug!(
                root = %format_args!("{ns}/{root}"),
                rule = i,
                "delegate missing, not hostless or not exported to the root's namespace: rule skipped"
            );
            continue;
        };
        let delegate_ns = namespace_of(&delegate.metadata);
        for leaf in &delegate.spec.http {
            if let Some(merged) = merge_rule(rule, ns, leaf) {
                out.push(Rule {
                    rule: Cow::Owned(merged),
                    namespace: delegate_ns,
                    index: i,
                });
            }
        }
    }
    out
}

/// The delegate a rule names, when it exists, has no hosts and is exported
/// to the root's namespace.
fn find<'a>(
    index: &'a MeshIndex,
    target: &crate::crd::Delegate,
    root_ns: &str,
) -> Option<&'a VirtualService> {
    let name = target.name.as_deref().filter(|n| !n.is_empty())?;
    let namespace = target
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(root_ns);
    let key = ResourceKey {
        kind: kind::VIRTUAL_SERVICE,
        namespace: namespace.into(),
        name: name.into(),
    };
    match index.resources.get(&key).map(|r| r.as_ref()) {
        Some(Resource::VirtualService(vs))
            if vs.spec.hosts.is_empty()
                && visible(&vs.spec.export_to, namespace_of(&vs.metadata), root_ns) =>
        {
            Some(vs)
        }
        _ => None,
    }
}

/// A delegate rule merged with the root rule (of namespace `root_ns`) that
/// names it; `None` when its matches conflict with every one of the root's.
pub(crate) fn merge_rule(root: &HttpRoute, root_ns: &str, leaf: &HttpRoute) -> Option<HttpRoute> {
    let matches = merge_matches(&root.match_, &leaf.match_)?;
    let mut out = leaf.clone();
    out.match_ = matches;
    out.name = joined_name(root.name.as_deref(), leaf.name.as_deref());
    // Each is taken whole from the root when the delegate sets none.
    fn inherit<T: Clone>(own: &mut Option<T>, root: &Option<T>) {
        if own.is_none() {
            own.clone_from(root);
        }
    }
    inherit(&mut out.rewrite, &root.rewrite);
    inherit(&mut out.direct_response, &root.direct_response);
    inherit(&mut out.timeout, &root.timeout);
    inherit(&mut out.retries, &root.retries);
    inherit(&mut out.fault, &root.fault);
    // Mirrors taken from the root keep the root's namespace for short hosts
    // (istiod resolves every VirtualService's names before merging).
    if out.mirror.is_none()
        && let Some(m) = &root.mirror
    {
        let mut m = m.clone();
        m.host = fqdn(&m.host, root_ns);
        out.mirror = Some(m);
    }
    inherit(&mut out.mirror_percent, &root.mirror_percent);
    inherit(&mut out.mirror_percentage, &root.mirror_percentage);
    inherit(&mut out.cors_policy, &root.cors_policy);
    inherit(&mut out.headers, &root.headers);
    if out.mirrors.is_empty() {
        out.mirrors.clone_from(&root.mirrors);
        for m in &mut out.mirrors {
            m.destination.host = fqdn(&m.destination.host, root_ns);
        }
    }
    Some(out)
}

/// `root-leaf` when both are named, else whichever is.
fn joined_name(root: Option<&str>, leaf: Option<&str>) -> Option<String> {
    let root = root.filter(|n| !n.is_empty());
    let leaf = leaf.filter(|n| !n.is_empty());
    match (root, leaf) {
        (Some(r), Some(l)) => Some(format!("{r}-{l}")),
        (r, l) => l.or(r).map(str::to_owned),
    }
}

/// The merged matches of a delegate rule: each delegate match with each
/// root match it is compatible with, delegate first.
fn merge_matches(
    root: &[HttpMatchRequest],
    leaf: &[HttpMatchRequest],
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(leaf.to_vec());
    }
    if leaf.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for l in leaf {
        let before = out.len();
        out.extend(root.iter().filter_map(|r| merge_match(r, l)));
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// One root match and one delegate match combined, or `None` when they
/// cannot both hold.
pub(crate) fn merge_match(
    root: &HttpMatchRequest,
    leaf: &HttpMatchRequest,
) -> Option<HttpMatchRequest> {
    let ignore_case = |m: &HttpMatchRequest| m.ignore_uri_case.unwrap_or(false);
    if ignore_case(root) != ignore_case(leaf) {
        return None;
    }
    let port = match (root.port.filter(|p| *p != 0), leaf.port.filter(|p| *p != 0)) {
        (Some(r), Some(l)) if r != l => return None,
        (r, l) => l.or(r),
    };
    let source_namespace = match (&root.source_namespace, &leaf.source_namespace) {
        (Some(r), l) if !r.is_empty() => {
            if l.as_deref() != Some(r.as_str()) {
                return None;
            }
            Some(r.clone())
        }
        (r, l) => l.clone().or_else(|| r.clone()),
    };
    if root
        .source_labels
        .iter()
        .any(|(k, v)| leaf.source_labels.get(k).is_some_and(|l| l != v))
    {
        return None;
    }
    let gateways = match (root.gateways.is_empty(), leaf.gateways.is_empty()) {
        (false, false) if !leaf.gateways.iter().all(|g| root.gateways.contains(g)) => {
            return None;
        }
        (_, false) => leaf.gateways.clone(),
        _ => root.gateways.clone(),
    };
    let mut source_labels = root.source_labels.clone();
    source_labels.extend(leaf.source_labels.clone());
    Some(HttpMatchRequest {
        name: joined_name(root.name.as_deref(), leaf.name.as_deref()),
        uri: merge_string(root.uri.as_ref(), leaf.uri.as_ref())?,
        scheme: merge_string(root.scheme.as_ref(), leaf.scheme.as_ref())?,
        method: merge_string(root.method.as_ref(), leaf.method.as_ref())?,
        authority: merge_string(root.authority.as_ref(), leaf.authority.as_ref())?,
        headers: merge_map(&root.headers, &leaf.headers)?,
        port,
        source_labels,
        gateways,
        query_params: merge_map(&root.query_params, &leaf.query_params)?,
        ignore_uri_case: leaf.ignore_uri_case.or(root.ignore_uri_case),
        without_headers: merge_map(&root.without_headers, &leaf.without_headers)?,
        source_namespace,
        stat_prefix: leaf
            .stat_prefix
            .clone()
            .or_else(|| root.stat_prefix.clone()),
    })
}

/// Both maps, the delegate's condition winning on a shared key; `None` when
/// a shared key's conditions conflict.
fn merge_map(
    root: &BTreeMap<String, StringMatch>,
    leaf: &BTreeMap<String, StringMatch>,
) -> Option<BTreeMap<String, StringMatch>> {
    let mut out = root.clone();
    for (k, l) in leaf {
        if let Some(r) = root.get(k)
            && conflict(r, l)
        {
            return None;
        }
        out.insert(k.clone(), l.clone());
    }
    Some(out)
}

/// The delegate's condition, or the root's when the delegate sets none;
/// `None` (outer) when they conflict.
fn merge_string(
    root: Option<&StringMatch>,
    leaf: Option<&StringMatch>,
) -> Option<Option<StringMatch>> {
    match (root, leaf) {
        (Some(r), Some(l)) if conflict(r, l) => None,
        (r, l) => Some(l.or(r).cloned()),
    }
}

/// Whether a delegate's condition cannot narrow the root's: regexes cannot
/// be compared; an exact root needs the same exact value, a prefix root an
/// exact or prefix value under it.
fn conflict(root: &StringMatch, leaf: &StringMatch) -> bool {
    fn set(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    if set(&root.regex).is_some() || set(&leaf.regex).is_some() {
        return true;
    }
    if let Some(exact) = set(&root.exact) {
        return set(&leaf.exact) != Some(exact);
    }
    if let Some(prefix) = set(&root.prefix)
        && let Some(l) = set(&leaf.prefix).or(set(&leaf.exact))
    {
        return !l.starts_with(prefix);
    }
    true
}

#[cfg(test)]
mod tests;
