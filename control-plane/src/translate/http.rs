//! VirtualService `http` and `tcp` rules → proxy routes.

use super::cluster::Clusters;
use super::{View, fqdn, namespace_of};
use crate::crd::{
    Destination, HeaderOperations, Headers, HttpMatchRequest, HttpRoute, L4MatchAttributes,
    StringMatch, VirtualService,
};
use crate::mesh_config::RetryBudget;
use crate::services::{Service, ServicePort, labels_match};
use sluice_api::config as pb;

/// The route of a service no VirtualService covers: all its endpoints.
pub(crate) fn default_route(
    view: &View<'_>,
    service: &Service,
    port: &ServicePort,
    clusters: &mut Clusters,
) -> pb::Route {
    pb::Route {
        action: Some(pb::route::Action::Forward(pb::WeightedClusters {
            clusters: vec![pb::WeightedCluster {
                cluster: clusters.get(view, service, port, None),
                weight: 100,
                ..Default::default()
            }],
        })),
        retries: Some(pb::RetryPolicy {
            budget: view.index.mesh.retry_budget.map(wire_budget),
            ..default_retries()
        }),
        ..Default::default()
    }
}

fn wire_budget(b: RetryBudget) -> pb::RetryBudget {
    pb::RetryBudget {
        percent: b.percent,
        min_retries_per_second: b.min_per_second,
    }
}

/// The retry budget of a VirtualService's routes: its annotations', each
/// unset part taken from the mesh budget (or Linkerd's default); else the
/// mesh budget; else none, as Istio (retries bounded only by `attempts`).
fn retry_budget(view: &View<'_>, vs: &VirtualService) -> Option<pb::RetryBudget> {
    let annotation = |key: &str| {
        vs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(|v| v.trim().to_owned())
    };
    let percent = annotation(crate::mesh_config::RETRY_BUDGET_PERCENT_ANNOTATION)
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|p| (0.0..=100.0).contains(p));
    let min = annotation(crate::mesh_config::RETRY_BUDGET_MIN_ANNOTATION)
        .and_then(|v| v.parse::<u32>().ok());
    let mesh = view.index.mesh.retry_budget;
    if percent.is_none() && min.is_none() {
        return mesh.map(wire_budget);
    }
    let base = mesh.unwrap_or(RetryBudget::DEFAULT);
    Some(wire_budget(RetryBudget {
        percent: percent.unwrap_or(base.percent),
        min_per_second: min.unwrap_or(base.min_per_second),
    }))
}

/// What Istio retries when a route names no `retryOn`. Since Istio 1.24
/// (`EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY`, on by default) 503 is no longer
/// a retriable status: retrying it is unsafe for requests that are not
/// idempotent.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

/// Istio's retry policy for routes that set none: 2 retries on
/// [`DEFAULT_RETRY_ON`], preferring hosts not tried yet.
fn default_retries() -> pb::RetryPolicy {
    pb::RetryPolicy {
        attempts: 2,
        per_try_timeout_ms: 0,
        retry_on: DEFAULT_RETRY_ON.into(),
        retry_remote_localities: false,
        retry_ignore_previous_hosts: true,
        is_default: true,
        budget: None,
        backoff_base_ms: DEFAULT_BACKOFF_MS,
    }
}

/// Envoy's retry back-off base interval when `retries.backoff` is unset.
const DEFAULT_BACKOFF_MS: u64 = 25;

/// The route's rewrite: `rewrite.uri`/`uriRegexRewrite`, and the authority
/// from `rewrite.authority`, else from a `host` (or `:authority`) set or added
/// in the route's request headers, which istiod turns into a host rewrite.
fn rewrite(rule: &HttpRoute) -> Option<pb::Rewrite> {
    let from_headers = header_authority(rule.headers.as_ref());
    let r = rule.rewrite.as_ref();
    if r.is_none() && from_headers.is_none() {
        return None;
    }
    Some(pb::Rewrite {
        uri: r.and_then(|r| r.uri.clone()).unwrap_or_default(),
        authority: r
            .and_then(|r| r.authority.clone())
            .or(from_headers)
            .unwrap_or_default(),
        uri_regex: r
            .and_then(|r| r.uri_regex_rewrite.as_ref())
            .map(|x| pb::RegexRewrite {
                pattern: x.match_.clone(),
                substitution: re2_substitution(&x.rewrite),
            }),
    })
}

