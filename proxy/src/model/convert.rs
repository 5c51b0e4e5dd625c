//! `TryFrom` conversions from the wire (prost) types into the domain model,
//! validating everything a request path would otherwise trip over.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use sluice_api::config as pb;

use super::*;
use crate::path_normalization::PathNormalization;

mod resilience;
mod security;
mod telemetry;

/// A snapshot item the proxy cannot apply, named by where it sits.
#[derive(Debug, thiserror::Error)]
#[error("{item}: {problem}")]
pub struct InvalidConfig {
    /// Which item, e.g. `route reviews:9080 #2 match[0] header "x"`.
    pub item: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// The reason an item is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("bad regex: {0}")]
    BadRegex(#[from] regex::Error),
    #[error("bad header name {0:?}")]
    BadHeaderName(String),
    #[error("bad value for header {0:?}")]
    BadHeaderValue(String),
    #[error("port {0} out of range")]
    BadPort(u32),
    #[error("bad IP address {0:?}")]
    BadAddress(String),
    #[error("string match without a kind")]
    EmptyMatch,
    #[error("unknown {what} value {value}")]
    UnknownEnum { what: &'static str, value: i32 },
    #[error("{0} is not a valid HTTP status")]
    BadStatus(u32),
    #[error("route has no action")]
    NoAction,
    #[error("duplicate cluster name")]
    DuplicateCluster,
    #[error("snapshot has no config")]
    NoConfig,
    #[error("{0} must be greater than 0")]
    Zero(&'static str),
    #[error("{what} {value} is not a percentage (0-100)")]
    BadPercent { what: &'static str, value: f64 },
    #[error("{0} is required")]
    Required(&'static str),
    #[error(transparent)]
    Authz(#[from] crate::authz::AuthzError),
    #[error(transparent)]
    Jwt(#[from] crate::jwt::JwtError),
    #[error("bad access log filter: {0}")]
    BadFilter(#[from] sluice_api::cel::CelError),
    #[error("{0}")]
    BadMetricTag(String),
}

fn invalid(item: impl Into<String>, problem: impl Into<Problem>) -> InvalidConfig {
    InvalidConfig {
        item: item.into(),
        problem: problem.into(),
    }
}

fn port(item: &str, p: u32) -> Result<u16, InvalidConfig> {
    u16::try_from(p).map_err(|_| invalid(item, Problem::BadPort(p)))
}

fn protocol(item: &str, p: i32) -> Result<Protocol, InvalidConfig> {
    match pb::Protocol::try_from(p) {
        Ok(pb::Protocol::Unspecified) => Ok(Protocol::Unspecified),
        Ok(pb::Protocol::Http) => Ok(Protocol::Http),
        Ok(pb::Protocol::Http2) => Ok(Protocol::Http2),
        Ok(pb::Protocol::Grpc) => Ok(Protocol::Grpc),
        Ok(pb::Protocol::Tcp) => Ok(Protocol::Tcp),
        Err(_) => Err(invalid(
            item,
            Problem::UnknownEnum {
                what: "protocol",
                value: p,
            },
        )),
    }
}

fn domains(list: &[String]) -> Vec<Domain> {
    list.iter()
        .map(|d| {
            let d = d.to_ascii_lowercase();
            // A domain given with a port still selects by name only.
            let d = strip_port(&d).to_owned();
            match d.strip_prefix('*') {
                Some(suffix) => Domain::Wildcard(suffix.to_owned()),
                None => Domain::Exact(d),
            }
        })
        .collect()
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn string_match(item: &str, m: &pb::StringMatch) -> Result<StringMatch, InvalidConfig> {
    use pb::string_match::Kind;
    match &m.kind {
        Some(Kind::Exact(s)) => Ok(StringMatch::Exact(s.clone())),
        Some(Kind::Prefix(s)) => Ok(StringMatch::Prefix(s.clone())),
        Some(Kind::Regex(r)) => Ok(StringMatch::Regex(
            Pattern::full(r).map_err(|e| invalid(item, e))?,
        )),
        Some(Kind::Present(_)) => Ok(StringMatch::Present),
        None => Err(invalid(item, Problem::EmptyMatch)),
    }
}

fn opt_match(
    item: &str,
    what: &str,
    m: &Option<pb::StringMatch>,
) -> Result<Option<StringMatch>, InvalidConfig> {
    match m {
        // An absent or kind-less matcher imposes no condition.
        Some(m) if m.kind.is_some() => Ok(Some(string_match(&format!("{item} {what}"), m)?)),
        _ => Ok(None),
    }
}

fn keyed_matches(
    item: &str,
    what: &str,
    map: &BTreeMap<String, pb::StringMatch>,
) -> Result<Vec<(String, StringMatch)>, InvalidConfig> {
    // Query parameter names are case-sensitive; header names are not.
    let is_query = what == "query";
    let mut out = Vec::with_capacity(map.len());
    for (k, m) in map {
        let item = format!("{item} {what} \"{k}\"");
        if !is_query && http::HeaderName::from_bytes(k.as_bytes()).is_err() {
            return Err(invalid(item, Problem::BadHeaderName(k.clone())));
        }
        let key = if is_query {
            k.clone()
        } else {
            k.to_ascii_lowercase()
        };
        out.push((key, string_match(&item, m)?));
    }
    // Deterministic order for /debug/route and /config_dump.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn route_match(item: &str, m: &pb::RouteMatch) -> Result<RouteMatch, InvalidConfig> {
    Ok(RouteMatch {
        name: m.name.clone(),
        uri: opt_match(item, "uri", &m.uri)?,
        scheme: opt_match(item, "scheme", &m.scheme)?,
        method: opt_match(item, "method", &m.method)?,
        authority: opt_match(item, "authority", &m.authority)?,
        headers: keyed_matches(item, "header", &m.headers)?,
        query_params: keyed_matches(item, "query", &m.query_params)?,
        without_headers: keyed_matches(item, "without header", &m.without_headers)?,
        ignore_uri_case: m.ignore_uri_case,
    })
}

fn header_ops(item: &str, ops: &Option<pb::HeaderOps>) -> Result<HeaderOps, InvalidConfig> {
    let Some(ops) = ops else {
        return Ok(HeaderOps::default());
    };
    let name = |n: &str| {
        http::HeaderName::from_bytes(n.as_bytes())
            .map_err(|_| invalid(item, Problem::BadHeaderName(n.to_owned())))
    };
    let value = |n: &str, v: &str| {
        http::HeaderValue::from_str(v)
            .map_err(|_| invalid(item, Problem::BadHeaderValue(n.to_owned())))
    };
    let mut out = HeaderOps::default();
    let mut set: Vec<_> = ops.set.iter().collect();
    set.sort();
    for (k, v) in set {
        out.set.push((name(k)?, value(k, v)?));
        out.summary.push(format!("set {k}: {v}"));
    }
    let mut add: Vec<_> = ops.add.iter().collect();
    add.sort();
    for (k, v) in add {
        out.add.push((name(k)?, value(k, v)?));
        out.summary.push(format!("add {k}: {v}"));
    }
    for k in &ops.remove {
        out.remove.push(name(k)?);
        out.summary.push(format!("remove {k}"));
    }
    Ok(out)
}

fn weighted(item: &str, w: &pb::WeightedClusters) -> Result<Vec<WeightedCluster>, InvalidConfig> {
    w.clusters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let item = format!("{item} destination[{i}]");
            Ok(WeightedCluster {
                cluster: c.cluster.clone(),
                weight: c.weight,
                request_headers: header_ops(
                    &format!("{item} request headers"),
                    &c.request_headers,
                )?,
                response_headers: header_ops(
                    &format!("{item} response headers"),
                    &c.response_headers,
                )?,
                authority: match non_empty(&c.authority) {
                    Some(a) if http::uri::Authority::try_from(a.as_str()).is_err() => {
                        return Err(invalid(
                            format!("{item} authority"),
                            Problem::BadHeaderValue(a),
                        ));
                    }
                    a => a,
                },
            })
        })
        .collect()
}

fn status(item: &str, s: u32, default: u16) -> Result<u16, InvalidConfig> {
    if s == 0 {
        return Ok(default);
    }
    u16::try_from(s)
        .ok()
        .filter(|s| http::StatusCode::from_u16(*s).is_ok())
        .ok_or_else(|| invalid(item, Problem::BadStatus(s)))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn action(item: &str, a: &Option<pb::route::Action>) -> Result<Action, InvalidConfig> {
    match a {
        Some(pb::route::Action::Forward(w)) => Ok(Action::Forward(weighted(item, w)?)),
        Some(pb::route::Action::Redirect(r)) => {
            let derive_port = match pb::redirect::DerivePort::try_from(r.derive_port) {
                Ok(pb::redirect::DerivePort::Unspecified) => DerivePort::Unspecified,
                Ok(pb::redirect::DerivePort::FromProtocolDefault) => {
                    DerivePort::FromProtocolDefault
                }
                Ok(pb::redirect::DerivePort::FromRequestPort) => DerivePort::FromRequestPort,
                Err(_) => {
                    return Err(invalid(
                        format!("{item} redirect"),
                        Problem::UnknownEnum {
                            what: "derive_port",
                            value: r.derive_port,
                        },
                    ));
                }
            };
            let item = format!("{item} redirect");
            Ok(Action::Redirect(Redirect {
                uri: non_empty(&r.uri),
                authority: non_empty(&r.authority),
                port: if r.port == 0 {
                    None
                } else {
                    Some(port(&item, r.port)?)
                },
                derive_port,
                scheme: non_empty(&r.scheme),
                status: status(&item, r.status, 301)?,
            }))
        }
        Some(pb::route::Action::DirectResponse(d)) => Ok(Action::DirectResponse {
            status: status(&format!("{item} direct response"), d.status, 200)?,
            body: String::from_utf8_lossy(&d.body).into_owned(),
        }),
        None => Err(invalid(item, Problem::NoAction)),
    }
}

fn rewrite(item: &str, r: &Option<pb::Rewrite>) -> Result<Rewrite, InvalidConfig> {
    let Some(r) = r else {
        return Ok(Rewrite::default());
    };
    let uri_regex = match &r.uri_regex {
        Some(rr) if !rr.pattern.is_empty() => Some(RegexRewrite {
            pattern: regex::Regex::new(&rr.pattern)
                .map_err(|e| invalid(format!("{item} rewrite uri_regex"), e))?,
            source: rr.pattern.clone(),
            substitution: rr.substitution.clone(),
        }),
        _ => None,
    };
    if let Some(a) = non_empty(&r.authority)
        && http::uri::Authority::try_from(a.as_str()).is_err()
    {
        return Err(invalid(
            format!("{item} rewrite"),
            Problem::BadHeaderValue(a),
        ));
    }
    Ok(Rewrite {
        uri: non_empty(&r.uri),
        authority: non_empty(&r.authority),
        uri_regex,
    })
}

/// A route's CORS policy, with the header values it sends joined by `,` (as
/// Istio joins them for Envoy) and checked here, so a value no header can
/// carry is refused with the config instead of failing on a request.
fn cors(item: &str, c: &pb::CorsPolicy) -> Result<CorsPolicy, InvalidConfig> {
    let allow_origins = c
        .allow_origins
        .iter()
        .enumerate()
        .map(|(i, m)| string_match(&format!("{item} cors allow_origins[{i}]"), m))
        .collect::<Result<_, _>>()?;
    let joined = |field: &str, list: &[String]| {
        if list.is_empty() {
            return Ok(None);
        }
        let value = list.join(",");
        http::HeaderValue::from_str(&value).map(Some).map_err(|_| {
            invalid(
                format!("{item} cors {field}"),
                Problem::BadHeaderValue(value),
            )
        })
    };
    let values = CorsValues {
        allow_methods: joined("allow_methods", &c.allow_methods)?,
        allow_headers: joined("allow_headers", &c.allow_headers)?,
        expose_headers: joined("expose_headers", &c.expose_headers)?,
        max_age: c.max_age_s.map(http::HeaderValue::from),
    };
    Ok(CorsPolicy {
        allow_origins,
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age_s: c.max_age_s,
        allow_credentials: c.allow_credentials,
        ignore_unmatched_preflights: c.ignore_unmatched_preflights,
        values,
    })
}

fn route(item: &str, r: &pb::Route) -> Result<Route, InvalidConfig> {
    let matches = r
        .matches
        .iter()
        .enumerate()
        .map(|(i, m)| route_match(&format!("{item} match[{i}]"), m))
        .collect::<Result<_, _>>()?;
    let cors = r.cors.as_ref().map(|c| cors(item, c)).transpose()?;
    Ok(Route {
        virtual_service: r.virtual_service.clone(),
        rule_index: r.rule_index,
        name: r.name.clone(),
        matches,
        action: action(item, &r.action)?,
        rewrite: rewrite(item, &r.rewrite)?,
        request_headers: header_ops(&format!("{item} request headers"), &r.request_headers)?,
        response_headers: header_ops(&format!("{item} response headers"), &r.response_headers)?,
        timeout_ms: r.timeout_ms,
        retries: r
            .retries
            .as_ref()
            .map(|p| resilience::retry_policy(&format!("{item} retries"), p))
            .transpose()?,
        fault: r.fault.as_ref().map(|f| Fault {
            delay_ms: f.delay_ms,
            delay_percent: f.delay_percent,
            abort_http_status: f.abort_http_status,
            abort_grpc_status: f.abort_grpc_status.clone(),
            abort_percent: f.abort_percent,
        }),
        mirrors: r
            .mirrors
            .iter()
            .map(|m| Mirror {
                cluster: m.cluster.clone(),
                percent: m.percent,
            })
            .collect(),
        cors,
    })
}

fn virtual_host(vh: &pb::VirtualHost) -> Result<VirtualHost, InvalidConfig> {
    let item = format!("virtual host {}", vh.name);
    let routes = vh
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(&format!("route {} #{i}", vh.name), r))
        .collect::<Result<_, _>>()?;
    Ok(VirtualHost {
        name: vh.name.clone(),
        port: port(&item, vh.port)?,
        domains: domains(&vh.domains),
        routes,
        service: Text::from(vh.service.as_str()),
        protocol: protocol(&item, vh.protocol)?,
    })
}

impl From<&pb::WorkloadMeta> for WorkloadMeta {
    fn from(m: &pb::WorkloadMeta) -> Self {
        WorkloadMeta {
            workload: m.workload.as_str().into(),
            namespace: m.namespace.as_str().into(),
            app: m.app.as_str().into(),
            version: m.version.as_str().into(),
            principal: m.principal.as_str().into(),
            cluster: m.cluster.as_str().into(),
        }
    }
}

fn load_balancer(item: &str, lb: &Option<pb::LoadBalancer>) -> Result<LoadBalancer, InvalidConfig> {
    let Some(lb) = lb else {
        return Ok(LoadBalancer::LeastRequest);
    };
    if let Some(key) = lb.consistent_hash.as_ref().and_then(|h| h.key.as_ref()) {
        use pb::consistent_hash::Key;
        return Ok(match key {
            Key::Header(h) => LoadBalancer::HashHeader(
                http::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| invalid(item, Problem::BadHeaderName(h.clone())))?,
            ),
            Key::Cookie(c) => LoadBalancer::HashCookie {
                name: c.name.clone(),
                path: c.path.clone(),
                ttl_ms: c.ttl_ms,
            },
            Key::SourceIp(_) => LoadBalancer::HashSourceIp,
            Key::QueryParameter(q) => LoadBalancer::HashQueryParameter(q.clone()),
        });
    }
    use pb::load_balancer::Simple;
    match Simple::try_from(lb.simple) {
        Ok(Simple::LeastRequest) => Ok(LoadBalancer::LeastRequest),
        Ok(Simple::RoundRobin) => Ok(LoadBalancer::RoundRobin),
        Ok(Simple::Random) => Ok(LoadBalancer::Random),
        Ok(Simple::Passthrough) => Ok(LoadBalancer::Passthrough),
        Err(_) => Err(invalid(
            item,
            Problem::UnknownEnum {
                what: "load balancer",
                value: lb.simple,
            },
        )),
    }
}

fn address(item: &str, a: &str) -> Result<IpAddr, InvalidConfig> {
    a.parse()
        .map_err(|_| invalid(item, Problem::BadAddress(a.to_owned())))
}

fn cluster(c: &pb::Cluster) -> Result<Cluster, InvalidConfig> {
    let item = format!("cluster {}", c.name);
    let endpoints = c
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let item = format!("{item} endpoint[{i}]");
            Ok(Endpoint {
                address: address(&item, &e.address)?,
                port: port(&item, e.port)?,
                sidecar: e.sidecar,
                mtls_disabled: e.mtls_disabled,
                inbound_port: if e.inbound_port == 0 {
                    15006
                } else {
                    port(&item, e.inbound_port)?
                },
                workload: e
                    .workload
                    .as_ref()
                    .map(WorkloadMeta::from)
                    .unwrap_or_default(),
                labels: e
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>(),
                weight: e.weight,
                in_flight: Arc::new(AtomicUsize::new(0)),
                health: Arc::default(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut pool = resilience::pool(&c.connection_pool);
    pool.limits.retry_budget = resilience::retry_budget_limit(&item, &c.retry_budget)?;
    Ok(Cluster {
        name: c.name.clone(),
        service: c.service.as_str().into(),
        subset: c.subset.clone(),
        port: port(&item, c.port)?,
        protocol: protocol(&item, c.protocol)?,
        load_balancer: load_balancer(&item, &c.load_balancer)?,
        service_namespace: c.service_namespace.as_str().into(),
        service_name: c.service_name.as_str().into(),
        pool: pool.clone(),
        outlier: resilience::outlier(&item, &c.outlier_detection)?,
        tls: security::cluster_tls(&item, c)?,
        circuit: Arc::new(crate::circuit::CircuitBreaker::new(pool.limits.clone())),
        round_robin: AtomicUsize::new(0),
        missing: c.missing,
        weights: crate::balance::Weights::of(&endpoints),
        endpoints,
    })
}

fn tcp_service(t: &pb::TcpService) -> Result<TcpService, InvalidConfig> {
    let item = format!("tcp service {}", t.name);
    Ok(TcpService {
        name: t.name.clone(),
        port: port(&item, t.port)?,
        addresses: t
            .addresses
            .iter()
            .map(|a| {
                crate::ip_block::IpBlock::parse(a)
                    .map_err(|_| invalid(&item, Problem::BadAddress(a.clone())))
            })
            .collect::<Result<_, _>>()?,
        routes: t
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(TcpRoute {
                    virtual_service: r.virtual_service.clone(),
                    rule_index: r.rule_index,
                    forward: match &r.forward {
                        Some(w) => weighted(&format!("{item} route[{i}]"), w)?,
                        None => Vec::new(),
                    },
                    idle_timeout_ms: r.idle_timeout_ms,
                    max_connection_duration_ms: r.max_connection_duration_ms,
                })
            })
            .collect::<Result<_, InvalidConfig>>()?,
        service: t.service.as_str().into(),
        domains: domains(&t.domains),
        sniffed: t.sniffed,
    })
}

impl TryFrom<&pb::ProxyConfig> for ProxyConfig {
    type Error = InvalidConfig;

    fn try_from(c: &pb::ProxyConfig) -> Result<Self, InvalidConfig> {
        let virtual_hosts = c
            .virtual_hosts
            .iter()
            .map(virtual_host)
            .collect::<Result<_, _>>()?;
        let mut clusters = Vec::with_capacity(c.clusters.len());
        let mut cluster_index = crate::fast_hash::FastMap::with_capacity_and_hasher(
            c.clusters.len(),
            Default::default(),
        );
        for pc in &c.clusters {
            if cluster_index
                .insert(pc.name.clone(), clusters.len())
                .is_some()
            {
                return Err(invalid(
                    format!("cluster {}", pc.name),
                    Problem::DuplicateCluster,
                ));
            }
            clusters.push(cluster(pc)?);
        }
        let tcp_services: Vec<TcpService> = c
            .tcp_services
            .iter()
            .map(tcp_service)
            .collect::<Result<_, _>>()?;
        let mut tcp_at_address = crate::fast_hash::FastMap::default();
        for (i, s) in tcp_services.iter().enumerate().filter(|(_, s)| !s.sniffed) {
            for ip in s.addresses.iter().filter_map(|a| a.single()) {
                tcp_at_address.entry((ip, s.port)).or_insert(i);
            }
        }
        Ok(ProxyConfig {
            virtual_hosts,
            clusters,
            tcp_services,
            tcp_at_address,
            inbound: c
                .inbound
                .as_ref()
                .map(|i| {
                    i.ports
                        .iter()
                        .map(security::inbound_port)
                        .collect::<Result<_, _>>()
                })
                .transpose()?
                .unwrap_or_default(),
            rate_limits: match &c.inbound {
                Some(i) => resilience::rate_limits(&i.rate_limits)?,
                None => Vec::new(),
            },
            self_meta: c.self_.as_ref().map(WorkloadMeta::from),
            security: security::inbound_security(&c.inbound)?,
            telemetry: telemetry::telemetry(c.telemetry.as_ref())?,
            registry_only: match c.outbound.map(|o| o.traffic_policy) {
                None => false,
                Some(p) => match pb::OutboundTrafficPolicy::try_from(p) {
                    Ok(p) => p == pb::OutboundTrafficPolicy::RegistryOnly,
                    Err(_) => {
                        return Err(invalid(
                            "outbound",
                            Problem::UnknownEnum {
                                what: "traffic policy",
                                value: p,
                            },
                        ));
                    }
                },
            },
            path_normalization: match c.outbound.map(|o| o.path_normalization) {
                None => PathNormalization::default(),
                Some(p) => match pb::PathNormalization::try_from(p) {
                    Ok(pb::PathNormalization::Base) => PathNormalization::Base,
                    Ok(pb::PathNormalization::None) => PathNormalization::None,
                    Ok(pb::PathNormalization::MergeSlashes) => PathNormalization::MergeSlashes,
                    Ok(pb::PathNormalization::DecodeAndMergeSlashes) => {
                        PathNormalization::DecodeAndMergeSlashes
                    }
                    Err(_) => {
                        return Err(invalid(
                            "outbound",
                            Problem::UnknownEnum {
                                what: "path normalization",
                                value: p,
                            },
                        ));
                    }
                },
            },
            cluster_index,
        })
    }
}

impl TryFrom<&pb::Snapshot> for Running {
    type Error = InvalidConfig;

    fn try_from(s: &pb::Snapshot) -> Result<Self, InvalidConfig> {
        let config = s
            .config
            .as_ref()
            .ok_or_else(|| invalid(format!("snapshot {}", s.version), Problem::NoConfig))?;
        Ok(Running {
            version: s.version.clone(),
            config: ProxyConfig::try_from(config)?,
        })
    }
}
