//! The proxy's own, validated view of a controller snapshot: compiled regexes,
//! typed matchers and indexes. Built from the prost types by `convert`.

mod convert;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use serde::{Serialize, Serializer};

use crate::circuit::{CircuitBreaker, Limits};
use crate::outlier::{EndpointHealth, OutlierDetector};
use crate::rate_limit::RateLimit;
use crate::retry::RetryOn;
use crate::retry_budget::RetryBudget;

pub use convert::strip_port;

/// A cheaply clonable, immutable string (metrics labels, names).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text(Arc<str>);

impl Text {
    /// The string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Arc::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Arc::from(s))
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A compiled regular expression anchored to match whole values.
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    anchored: regex::Regex,
}

impl Pattern {
    /// Compiles `source` so that it must match the entire input (RE2 full match).
    pub fn full(source: &str) -> Result<Self, regex::Error> {
        // Validate the expression as written so errors quote the user's text.
        regex::Regex::new(source)?;
        let anchored = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Pattern {
            source: source.to_owned(),
            anchored,
        })
    }

    /// Whether the whole of `value` matches.
    pub fn is_full_match(&self, value: &str) -> bool {
        self.anchored.is_match(value)
    }

    /// The expression as configured.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Application protocol of a port or cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Protocol {
    /// Detect from the first bytes.
    Unspecified,
    Http,
    Http2,
    Grpc,
    Tcp,
}

impl Protocol {
    /// Whether requests to this upstream go as HTTP/2.
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }
}

impl Cluster {
    /// Whether a request that arrived as `downstream` goes to this cluster's
    /// endpoints as HTTP/2, as Istio programs its clusters: `useClientProtocol`
    /// keeps the caller's version whatever else is set (Istio applies it
    /// last); otherwise ports declared `HTTP2`/`GRPC` always do,
    /// `h2UpgradePolicy: UPGRADE` upgrades the rest, ports of unknown protocol
    /// (sniffed) keep the caller's version, and everything else is HTTP/1.1
    /// (Istio's default `DO_NOT_UPGRADE`, also between sidecars).
    pub fn upstream_h2(&self, downstream: http::Version) -> bool {
        let client_h2 = downstream == http::Version::HTTP_2;
        if self.pool.use_client_protocol {
            return client_h2;
        }
        if self.protocol.is_h2() || self.pool.h2_upgrade {
            return true;
        }
        self.protocol == Protocol::Unspecified && client_h2
    }
}

/// Istio standard-metrics labels of a workload.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadMeta {
    pub workload: Text,
    pub namespace: Text,
    pub app: Text,
    pub version: Text,
    pub principal: Text,
    pub cluster: Text,
}

/// The complete running configuration of this proxy.
#[derive(Debug, Serialize)]
pub struct ProxyConfig {
    pub virtual_hosts: Vec<VirtualHost>,
    pub clusters: Vec<Cluster>,
    pub tcp_services: Vec<TcpService>,
    pub inbound: Vec<InboundPort>,
    pub rate_limits: Vec<RateLimit>,
    #[serde(rename = "self")]
    pub self_meta: Option<WorkloadMeta>,
    /// Tracing and access logging, swapped with the rest of the config.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// MeshConfig `outboundTrafficPolicy: REGISTRY_ONLY`: captured traffic
    /// for destinations no service covers is refused (502 / closed) instead
    /// of passed through to its original destination.
    pub registry_only: bool,
    /// MeshConfig `pathNormalization`: how request paths are normalized on
    /// both listeners before routing and authorization.
    pub path_normalization: crate::path_normalization::PathNormalization,
    /// PeerAuthentication modes and AuthorizationPolicies of the inbound side.
    #[serde(skip)]
    pub security: crate::authz::InboundPolicy,
    #[serde(skip)]
    pub cluster_index: crate::fast_hash::FastMap<String, usize>,
    /// TCP services by one of their single addresses and port (the first
    /// declaring it), for ports not sniffed: `tcp::service_at_address`.
    #[serde(skip)]
    pub tcp_at_address: crate::fast_hash::FastMap<(std::net::IpAddr, u16), usize>,
}