/// Headers Envoy does not let a route modify (`:`-pseudo-headers and
/// `host`); istiod drops them from header operations.
fn internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

/// The authority a `host` or `:authority` request header operation asks
/// for: `set` over `add`, as istiod reads them.
fn header_authority(headers: Option<&Headers>) -> Option<String> {
    let ops = headers?.request.as_ref()?;
    let find = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case(":authority"))
            .map(|(_, v)| v.clone())
    };
    find(&ops.set).or_else(|| find(&ops.add))
}

/// The HTTP routes of `vs` that apply to this proxy on `port` of `service`.
pub(crate) fn routes(
    view: &View<'_>,
    vs: &VirtualService,
    service: &Service,
    port: &ServicePort,
    clusters: &mut Clusters,
) -> Vec<pb::Route> {
    let ns = namespace_of(&vs.metadata);
    let name = vs.metadata.name.as_deref().unwrap_or_default();
    let budget = retry_budget(view, vs);
    let mut out = Vec::new();
    for expanded in super::delegate::expand(view.index, vs) {
        // Short destination hosts of a delegate's rules resolve in its namespace.
        let (i, rule, hosts_ns) = (expanded.index, expanded.rule.as_ref(), expanded.namespace);
        // Matches whose source or port conditions exclude this proxy are
        // dropped; a rule whose every match is dropped does not exist here.
        let matches: Vec<pb::RouteMatch> = rule
            .match_
            .iter()
            .filter(|m| applies_http(view, m, port.number))
            .map(route_match)
            .collect();
        if !rule.match_.is_empty() && matches.is_empty() {
            continue;
        }
        let Some(action) = action(view, hosts_ns, rule, service, port, clusters) else {
            continue;
        };
        out.push(pb::Route {
            virtual_service: format!("{ns}/{name}"),
            rule_index: u32::try_from(i).unwrap_or(u32::MAX),
            name: rule.name.clone().unwrap_or_default(),
            matches,
            action: Some(action),
            rewrite: rewrite(rule),
            request_headers: header_ops(rule.headers.as_ref(), true),
            response_headers: header_ops(rule.headers.as_ref(), false),
            timeout_ms: rule.timeout.as_deref().and_then(millis).unwrap_or(0),
            retries: Some(match &rule.retries {
                None => pb::RetryPolicy {
                    budget,
                    ..default_retries()
                },
                Some(r) => pb::RetryPolicy {
                    attempts: u32::try_from(r.attempts).unwrap_or(0),
                    per_try_timeout_ms: r.per_try_timeout.as_deref().and_then(millis).unwrap_or(0),
                    retry_on: r
                        .retry_on
                        .clone()
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| DEFAULT_RETRY_ON.into()),
                    retry_remote_localities: r.retry_remote_localities.unwrap_or(false),
                    retry_ignore_previous_hosts: r.retry_ignore_previous_hosts.unwrap_or(true),
                    is_default: false,
                    budget,
                    backoff_base_ms: r
                        .backoff
                        .as_deref()
                        .and_then(millis)
                        .unwrap_or(DEFAULT_BACKOFF_MS),
                },
            }),
            fault: rule.fault.as_ref().map(|f| {
                // istiod's `TranslateFault`: `percentage` when set, else a
                // delay's deprecated integer `percent`; an abort has only
                // `percentage` (its `percent` field was removed from the API,
                // so istiod never reads it).
                let pct = |p: Option<&crate::crd::Percent>, legacy: Option<i32>| {
                    p.map_or_else(|| legacy.map_or(0.0, f64::from), |p| p.value)
                };
                pb::Fault {
                    delay_ms: f
                        .delay
                        .as_ref()
                        .and_then(|d| d.fixed_delay.as_deref())
                        .and_then(millis)
                        .unwrap_or(0),
                    delay_percent: f
                        .delay
                        .as_ref()
                        .map(|d| pct(d.percentage.as_ref(), d.percent))
                        .unwrap_or(0.0),
                    abort_http_status: f
                        .abort
                        .as_ref()
                        .and_then(|a| a.http_status)
                        .and_then(|s| u32::try_from(s).ok())
                        .unwrap_or(0),
                    abort_grpc_status: f
                        .abort
                        .as_ref()
                        .and_then(|a| a.grpc_status.clone())
                        .unwrap_or_default(),
                    abort_percent: f
                        .abort
                        .as_ref()
                        .map(|a| pct(a.percentage.as_ref(), None))
                        .unwrap_or(0.0),
                }
            }),
            mirrors: mirrors(view, hosts_ns, rule, port, clusters),
            cors: rule.cors_policy.as_ref().map(|c| pb::CorsPolicy {
                allow_origins: c
                    .allow_origins
                    .iter()
                    .map(string_match)
                    .chain(c.allow_origin.iter().map(|o| pb::StringMatch {
                        kind: Some(pb::string_match::Kind::Exact(o.clone())),
                    }))
                    .collect(),
                allow_methods: c.allow_methods.clone(),
                allow_headers: c.allow_headers.clone(),
                expose_headers: c.expose_headers.clone(),
                // Whole seconds, as Istio sends `access-control-max-age`.
                max_age_s: c.max_age.as_deref().and_then(millis).map(|ms| ms / 1000),
                allow_credentials: c.allow_credentials.unwrap_or(false),
                ignore_unmatched_preflights: c.unmatched_preflights.as_deref() == Some("IGNORE"),
            }),
        });
    }
    out
}

