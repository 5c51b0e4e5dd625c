//! Translation: (mesh index, proxy identity) → the proxy's complete config.
//! A pure function, so it is unit-tested without I/O and serves every mode.

mod cluster;
mod delegate;
mod host;
mod http;
mod outbound;
mod policy;
mod rate_limit;
mod security;
mod sidecar;
mod telemetry;
#[cfg(test)]
mod tests;

use crate::crd::{DestinationRule, VirtualService};
use crate::index::MeshIndex;
use crate::resource::Resource;
use crate::services::{DOMAIN_SUFFIX, PortProtocol, Service, ServicePort};
use sluice_api::config as pb;
use std::collections::BTreeMap;
use std::net::IpAddr;

pub use host::resolve_host;
pub(crate) use outbound::Outbound;
pub use outbound::OutboundCache;
#[cfg(test)]
pub(crate) use outbound::SharedCluster;

/// The identity a proxy announced in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyIdentity {
    /// Unique proxy id.
    pub id: String,
    /// Workload name.
    pub workload: String,
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Workload labels.
    pub labels: BTreeMap<String, String>,
    /// Workload addresses.
    pub ips: Vec<IpAddr>,
    /// Trust domain.
    pub trust_domain: String,
}

/// A hello that cannot identify a proxy.
#[derive(Debug, thiserror::Error)]
pub enum InvalidNode {
    /// A required field is empty.
    #[error("node.{0} is required")]
    Missing(&'static str),
    /// An address does not parse.
    #[error("node.ips[{index}]: {value:?} is not an IP address")]
    BadIp {
        /// Position in the list.
        index: usize,
        /// What was sent.
        value: String,
    },
}

impl TryFrom<pb::Node> for ProxyIdentity {
    type Error = InvalidNode;