impl ProxyConfig {
    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.cluster_index
            .get(name)
            .and_then(|i| self.clusters.get(*i))
    }

    /// Takes over load-balancer state (in-flight counts, round-robin position) of
    /// clusters and endpoints that survive from `prev`, so a config push does not
    /// make least-request forget which endpoints are busy.
    pub fn inherit_balancer_state(&mut self, prev: &ProxyConfig) {
        use std::sync::atomic::Ordering;
        for cluster in &mut self.clusters {
            let Some(old) = prev.cluster(&cluster.name) else {
                continue;
            };
            let rr = old.round_robin.load(Ordering::Relaxed);
            cluster.round_robin.store(rr, Ordering::Relaxed);
            // Requests in flight on the old config still hold the old limits' units.
            if cluster.pool.limits == old.pool.limits {
                cluster.circuit = Arc::clone(&old.circuit);
            }
            for ep in &mut cluster.endpoints {
                let same = |o: &&Endpoint| o.address == ep.address && o.port == ep.port;
                if let Some(o) = old.endpoints.iter().find(same) {
                    ep.in_flight = Arc::clone(&o.in_flight);
                    ep.health = Arc::clone(&o.health);
                }
            }
        }
        for (i, limit) in self.rate_limits.iter_mut().enumerate() {
            // Same position first: names can repeat within one EnvoyFilter.
            let old = prev
                .rate_limits
                .get(i)
                .filter(|o| o.name == limit.name)
                .or_else(|| prev.rate_limits.iter().find(|o| o.name == limit.name));
            if let Some(old) = old {
                limit.inherit(old);
            }
        }
    }
}

/// A domain a virtual host answers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Exact, lower-case name.
    Exact(String),
    /// `*.suffix`: stores `.suffix` (lower-case); `*` alone stores "".
    Wildcard(String),
}

/// An ordered route table for a set of domains on one port.
#[derive(Debug, Serialize)]
pub struct VirtualHost {
    pub name: String,
    pub port: u16,
    pub domains: Vec<Domain>,
    pub routes: Vec<Route>,
    pub service: Text,
    pub protocol: Protocol,
}

/// One HTTP route: alternatives of matches and an action.
#[derive(Debug, Serialize)]
pub struct Route {
    pub virtual_service: String,
    pub rule_index: u32,
    pub name: String,
    pub matches: Vec<RouteMatch>,
    pub action: Action,
    pub rewrite: Rewrite,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    pub timeout_ms: u64,
    pub retries: Option<RetryPolicy>,
    pub fault: Option<Fault>,
    pub mirrors: Vec<Mirror>,
    pub cors: Option<CorsPolicy>,
}

impl Route {
    /// A human name for the route: `ns/vs http[i] "name"`, or "default".
    pub fn describe(&self) -> String {
        let mut out = if self.virtual_service.is_empty() {
            "default route".to_owned()
        } else {
            format!("{} http[{}]", self.virtual_service, self.rule_index)
        };
        if !self.name.is_empty() {
            out.push_str(&format!(" \"{}\"", self.name));
        }
        out
    }
}

/// A string matcher.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(Pattern),
    Present,
}

/// One alternative of a route's match conditions; all fields must hold.
#[derive(Debug, Default, Serialize)]
pub struct RouteMatch {
    pub name: String,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: Vec<(String, StringMatch)>,
    pub query_params: Vec<(String, StringMatch)>,
    pub without_headers: Vec<(String, StringMatch)>,
    pub ignore_uri_case: bool,
}

/// What a route does with a matched request.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Forward(Vec<WeightedCluster>),
    Redirect(Redirect),
    DirectResponse { status: u16, body: String },
}

/// A weighted destination of a route.
#[derive(Debug, Serialize)]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// Authority this destination rewrites to (a `host` set in its request
    /// headers), when the route rewrites none.
    pub authority: Option<String>,
}

/// Header manipulation: remove, then set, then add.
#[derive(Debug, Default, Serialize)]
pub struct HeaderOps {
    #[serde(skip)]
    pub set: Vec<(http::HeaderName, http::HeaderValue)>,
    #[serde(skip)]
    pub add: Vec<(http::HeaderName, http::HeaderValue)>,
    #[serde(skip)]
    pub remove: Vec<http::HeaderName>,
    /// Printable form for `/config_dump`.
    pub summary: Vec<String>,
}