/// The TCP routes of `vs` for `port` of `service`.
pub(crate) fn tcp_routes(
    view: &View<'_>,
    vs: &VirtualService,
    service: &Service,
    port: &ServicePort,
    clusters: &mut Clusters,
) -> Vec<pb::TcpRoute> {
    let ns = namespace_of(&vs.metadata);
    let name = vs.metadata.name.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for (i, rule) in vs.spec.tcp.iter().enumerate() {
        if !rule.match_.is_empty() && !rule.match_.iter().any(|m| applies_l4(view, m, port.number))
        {
            continue;
        }
        let forward = weighted(
            view,
            ns,
            rule.route.iter().map(|r| (&r.destination, r.weight, None)),
            service,
            port,
            clusters,
        );
        let first = rule.route.first().map(|r| &r.destination);
        let (idle_timeout_ms, max_connection_duration_ms) = tcp_timeouts(view, ns, first);
        out.push(pb::TcpRoute {
            virtual_service: format!("{ns}/{name}"),
            rule_index: u32::try_from(i).unwrap_or(u32::MAX),
            forward: Some(forward),
            idle_timeout_ms,
            max_connection_duration_ms,
        });
    }
    out
}

/// Istio's `tcp_proxy` timeouts of a TCP route whose first destination is
/// `dest`: from the top level of that host's DestinationRule.
fn tcp_timeouts(view: &View<'_>, ns: &str, dest: Option<&Destination>) -> (Option<u64>, u64) {
    let dr = dest
        .and_then(|d| view.service(&fqdn(&d.host, ns)))
        .and_then(|s| super::cluster::destination_rule_for(view, s));
    super::policy::tcp_proxy_timeouts(dr.as_deref())
}

fn applies_http(view: &View<'_>, m: &HttpMatchRequest, port: u32) -> bool {
    applies_to_proxy(
        view,
        m.port,
        &m.source_labels,
        m.source_namespace.as_deref(),
        &m.gateways,
        port,
    )
}

fn applies_l4(view: &View<'_>, m: &L4MatchAttributes, port: u32) -> bool {
    applies_to_proxy(
        view,
        m.port,
        &m.source_labels,
        m.source_namespace.as_deref(),
        &m.gateways,
        port,
    )
}