    fn try_from(node: pb::Node) -> Result<Self, InvalidNode> {
        if node.id.is_empty() {
            return Err(InvalidNode::Missing("id"));
        }
        if node.namespace.is_empty() {
            return Err(InvalidNode::Missing("namespace"));
        }
        let ips = node
            .ips
            .iter()
            .enumerate()
            .map(|(index, s)| {
                s.parse().map_err(|_| InvalidNode::BadIp {
                    index,
                    value: s.clone(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            workload: if node.workload.is_empty() {
                node.id.clone()
            } else {
                node.workload
            },
            id: node.id,
            namespace: node.namespace,
            service_account: if node.service_account.is_empty() {
                "default".into()
            } else {
                node.service_account
            },
            labels: node.labels.into_iter().collect(),
            ips,
            trust_domain: if node.trust_domain.is_empty() {
                "cluster.local".into()
            } else {
                node.trust_domain
            },
        })
    }
}

impl ProxyIdentity {
    /// SPIFFE identity of the workload.
    pub fn principal(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// Istio's `exportTo`: empty or `*` = every namespace, `.` = the object's own,
/// `~` = none, else the listed namespaces.
pub fn visible(export_to: &[String], owner_namespace: &str, viewer_namespace: &str) -> bool {
    if export_to.is_empty() {
        return true;
    }
    export_to.iter().any(|e| match e.as_str() {
        "*" => true,
        "." => owner_namespace == viewer_namespace,
        "~" => false,
        ns => ns == viewer_namespace,
    })
}

/// Where a VirtualService visible to a proxy in `viewer` stands in istiod's
/// lists: 0 private to the proxy's namespace, 1 exported to it by name, 2
/// public (no `exportTo`, or `*`).
fn vs_class(vs: &VirtualService, viewer: &str) -> u8 {
    let export_to = &vs.spec.export_to;
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return 2;
    }
    let own = namespace_of(&vs.metadata);
    let private = own == viewer && export_to.iter().any(|e| e == "." || e == own);
    if private { 0 } else { 1 }
}

/// Canonical service and revision of a workload from its labels, as Istio derives them.
pub fn canonical(labels: &BTreeMap<String, String>, fallback: &str) -> (String, String) {
    let app = [
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ]
    .iter()
    .find_map(|k| labels.get(*k))
    .cloned()
    .unwrap_or_else(|| fallback.to_owned());
    let version = [
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ]
    .iter()
    .find_map(|k| labels.get(*k))
    .cloned()
    .unwrap_or_else(|| "latest".to_owned());
    (app, version)
}

/// What translation needs from the index for one proxy.
pub(crate) struct View<'a> {
    pub index: &'a MeshIndex,
    pub proxy: &'a ProxyIdentity,
    pub services: Vec<&'a Service>,
    pub virtual_services: Vec<&'a VirtualService>,
    pub destination_rules: Vec<&'a DestinationRule>,
    /// Every PeerAuthentication, oldest first.
    pub peer_authentications: Vec<&'a crate::crd::PeerAuthentication>,
    /// What the proxy's Sidecar lets it reach (everything without one).
    pub scope: Option<sidecar::Scope>,
}

impl<'a> View<'a> {
    fn new(index: &'a MeshIndex, proxy: &'a ProxyIdentity) -> Self {
        let ns = proxy.namespace.as_str();
        // Every declaration exportTo lets the proxy see; one per host is
        // chosen below, once the Sidecar's imports are known.
        let declarations: Vec<&Service> = index
            .catalog
            .all()
            .filter(|s| visible(&s.export_to, &s.namespace, ns))
            .collect();
        let mut virtual_services: Vec<&VirtualService> = index
            .resources
            .values()
            .filter_map(|r| match r.as_ref() {
                Resource::VirtualService(vs) => Some(vs),
                _ => None,
            })
            .filter(|vs| visible(&vs.spec.export_to, namespace_of(&vs.metadata), ns))
            .filter(|vs| binds_to_mesh(&vs.spec.gateways))
            .collect();
        // Istio (`SelectVirtualServices`): when several VirtualServices claim
        // a host for sidecars, the first wins in this order: those of the
        // proxy's namespace kept to it (`exportTo` `.` or the namespace, not
        // `*`), then those exported to the proxy's namespace by name, then
        // public ones; within each, oldest first, then by name, then namespace.
        virtual_services.sort_by_key(|vs| {
            (
                vs_class(vs, ns),
                vs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                vs.metadata.name.clone(),
                vs.metadata.namespace.clone(),
            )
        });
        // Every rule: which one applies depends on where it is, what it
        // exports and its selector (`cluster::destination_rule_for`), and a
        // rule that does not apply can still hide others. In istiod's merge
        // order: rules with a selector first, then oldest, by name, by namespace.
        let mut destination_rules: Vec<&DestinationRule> = index
            .resources
            .values()
            .filter_map(|r| match r.as_ref() {
                Resource::DestinationRule(dr) => Some(dr),
                _ => None,
            })
            .collect();
        destination_rules.sort_by_key(|dr| {
            (
                dr.spec.workload_selector.is_none(),
                dr.metadata.creation_timestamp.as_ref().map(|t| t.0),
                dr.metadata.name.clone(),
                dr.metadata.namespace.clone(),
            )
        });
        // A Sidecar narrows both to what its egress listeners import.
        let scope = sidecar::sidecar_for(index, ns, &proxy.labels)
            .map(|s| sidecar::Scope::new(s, ns, &declarations, &virtual_services));
        if let Some(scope) = &scope {
            virtual_services.retain(|vs| scope.imports(vs));
        }
        let services = choose_declarations(&declarations, ns, |s| {
            scope.as_ref().is_none_or(|scope| scope.reaches_any(s))
        });
        Self {
            index,
            proxy,
            services,
            virtual_services,
            destination_rules,
            peer_authentications: security::peer_authentications(index),
            scope,
        }
    }

    /// Only what a proxy's own inbound side needs (no outbound services or
    /// routes): built for every proxy, while the full view is built once per
    /// group of alike proxies.
    fn inbound_only(index: &'a MeshIndex, proxy: &'a ProxyIdentity) -> Self {
        Self {
            index,
            proxy,
            services: Vec::new(),
            virtual_services: Vec::new(),
            destination_rules: Vec::new(),
            peer_authentications: security::peer_authentications(index),
            scope: None,
        }
    }

    /// Whether the proxy's Sidecar lets it reach `service` on `port`.
    pub fn reaches(&self, service: &Service, port: u32) -> bool {
        self.scope.as_ref().is_none_or(|s| s.reaches(service, port))
    }

    /// The protocol this proxy handles `port` of a service with: the
    /// service port's, unless the proxy's Sidecar has an egress listener on
    /// that port number with a protocol of its own.
    pub fn port_protocol(&self, port: &ServicePort) -> PortProtocol {
        self.scope
            .as_ref()
            .and_then(|s| s.port_protocol(port.number))
            .unwrap_or(port.protocol)
    }

    /// The service a (resolved) host names.
    pub fn service(&self, fqdn: &str) -> Option<&'a Service> {
        self.services.iter().copied().find(|s| s.fqdn == fqdn)
    }
}

/// One declaration per host out of `declarations` (hosts in order, each
/// host's declarations in precedence order), among those `imported`: the
/// proxy's own namespace's, else the first (see [`crate::services::choose`]).
fn choose_declarations<'a>(
    declarations: &[&'a Service],
    viewer_ns: &str,
    imported: impl Fn(&Service) -> bool,
) -> Vec<&'a Service> {
    let mut out = Vec::new();
    for same_host in declarations.chunk_by(|a, b| a.fqdn == b.fqdn) {
        let candidates = same_host.iter().copied().filter(|s| imported(s));
        if let Some(s) = crate::services::choose(candidates, viewer_ns) {
            out.push(s);
        }
    }
    out
}

/// Namespace of an object's metadata ("" when unset).
pub(crate) fn namespace_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> &str {
    meta.namespace.as_deref().unwrap_or_default()
}

/// Istio: a VirtualService with no `gateways` applies to sidecars (`mesh`);
/// one that lists gateways applies to sidecars only when `mesh` is listed.
pub fn binds_to_mesh(gateways: &[String]) -> bool {
    gateways.is_empty() || gateways.iter().any(|g| g == "mesh")
}

/// Builds the complete configuration of one proxy. The outbound part is
/// shared by every proxy with the same namespace, trust domain and values of
/// the labels some object selects by, so it is built once per revision for
/// each such group.
pub fn translate(index: &MeshIndex, proxy: &ProxyIdentity) -> pb::ProxyConfig {
    let parts = translate_parts(index, proxy);
    pb::ProxyConfig {
        virtual_hosts: parts.outbound.virtual_hosts.clone(),
        clusters: parts
            .outbound
            .clusters
            .iter()
            .map(|c| c.cluster.clone())
            .collect(),
        tcp_services: parts.outbound.tcp_services.clone(),
        inbound: Some(parts.inbound),
        self_: Some(parts.self_),
        telemetry: Some(parts.telemetry),
        outbound: Some(parts.outbound_settings),
    }
}

/// The `Sidecar` in force for `proxy` (for `sluicectl describe`).
pub fn sidecar_for<'a>(
    index: &'a MeshIndex,
    proxy: &ProxyIdentity,
) -> Option<&'a crate::crd::Sidecar> {
    sidecar::sidecar_for(index, &proxy.namespace, &proxy.labels)
}

