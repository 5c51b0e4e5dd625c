//! Inbound token buckets for one proxy, from EnvoyFilter `local_ratelimit`
//! insertions and Sluice `RateLimitPolicy` objects whose selectors pick its
//! workload.

use super::{View, namespace_of};
use crate::crd::parse_duration;
use crate::crd::{RateLimitMatch, StringMatch};
use crate::resource::Resource;
use crate::services::labels_match;
use crate::validation::{LimitStage, PatchContext, local_rate_limits};
use sluice_api::config as pb;

/// Rate limits applied to requests arriving at this proxy, EnvoyFilters
/// first (root namespace, then the workload's), then RateLimitPolicies.
pub(crate) fn inbound_rate_limits(view: &View<'_>) -> Vec<pb::RateLimit> {
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
    let mut out = Vec::new();
    for ef in envoy_filters {
        // Validation already refused filters that do not parse.
        let Ok(limits) = local_rate_limits(ef) else {
            continue;
        };
        let name = format!(
            "{}/EnvoyFilter/{}",
            namespace_of(&ef.metadata),
            ef.metadata.name.as_deref().unwrap_or_default()
        );
        for limit in limits {
            if limit.context == PatchContext::Outbound {
                continue;
            }
            out.push(pb::RateLimit {
                name: name.clone(),
                max_tokens: limit.max_tokens,
                tokens_per_fill: limit.tokens_per_fill,
                fill_interval_ms: u64::try_from(limit.fill_interval.as_millis())
                    .unwrap_or(u64::MAX),
                matches: Vec::new(),
                enabled_percent: limit.enabled_percent,
                enforced_percent: limit.enforced_percent,
                source_principals: Vec::new(),
                stat_prefix: limit.stat_prefix.clone().unwrap_or_default(),
                ports: Vec::new(),
                x_ratelimit_headers: limit.x_ratelimit_headers,
                stage: stage(limit.stage).into(),
            });
        }
    }
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
        });
    }
    out
}

fn stage(s: LimitStage) -> pb::RateLimitStage {
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
