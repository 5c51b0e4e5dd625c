//! Inbound token buckets for one proxy, from EnvoyFilter `local_ratelimit`
//! insertions and per-route configs, and Sluice `RateLimitPolicy` objects
//! whose selectors pick its workload.

use std::collections::BTreeSet;

use super::{View, namespace_of};
use crate::crd::parse_duration;
use crate::crd::{RateLimitMatch, StringMatch};
use crate::resource::Resource;
use crate::services::labels_match;
use crate::validation::{
    HeaderAppend, HeaderToAdd, LimitStage, LimitTarget, LocalRateLimit, PatchContext,
    local_rate_limits,
};
use sluice_api::config as pb;

/// Rate limits applied to requests arriving at this proxy on `ports`,
/// EnvoyFilters first (root namespace, then the workload's), then
/// RateLimitPolicies.
pub(crate) fn inbound_rate_limits(
    view: &View<'_>,
    ports: &[pb::InboundPort],
) -> Vec<pb::RateLimit> {
    let proxy = view.proxy;
    let root = view.index.mesh.root_namespace.as_str();
    let mut envoy_filters = Vec::new();
    let mut policies = Vec::new();
    let kinds = [
        crate::resource::kind::ENVOY_FILTER,
        crate::resource::kind::RATE_LIMIT_POLICY,
    ];
    for resource in kinds.into_iter().flat_map(|k| view.index.of_kind(k)) {
        match resource {
            Resource::EnvoyFilter(ef) => {
                let ns = namespace_of(&ef.metadata);
                let in_scope = ns == proxy.namespace || ns == root;
                let selected = ef
                    .spec
                    .workload_selector
                    .as_ref()
                    .is_none_or(|s| labels_match(&s.labels, &proxy.labels));
                if in_scope && selected {
                    envoy_filters.push(ef);
                }
            }
            Resource::RateLimitPolicy(rl) => {
                let selected = rl
                    .spec
                    .selector
                    .as_ref()
                    .is_none_or(|s| labels_match(&s.match_labels, &proxy.labels));
                if namespace_of(&rl.metadata) == proxy.namespace && selected {
                    policies.push(rl);
                }
            }
            _ => {}
        }
    }
    // Istio applies root-namespace filters before namespace ones, then by priority.
    envoy_filters.sort_by_key(|ef| {
        (
            namespace_of(&ef.metadata) != root,
            ef.spec.priority.unwrap_or(0),
        )
    });
    let mut limits = Vec::new();
    for ef in envoy_filters {
        // Validation already refused filters that do not parse.
        let Ok(read) = local_rate_limits(ef) else {
            continue;
        };
        let name = format!(
            "{}/EnvoyFilter/{}",
            namespace_of(&ef.metadata),
            ef.metadata.name.as_deref().unwrap_or_default()
        );
        // Sluice limits only the inbound (warned at validation).
        limits.extend(
            read.into_iter()
                .filter(|l| l.context != PatchContext::Outbound)
                .map(|l| (name.clone(), l)),
        );
    }
    let mut out = envoy_filter_limits(&limits, ports);
    for rl in policies {
        let fill = parse_duration(&rl.spec.fill_interval)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        out.push(pb::RateLimit {
            name: format!(
                "{}/RateLimitPolicy/{}",
                namespace_of(&rl.metadata),
                rl.metadata.name.as_deref().unwrap_or_default()
            ),
            max_tokens: u32::try_from(rl.spec.max_tokens).unwrap_or(0),
            tokens_per_fill: u32::try_from(rl.spec.tokens_per_fill).unwrap_or(0),
            fill_interval_ms: fill,
            matches: rl.spec.match_.iter().map(route_match).collect(),
            enabled_percent: 100.0,
            enforced_percent: 100.0,
            source_principals: rl
                .spec
                .source_principals
                .iter()
                .map(|p| p.trim_start_matches("spiffe://").to_owned())
                .collect(),
            stat_prefix: String::new(),
            ports: Vec::new(),
            // Sluice's own policy always reports its bucket.
            x_ratelimit_headers: true,
            stage: pb::RateLimitStage::AfterAuthorization.into(),
            ..Default::default()
        });
    }
    out
}