/// The declaration of host `fqdn` that `proxy` uses, chosen exactly as
/// `translate` chooses it (for `sluicectl describe`).
pub fn service_for<'a>(
    index: &'a MeshIndex,
    proxy: &'a ProxyIdentity,
    fqdn: &str,
) -> Option<&'a Service> {
    View::new(index, proxy).service(fqdn)
}

/// The VirtualService and DestinationRule `proxy` applies to the service
/// `fqdn`, chosen exactly as `translate` chooses them (for `sluicectl describe`).
pub fn rules_for_service<'a>(
    index: &'a MeshIndex,
    proxy: &'a ProxyIdentity,
    fqdn: &str,
) -> (
    Option<&'a VirtualService>,
    Option<std::borrow::Cow<'a, DestinationRule>>,
) {
    let view = View::new(index, proxy);
    match view.service(fqdn) {
        Some(service) => (
            host::virtual_service_for(&view, service),
            cluster::destination_rule_for(&view, service),
        ),
        None => (None, None),
    }
}

/// One proxy's configuration before assembly: the outbound half as shared
/// with alike proxies (the same `Arc` for the whole group), and its own parts.
pub(crate) struct Parts {
    pub outbound: std::sync::Arc<Outbound>,
    pub inbound: pb::Inbound,
    pub self_: pb::WorkloadMeta,
    pub telemetry: pb::Telemetry,
    pub outbound_settings: pb::Outbound,
}

/// A proxy's own parts: what only it gets, beside the shared outbound half.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Own {
    pub inbound: pb::Inbound,
    pub self_: pb::WorkloadMeta,
    pub telemetry: pb::Telemetry,
    /// Mesh-wide outbound settings.
    pub outbound: pb::Outbound,
}

/// Kinds that [`translate_own`] never looks at, so a change confined to
/// them leaves every proxy's own parts as they were (see
/// `MeshIndex::own_generation`): the ones only the outbound half reads, and
/// Gateway, which no translation reads (Sluice runs no gateway proxy).
/// Keep in step with `translate_own`.
pub const OUTBOUND_ONLY_KINDS: &[&str] = &[
    crate::resource::kind::VIRTUAL_SERVICE,
    crate::resource::kind::DESTINATION_RULE,
    crate::resource::kind::GATEWAY,
];

/// What `translate` assembles, without copying the shared outbound half.
pub(crate) fn translate_parts(index: &MeshIndex, proxy: &ProxyIdentity) -> Parts {
    let own = translate_own(index, proxy);
    Parts {
        outbound: translate_outbound(index, proxy),
        inbound: own.inbound,
        self_: own.self_,
        telemetry: own.telemetry,
        outbound_settings: own.outbound,
    }
}