impl HeaderOps {
    /// Applies the operations to `headers`.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// Request rewrite applied before forwarding.
#[derive(Debug, Default, Serialize)]
pub struct Rewrite {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub uri_regex: Option<RegexRewrite>,
}

/// `uriRegexRewrite`.
#[derive(Debug, Serialize)]
pub struct RegexRewrite {
    #[serde(skip)]
    pub pattern: regex::Regex,
    pub source: String,
    pub substitution: String,
}

/// How the redirect port is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DerivePort {
    Unspecified,
    FromProtocolDefault,
    FromRequestPort,
}

/// An HTTP redirect.
#[derive(Debug, Serialize)]
pub struct Redirect {
    pub uri: Option<String>,
    pub authority: Option<String>,
    pub port: Option<u16>,
    pub derive_port: DerivePort,
    pub scheme: Option<String>,
    pub status: u16,
}

/// A route's retry policy.
#[derive(Clone, Debug, Serialize)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub attempts: u32,
    pub per_try_timeout_ms: u64,
    pub retry_on: String,
    pub on: RetryOn,
    pub retry_remote_localities: bool,
    pub retry_ignore_previous_hosts: bool,
    pub is_default: bool,
    pub backoff_base_ms: u64,
    /// `(percent, min_retries_per_second)` of the budget, for `/config_dump`.
    pub budget_config: Option<(f64, u32)>,
    #[serde(skip)]
    pub budget: Option<Arc<RetryBudget>>,
}

/// Fault injection (carried for the resilience layer).
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub delay_ms: u64,
    pub delay_percent: f64,
    pub abort_http_status: u32,
    pub abort_grpc_status: String,
    pub abort_percent: f64,
}

/// Traffic mirroring (carried for the resilience layer).
#[derive(Clone, Debug, Serialize)]
pub struct Mirror {
    pub cluster: String,
    pub percent: f64,
}

/// A route's CORS policy (VirtualService `corsPolicy`; see [`crate::cors`]).
#[derive(Debug, Serialize)]
pub struct CorsPolicy {
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_s: Option<u64>,
    pub allow_credentials: bool,
    pub ignore_unmatched_preflights: bool,
    /// The header values sent, joined and checked once when the config is applied.
    #[serde(skip)]
    pub values: CorsValues,
}

/// Header values of a [`CorsPolicy`] (absent when its list is empty).
#[derive(Debug, Default)]
pub struct CorsValues {
    pub allow_methods: Option<http::HeaderValue>,
    pub allow_headers: Option<http::HeaderValue>,
    pub expose_headers: Option<http::HeaderValue>,
    pub max_age: Option<http::HeaderValue>,
}

fn header_name<S: Serializer>(name: &http::HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_str())
}

/// How a cluster picks an endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    LeastRequest,
    RoundRobin,
    Random,
    Passthrough,
    HashHeader(#[serde(serialize_with = "header_name")] http::HeaderName),
    HashCookie {
        name: String,
        path: String,
        ttl_ms: u64,
    },
    HashSourceIp,
    HashQueryParameter(String),
}

/// An upstream: a service port, possibly narrowed to a subset.
#[derive(Debug, Serialize)]
pub struct Cluster {
    pub name: String,
    pub service: Text,
    pub subset: String,
    pub port: u16,
    pub protocol: Protocol,
    pub load_balancer: LoadBalancer,
    pub endpoints: Vec<Endpoint>,
    pub service_namespace: Text,
    pub service_name: Text,
    pub pool: PoolSettings,
    pub outlier: Option<OutlierDetector>,
    /// How connections to the endpoints are secured.
    pub tls: ClusterTls,
    #[serde(skip)]
    pub circuit: Arc<CircuitBreaker>,
    #[serde(skip)]
    pub round_robin: AtomicUsize,
    /// A cluster Istio would not have (see the config protocol): 503 `NC`.
    pub missing: bool,
    /// The endpoints' load-balancing weights when they differ; `None` when
    /// all are equal (every balancer then treats endpoints alike).
    #[serde(skip)]
    pub weights: Option<crate::balance::Weights>,
}