fn stage_pb(s: LimitStage) -> pb::RateLimitStage {
    match s {
        LimitStage::AfterAuthorization => pb::RateLimitStage::AfterAuthorization,
        LimitStage::BeforeAuthorization => pb::RateLimitStage::BeforeAuthorization,
        LimitStage::BeforeAuthentication => pb::RateLimitStage::BeforeAuthentication,
    }
}

fn route_match(m: &RateLimitMatch) -> pb::RouteMatch {
    let sm = |m: &StringMatch| super::http::string_match(m);
    pb::RouteMatch {
        uri: m.uri.as_ref().map(sm),
        method: m.method.as_ref().map(sm),
        headers: m
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), sm(v)))
            .collect(),
        ..Default::default()
    }
}

/// Application ports a set of inbound objects covers: every one (also
/// ports no service declares), or these.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ports {
    All,
    Only(BTreeSet<u32>),
}

impl Ports {
    fn contains(&self, port: u32) -> bool {
        match self {
            Ports::All => true,
            Ports::Only(set) => set.contains(&port),
        }
    }
}

/// The inbound HTTP ports a per-route config lands on: istiod gives each
/// HTTP (or auto-detected) target port a route configuration
/// `inbound|<target port>||` whose virtual host is `inbound|http|<service port>`.
fn route_ports(port: Option<u32>, service_port: Option<u32>, ports: &[pb::InboundPort]) -> Ports {
    if port.is_none() && service_port.is_none() {
        return Ports::All;
    }
    let http =
        |p: &pb::InboundPort| !matches!(pb::Protocol::try_from(p.protocol), Ok(pb::Protocol::Tcp));
    Ports::Only(
        ports
            .iter()
            .filter(|p| http(p))
            .filter(|p| port.is_none_or(|n| n == p.target_port))
            .filter(|p| service_port.is_none_or(|n| n == p.service_port))
            .map(|p| p.target_port)
            .collect(),
    )
}

/// The limits of the EnvoyFilter patches that apply to this proxy's inbound
/// (named by their EnvoyFilter, in patch order), as Envoy runs them: a
/// filter-level config limits the requests of the chains the filter is
/// inserted in, except on routes with a per-route config, which replaces it
/// there with its own bucket. A per-route config does nothing where no
/// `local_ratelimit` filter is inserted; a route's config wins over its
/// virtual host's, and among patches of one level the last one merged.
fn envoy_filter_limits(
    limits: &[(String, LocalRateLimit)],
    ports: &[pb::InboundPort],
) -> Vec<pb::RateLimit> {
    let filters: Vec<(&String, &LocalRateLimit, Ports)> = limits
        .iter()
        .filter_map(|(name, l)| match l.target {
            LimitTarget::Filter { port: None } => Some((name, l, Ports::All)),
            LimitTarget::Filter { port: Some(p) } => {
                Some((name, l, Ports::Only(BTreeSet::from([p]))))
            }
            _ => None,
        })
        .collect();
    // Later patches win: route-level ones after virtual-host ones, each in order.
    let mut routes: Vec<(&String, &LocalRateLimit, Ports, bool)> = limits
        .iter()
        .filter_map(|(name, l)| match l.target {
            LimitTarget::Route {
                virtual_host,
                port,
                service_port,
            } => Some((
                name,
                l,
                route_ports(port, service_port, ports),
                virtual_host,
            )),
            _ => None,
        })
        .collect();
    routes.sort_by_key(|(_, _, _, virtual_host)| !*virtual_host);
    // Where the filter is: per-route configs apply only there.
    let inserted = if filters.iter().any(|(_, _, p)| *p == Ports::All) {
        Ports::All
    } else {
        Ports::Only(
            filters
                .iter()
                .flat_map(|(_, _, p)| match p {
                    Ports::Only(set) => set.iter().copied().collect::<Vec<_>>(),
                    Ports::All => Vec::new(),
                })
                .collect(),
        )
    };
    let mut replaced_all = false;
    let mut replaced: BTreeSet<u32> = BTreeSet::new();
    let mut per_route = Vec::new();
    for (name, limit, scope, _) in routes.iter().rev() {
        if replaced_all {
            break;
        }
        let (only, except) = match (scope, &inserted) {
            (Ports::All, Ports::All) => {
                replaced_all = true;
                (Vec::new(), replaced.iter().copied().collect())
            }
            (Ports::All, Ports::Only(set)) | (Ports::Only(set), Ports::All) => {
                let mine: Vec<u32> = set.difference(&replaced).copied().collect();
                (mine, Vec::new())
            }
            (Ports::Only(a), Ports::Only(b)) => {
                let both: BTreeSet<u32> = a.intersection(b).copied().collect();
                (both.difference(&replaced).copied().collect(), Vec::new())
            }
        };
        if !replaced_all && only.is_empty() {
            continue;
        }
        // The first inserted filter on its ports applies it.
        let stage = filters
            .iter()
            .find(|(_, _, p)| only.is_empty() || only.iter().any(|o| p.contains(*o)))
            .map_or(LimitStage::default(), |(_, f, _)| f.stage);
        // Each inbound port has its own route configuration in Envoy, so a
        // per-route config has a bucket per port.
        if replaced_all {
            let known: BTreeSet<u32> = ports
                .iter()
                .filter(|p| !matches!(pb::Protocol::try_from(p.protocol), Ok(pb::Protocol::Tcp)))
                .map(|p| p.target_port)
                .filter(|p| !replaced.contains(p))
                .collect();
            for port in &known {
                per_route.push(limit_pb(name, limit, stage, vec![*port], Vec::new()));
            }
            // Ports no service declares share the rest.
            let mut except = except;
            except.extend(known);
            per_route.push(limit_pb(name, limit, stage, Vec::new(), except));
        } else {
            for port in &only {
                per_route.push(limit_pb(name, limit, stage, vec![*port], Vec::new()));
            }
        }
        replaced.extend(only.iter().copied());
    }
    per_route.reverse();
    let mut out = Vec::new();
    if !replaced_all {
        for (name, limit, scope) in &filters {
            if limit.bucket.is_none() {
                continue;
            }
            let only = match scope {
                Ports::All => Vec::new(),
                Ports::Only(set) => set.difference(&replaced).copied().collect(),
            };
            if *scope != Ports::All && only.is_empty() {
                continue;
            }
            let except = if *scope == Ports::All {
                replaced.iter().copied().collect()
            } else {
                Vec::new()
            };
            out.push(limit_pb(name, limit, limit.stage, only, except));
        }
    }
    out.extend(per_route);
    out
}