/// The outbound half of `proxy`'s config, shared by its group for the revision.
pub(crate) fn translate_outbound(
    index: &MeshIndex,
    proxy: &ProxyIdentity,
) -> std::sync::Arc<Outbound> {
    index.outbound_cache.get_or_build(
        (
            proxy.namespace.clone(),
            proxy
                .labels
                .iter()
                .filter(|(k, _)| index.selecting_label_keys.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            proxy.trust_domain.clone(),
        ),
        |earlier| outbound::build(&View::new(index, proxy), earlier),
    )
}

/// `proxy`'s own parts. Reads the service catalog, PeerAuthentications,
/// AuthorizationPolicies, EnvoyFilters, RateLimitPolicies, Telemetry and the
/// mesh config, never a kind of [`OUTBOUND_ONLY_KINDS`].
pub(crate) fn translate_own(index: &MeshIndex, proxy: &ProxyIdentity) -> Own {
    let view = View::inbound_only(index, proxy);
    let (app, version) = canonical(&proxy.labels, &proxy.workload);
    let sidecar = sidecar::sidecar_for(index, &proxy.namespace, &proxy.labels);
    Own {
        inbound: inbound(&view, sidecar),
        self_: pb::WorkloadMeta {
            workload: proxy.workload.clone(),
            namespace: proxy.namespace.clone(),
            app,
            version,
            principal: proxy.principal(),
            cluster: "Kubernetes".into(),
        },
        telemetry: telemetry::for_proxy(index, proxy),
        outbound: pb::Outbound {
            traffic_policy: if registry_only(index, sidecar) {
                pb::OutboundTrafficPolicy::RegistryOnly as i32
            } else {
                pb::OutboundTrafficPolicy::AllowAny as i32
            },
            path_normalization: index.mesh.path_normalization as i32,
        },
    }
}

/// Whether traffic for hosts outside a proxy's scope is refused: its
/// Sidecar's `outboundTrafficPolicy` when set (an unset mode is
/// `REGISTRY_ONLY`, the proto default), else the mesh config's.
fn registry_only(index: &MeshIndex, sidecar: Option<&crate::crd::Sidecar>) -> bool {
    match sidecar.and_then(|s| s.spec.outbound_traffic_policy.as_ref()) {
        Some(policy) => policy.mode.as_deref() != Some("ALLOW_ANY"),
        None => index.mesh.registry_only,
    }
}

/// Wire protocol of a port.
pub(crate) fn protocol(p: PortProtocol) -> pb::Protocol {
    match p {
        PortProtocol::Http => pb::Protocol::Http,
        PortProtocol::Http2 => pb::Protocol::Http2,
        PortProtocol::Grpc => pb::Protocol::Grpc,
        PortProtocol::Tcp => pb::Protocol::Tcp,
        PortProtocol::Unspecified => pb::Protocol::Unspecified,
    }
}

/// The services this proxy's workload serves: those whose endpoints include
/// one of its addresses (or, with no address match, whose selector labels it carries),
/// with the ports its Sidecar's ingress listeners change.
fn inbound(view: &View<'_>, sidecar: Option<&crate::crd::Sidecar>) -> pb::Inbound {
    let proxy = view.proxy;
    let mut ports = Vec::new();
    // A service counts once, through its first endpoint at one of the
    // proxy's addresses (in its namespace).
    let mut seen = std::collections::BTreeSet::new();
    let mine = proxy
        .ips
        .iter()
        .flat_map(|ip| view.index.catalog.endpoints_at(ip))
        .filter(|(_, e)| e.namespace == proxy.namespace);
    for (service, endpoint) in mine {
        if !seen.insert(service.fqdn.as_str()) {
            continue;
        }
        for port in &service.ports {
            ports.push(pb::InboundPort {
                target_port: endpoint.target_port(port),
                service_port: port.number,
                protocol: protocol(port.protocol) as i32,
                service: service.fqdn.clone(),
                service_name: service.short_name.clone(),
                service_namespace: service.namespace.clone(),
                app_port: 0,
            });
        }
    }
    if let Some(sc) = sidecar {
        sidecar::apply_ingress(sc, &mut ports);
    }
    ports.sort_by(|a, b| (a.target_port, &a.service).cmp(&(b.target_port, &b.service)));
    let rate_limits = rate_limit::inbound_rate_limits(view, &ports);
    pb::Inbound {
        ports,
        rate_limits,
        security: Some(security::inbound_security(view)),
    }
}

/// Expands a host written in an object of `namespace`: short names (no dot)
/// become `<name>.<namespace>.svc.cluster.local`, as Istio resolves them.
pub fn fqdn(host: &str, namespace: &str) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') || host.starts_with('*') {
        host
    } else {
        format!("{host}.{namespace}.{DOMAIN_SUFFIX}")
    }
}