/// The match conditions the controller settles per proxy: port, source
/// labels, source namespace and gateways (only `mesh` binds sidecars).
fn applies_to_proxy(
    view: &View<'_>,
    match_port: Option<u32>,
    source_labels: &std::collections::BTreeMap<String, String>,
    source_namespace: Option<&str>,
    gateways: &[String],
    port: u32,
) -> bool {
    match_port.is_none_or(|p| p == port)
        && labels_match(source_labels, &view.proxy.labels)
        && source_namespace.is_none_or(|ns| ns == view.proxy.namespace)
        && (gateways.is_empty() || gateways.iter().any(|g| g == "mesh"))
}

fn route_match(m: &HttpMatchRequest) -> pb::RouteMatch {
    let map = |h: &std::collections::BTreeMap<String, StringMatch>, lower: bool| {
        h.iter()
            .map(|(k, v)| {
                let k = if lower {
                    k.to_ascii_lowercase()
                } else {
                    k.clone()
                };
                (k, string_match(v))
            })
            .collect()
    };
    pb::RouteMatch {
        name: m.name.clone().unwrap_or_default(),
        uri: m.uri.as_ref().map(string_match),
        scheme: m.scheme.as_ref().map(string_match),
        method: m.method.as_ref().map(string_match),
        authority: m.authority.as_ref().map(string_match),
        headers: map(&m.headers, true),
        query_params: map(&m.query_params, false),
        without_headers: map(&m.without_headers, true),
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
    }
}

/// Istio's StringMatch; `{}` (nothing set) means "present".
pub(crate) fn string_match(m: &StringMatch) -> pb::StringMatch {
    use pb::string_match::Kind;
    let kind = if let Some(v) = &m.exact {
        Kind::Exact(v.clone())
    } else if let Some(v) = &m.prefix {
        Kind::Prefix(v.clone())
    } else if let Some(v) = &m.regex {
        Kind::Regex(v.clone())
    } else {
        Kind::Present(true)
    };
    pb::StringMatch { kind: Some(kind) }
}

fn action(
    view: &View<'_>,
    ns: &str,
    rule: &HttpRoute,
    service: &Service,
    port: &ServicePort,
    clusters: &mut Clusters,
) -> Option<pb::route::Action> {
    if let Some(r) = &rule.redirect {
        return Some(pb::route::Action::Redirect(pb::Redirect {
            uri: r.uri.clone().unwrap_or_default(),
            authority: r.authority.clone().unwrap_or_default(),
            port: r.port.unwrap_or(0),
            derive_port: match r.derive_port.as_deref() {
                Some("FROM_PROTOCOL_DEFAULT") => pb::redirect::DerivePort::FromProtocolDefault,
                Some("FROM_REQUEST_PORT") => pb::redirect::DerivePort::FromRequestPort,
                _ => pb::redirect::DerivePort::Unspecified,
            } as i32,
            scheme: r.scheme.clone().unwrap_or_default(),
            status: r.redirect_code.unwrap_or(301),
        }));
    }
    if let Some(d) = &rule.direct_response {
        let body = d
            .body
            .as_ref()
            .map(|b| {
                b.string
                    .clone()
                    .map(String::into_bytes)
                    .or_else(|| b.bytes.as_deref().and_then(base64_decode))
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        return Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: d.status,
            body,
        }));
    }
    if rule.route.is_empty() {
        return None;
    }
    Some(pb::route::Action::Forward(weighted(
        view,
        ns,
        rule.route
            .iter()
            .map(|r| (&r.destination, r.weight, r.headers.as_ref())),
        service,
        port,
        clusters,
    )))
}