fn limit_pb(
    name: &str,
    limit: &LocalRateLimit,
    stage: LimitStage,
    ports: Vec<u32>,
    except_ports: Vec<u32>,
) -> pb::RateLimit {
    let bucket = limit.bucket.unwrap_or(crate::validation::Bucket {
        max_tokens: 0,
        tokens_per_fill: 0,
        fill_interval: std::time::Duration::ZERO,
    });
    pb::RateLimit {
        name: name.to_owned(),
        max_tokens: bucket.max_tokens,
        tokens_per_fill: bucket.tokens_per_fill,
        fill_interval_ms: u64::try_from(bucket.fill_interval.as_millis()).unwrap_or(u64::MAX),
        matches: Vec::new(),
        enabled_percent: limit.enabled_percent,
        enforced_percent: limit.enforced_percent,
        source_principals: Vec::new(),
        stat_prefix: limit.stat_prefix.clone().unwrap_or_default(),
        ports,
        x_ratelimit_headers: limit.x_ratelimit_headers,
        stage: stage_pb(stage).into(),
        status: u32::from(limit.status),
        response_headers: limit.response_headers.iter().map(header_pb).collect(),
        request_headers_when_not_enforced: limit
            .request_headers_when_not_enforced
            .iter()
            .map(header_pb)
            .collect(),
        except_ports,
    }
}

fn header_pb(h: &HeaderToAdd) -> pb::HeaderToAdd {
    let append = match h.append {
        HeaderAppend::AppendIfExistsOrAdd => pb::HeaderAppend::AppendIfExistsOrAdd,
        HeaderAppend::AddIfAbsent => pb::HeaderAppend::AddIfAbsent,
        HeaderAppend::OverwriteIfExistsOrAdd => pb::HeaderAppend::OverwriteIfExistsOrAdd,
        HeaderAppend::OverwriteIfExists => pb::HeaderAppend::OverwriteIfExists,
    };
    pb::HeaderToAdd {
        name: h.name.clone(),
        value: h.value.clone(),
        append: append.into(),
    }
}

#[cfg(test)]
mod tests;