/// Client-side TLS mode of a cluster (DestinationRule `trafficPolicy.tls`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    /// Mesh mTLS to endpoints with a sidecar when this proxy has a certificate.
    #[default]
    Auto,
    Disable,
    IstioMutual,
    Simple,
    Mutual,
}

/// A cluster's client-side TLS settings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterTls {
    pub mode: TlsMode,
    /// Server identities accepted (SPIFFE ids without "spiffe://", or DNS/URI
    /// SANs for SIMPLE / MUTUAL); empty = any the roots vouch for.
    #[serde(serialize_with = "shared_list")]
    pub subject_alt_names: Arc<[String]>,
    /// SIMPLE / MUTUAL origination, prepared once per config.
    #[serde(skip)]
    pub origination: Option<Arc<crate::tls::Origination>>,
    /// SNI sent to peer sidecars (Istio's `outbound_.<port>_.<subset>_.<host>`).
    #[serde(serialize_with = "shared_str")]
    pub mesh_sni: Option<Arc<str>>,
}

fn shared_str<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&**v),
        None => s.serialize_none(),
    }
}

fn shared_list<S: Serializer>(list: &Arc<[String]>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(list.iter())
}

/// DestinationRule `connectionPool` in force for a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolSettings {
    pub limits: Limits,
    /// 0 = the proxy's `--connect-timeout`.
    pub connect_timeout_ms: u64,
    /// 0 = unlimited.
    pub max_requests_per_connection: u32,
    /// Of pooled HTTP connections: 0 = 1 h.
    pub idle_timeout_ms: u64,
    /// 0 = unlimited.
    pub max_connection_duration_ms: u64,
    /// `(probes, time_ms, interval_ms)`.
    pub tcp_keepalive: Option<(u32, u64, u64)>,
    /// `h2UpgradePolicy` in force is `UPGRADE` (the controller has applied
    /// MeshConfig's default): HTTP/1.1 requests go upstream as HTTP/2.
    pub h2_upgrade: bool,
    /// `useClientProtocol`: requests go upstream in the protocol they came in.
    pub use_client_protocol: bool,
}

/// One upstream instance.
#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
    pub sidecar: bool,
    /// The workload's PeerAuthentication disables mTLS here: auto mTLS stays plaintext.
    pub mtls_disabled: bool,
    pub inbound_port: u16,
    pub workload: WorkloadMeta,
    pub labels: std::collections::BTreeMap<String, String>,
    pub weight: u32,
    /// Requests in flight, for least-request balancing.
    #[serde(skip)]
    pub in_flight: Arc<AtomicUsize>,
    /// Outlier detection state, kept across config pushes.
    #[serde(skip)]
    pub health: Arc<EndpointHealth>,
}

/// An outbound TCP service.
#[derive(Debug, Serialize)]
pub struct TcpService {
    pub name: String,
    pub port: u16,
    /// ServiceEntry `addresses`: IPs or CIDR ranges.
    pub addresses: Vec<crate::ip_block::IpBlock>,
    pub routes: Vec<TcpRoute>,
    pub service: Text,
    pub domains: Vec<Domain>,
    /// A port of no declared protocol: HTTP on it goes to the virtual host,
    /// only other bytes here (see the config protocol).
    pub sniffed: bool,
}

/// A weighted TCP route.
#[derive(Debug, Serialize)]
pub struct TcpRoute {
    pub virtual_service: String,
    pub rule_index: u32,
    pub forward: Vec<WeightedCluster>,
    /// DestinationRule `connectionPool.tcp.idleTimeout`: `None` = 1 h
    /// (Envoy's default), 0 = never.
    pub idle_timeout_ms: Option<u64>,
    /// `tcp.maxConnectionDuration`; 0 = unlimited.
    pub max_connection_duration_ms: u64,
}

/// A port of the local application reachable through the inbound listener.
#[derive(Debug, Serialize)]
pub struct InboundPort {
    pub target_port: u16,
    /// Where the app listens for this port (`target_port` unless a Sidecar
    /// ingress listener names another).
    pub app_port: u16,
    pub service_port: u16,
    pub protocol: Protocol,
    pub service: Text,
    pub service_name: Text,
    pub service_namespace: Text,
}

/// A configuration that is running, with its version.
#[derive(Debug, Serialize)]
pub struct Running {
    pub version: String,
    pub config: ProxyConfig,
}