fn weighted<'a>(
    view: &View<'_>,
    ns: &str,
    destinations: impl Iterator<Item = (&'a Destination, Option<i32>, Option<&'a Headers>)>,
    service: &Service,
    port: &ServicePort,
    clusters: &mut Clusters,
) -> pb::WeightedClusters {
    let destinations: Vec<_> = destinations.collect();
    let single = destinations.len() == 1;
    let clusters = destinations
        .into_iter()
        .map(|(dest, weight, headers)| {
            // Istio: a lone destination with no weight takes all traffic; with
            // several, an unset weight is 0.
            let weight = match weight {
                Some(w) => u32::try_from(w).unwrap_or(0),
                None if single => 100,
                None => 0,
            };
            pb::WeightedCluster {
                cluster: cluster_for(view, ns, dest, service, port, clusters),
                weight,
                request_headers: header_ops(headers, true),
                response_headers: header_ops(headers, false),
                authority: header_authority(headers).unwrap_or_default(),
            }
        })
        .collect();
    pb::WeightedClusters { clusters }
}

/// Cluster of a route destination; its port defaults to the port being
/// routed when the destination service has it, else its only port.
fn cluster_for(
    view: &View<'_>,
    ns: &str,
    dest: &Destination,
    routed: &Service,
    routed_port: &ServicePort,
    clusters: &mut Clusters,
) -> String {
    let host = fqdn(&dest.host, ns);
    let subset = dest.subset.as_deref().filter(|s| !s.is_empty());
    let Some(service) = view.service(&host) else {
        // Unknown host: a named, empty cluster answers 503 (no healthy upstream).
        let number = dest.port.as_ref().map_or(routed_port.number, |p| p.number);
        return clusters.missing(&host, number, subset);
    };
    let wanted = dest.port.as_ref().map(|p| p.number);
    let port = match wanted {
        Some(n) => service.port(n),
        None if service.fqdn == routed.fqdn => Some(routed_port),
        None => service
            .port(routed_port.number)
            .or_else(|| (service.ports.len() == 1).then(|| &service.ports[0])),
    };
    match port {
        Some(port) => clusters.get(view, service, port, subset),
        None => clusters.missing(&host, wanted.unwrap_or(routed_port.number), subset),
    }
}

fn mirrors(
    view: &View<'_>,
    ns: &str,
    rule: &HttpRoute,
    port: &ServicePort,
    clusters: &mut Clusters,
) -> Vec<pb::Mirror> {
    let mut out = Vec::new();
    let mut add = |dest: &Destination, percent: f64, clusters: &mut Clusters| {
        let host = fqdn(&dest.host, ns);
        let cluster = match view.service(&host) {
            Some(s) => cluster_for(view, ns, dest, s, port, clusters),
            None => clusters.missing(&host, port.number, dest.subset.as_deref()),
        };
        out.push(pb::Mirror { cluster, percent });
    };
    if let Some(m) = &rule.mirror {
        let percent = rule
            .mirror_percentage
            .as_ref()
            .map(|p| p.value)
            .or(rule.mirror_percent.map(f64::from))
            .unwrap_or(100.0);
        add(m, percent, clusters);
    }
    for m in &rule.mirrors {
        add(
            &m.destination,
            m.percentage.as_ref().map_or(100.0, |p| p.value),
            clusters,
        );
    }
    out
}

fn header_ops(headers: Option<&Headers>, request: bool) -> Option<pb::HeaderOps> {
    let ops: &HeaderOperations = headers.and_then(|h| {
        if request {
            h.request.as_ref()
        } else {
            h.response.as_ref()
        }
    })?;
    let kept = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| !internal_header(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    };
    Some(pb::HeaderOps {
        set: kept(&ops.set),
        add: kept(&ops.add),
        remove: ops
            .remove
            .iter()
            .filter(|k| !internal_header(k))
            .map(|k| k.to_ascii_lowercase())
            .collect(),
    })
}

fn millis(s: &str) -> Option<u64> {
    crate::crd::parse_duration(s)
        .ok()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// RE2 rewrite strings refer to groups as `\1`; Rust's `regex` uses `${1}`
/// and treats `$` as special.
fn re2_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push_str("${");
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    out.push(d);
                    chars.next();
                }
                out.push('}');
            }
            c => out.push(c),
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in s.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'=') {
        let v = ALPHABET.iter().position(|a| *a == b)?;
        acc = (acc << 6) | u32::try_from(v).ok()?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}
