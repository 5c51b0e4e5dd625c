//! What applies to a pod or a service: the services, their VirtualService and
//! DestinationRule, and each workload's inbound policies, read from the
//! controller's index and its translation for the workload's own proxy.

use super::source::{Instance, Mesh};
use serde::Serialize;
use sluice_api::config as pb;
use sluice_control_plane::crd::{DestinationRule, PeerAuthentication, VirtualService};
use sluice_control_plane::index::MeshIndex;
use sluice_control_plane::resource::{Resource, ResourceKey, kind};
use sluice_control_plane::services::{Service, labels_match};
use sluice_control_plane::translate::{
    ProxyIdentity, binds_to_mesh, fqdn, resolve_host, rules_for_service, visible,
};
use std::collections::BTreeSet;

/// An object that applies, or that claims to and does not, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    /// Kind, namespace and name.
    pub object: ResourceKey,
    /// Why it applies (or is ignored).
    pub why: String,
}

/// One port of a service.
#[derive(Debug, Serialize)]
pub struct PortView {
    /// Service port.
    pub number: u32,
    /// Port name.
    pub name: String,
    /// Protocol as the controller selected it.
    pub protocol: String,
}

/// One endpoint of a service.
#[derive(Debug, Serialize)]
pub struct EndpointView {
    /// Address.
    pub address: String,
    /// Workload name.
    pub workload: String,
    /// `version` label, if any.
    pub version: Option<String>,
    /// Whether it runs a sidecar.
    pub sidecar: bool,
}

/// A DestinationRule subset and the endpoints its labels select.
#[derive(Debug, Serialize)]
pub struct SubsetView {
    /// Subset name.
    pub name: String,
    /// Its labels, `k=v,...`.
    pub labels: String,
    /// Endpoints of the service that carry them.
    pub endpoints: usize,
}

/// A service and the routing objects that apply to it.
#[derive(Debug, Serialize)]
pub struct ServiceView {
    /// FQDN.
    pub host: String,
    /// Namespace.
    pub namespace: String,
    /// Ports.
    pub ports: Vec<PortView>,
    /// Endpoints.
    pub endpoints: Vec<EndpointView>,
    /// The VirtualService in force for sidecars of the viewing namespace.
    pub virtual_service: Option<Applied>,
    /// Other VirtualServices naming the host, ignored.
    pub ignored_virtual_services: Vec<Applied>,
    /// The DestinationRule in force.
    pub destination_rule: Option<Applied>,
    /// Its subsets.
    pub subsets: Vec<SubsetView>,
    /// Other DestinationRules for the host, ignored.
    pub ignored_destination_rules: Vec<Applied>,
}

/// A PeerAuthentication in scope of a workload.
#[derive(Debug, Serialize)]
pub struct PeerAuthView {
    /// The object.
    pub object: ResourceKey,
    /// `mesh`, `namespace` or `workload`.
    pub level: &'static str,
    /// Its mode (`UNSET` inherits).
    pub mode: String,
    /// `portLevelMtls`, `port=MODE`.
    pub port_level: Vec<String>,
    /// Whether it decided the effective mode.
    pub decides: bool,
}

/// The mTLS mode of one inbound port.
#[derive(Debug, Serialize)]
pub struct PortMode {
    /// Application (target) port.
    pub port: u32,
    /// Effective mode.
    pub mode: String,
}

/// An AuthorizationPolicy in force for a workload.
#[derive(Debug, Serialize)]
pub struct AuthzView {
    /// The object.
    pub object: ResourceKey,
    /// ALLOW, DENY or AUDIT.
    pub action: String,
    /// `istio.io/dry-run`.
    pub dry_run: bool,
    /// Number of rules.
    pub rules: usize,
    /// Why it selects the workload.
    pub why: String,
}

/// A RequestAuthentication rule in force for a workload.
#[derive(Debug, Serialize)]
pub struct JwtView {
    /// `<namespace>/<name>` of the policy.
    pub policy: String,
    /// Issuer the rule checks (empty: any).
    pub issuer: String,
    /// Where the keys are: inline, fetched, or why there are none.
    pub keys: String,
}

/// A token bucket in force for a workload.
#[derive(Debug, Serialize)]
pub struct RateLimitView {
    /// `<namespace>/<kind>/<name>`.
    pub name: String,
    /// Bucket size.
    pub max_tokens: u32,
    /// Tokens added per fill.
    pub tokens_per_fill: u32,
    /// Fill interval.
    pub fill_interval_ms: u64,
    /// Which inbound checks it runs before.
    pub runs: &'static str,
}

/// Telemetry objects in scope and the settings in force.
#[derive(Debug, Serialize)]
pub struct TelemetryView {
    /// Objects in scope, least specific first.
    pub objects: Vec<Applied>,
    /// Tracing and access log in force, from the translated config.
    pub effective: String,
}

/// The inbound side of one workload instance.
#[derive(Debug, Serialize)]
pub struct WorkloadView {
    /// The instance.
    pub instance: Instance,
    /// PeerAuthentications in scope, mesh level first.
    pub peer_authentications: Vec<PeerAuthView>,
    /// Mode of ports not listed in `ports`.
    pub mtls: String,
    /// Mode per inbound port.
    pub ports: Vec<PortMode>,
    /// RequestAuthentication rules in force (merged).
    pub jwt_rules: Vec<JwtView>,
    /// AuthorizationPolicies in force, in evaluation order.
    pub authorization_policies: Vec<AuthzView>,
    /// Rate limits in force.
    pub rate_limits: Vec<RateLimitView>,
    /// Telemetry objects in scope.
    pub telemetry: TelemetryView,
    /// The Sidecar in force, if any.
    pub sidecar: Option<SidecarView>,
}

/// The Sidecar in force for a workload and what it leaves in scope.
#[derive(Debug, Serialize)]
pub struct SidecarView {
    /// The object.
    pub object: ResourceKey,
    /// Why it applies: `selector`, `namespace` or `root namespace`.
    pub why: &'static str,
    /// Egress listeners: `port: hosts` (`*` = every other port).
    pub egress: Vec<String>,
    /// `ALLOW_ANY` or `REGISTRY_ONLY` in force for the workload.
    pub outbound_traffic_policy: String,
    /// Services (host:port) the sidecar can reach.
    pub reachable: usize,
}

/// The proxy identity an instance's sidecar announces.
pub fn identity(i: &Instance) -> ProxyIdentity {
    ProxyIdentity {
        id: format!("{}.{}", i.name, i.namespace),
        workload: i.workload.clone(),
        namespace: i.namespace.clone(),
        service_account: i.service_account.clone(),
        labels: i.labels.clone(),
        ips: i.ips.clone(),
        trust_domain: "cluster.local".into(),
    }
}

/// A caller with no labels in `namespace`: whose view a service is described from.
pub fn generic_client(namespace: &str) -> ProxyIdentity {
    ProxyIdentity {
        id: format!("sluicectl-describe.{namespace}"),
        workload: "sluicectl-describe".into(),
        namespace: namespace.to_owned(),
        service_account: "default".into(),
        labels: Default::default(),
        ips: Vec::new(),
        trust_domain: "cluster.local".into(),
    }
}

fn key_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &'static str,
) -> ResourceKey {
    ResourceKey {
        kind,
        namespace: meta.namespace.as_deref().unwrap_or_default().into(),
        name: meta.name.as_deref().unwrap_or_default().into(),
    }
}

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// How specifically `vs` names `host` for a viewer in `viewer_ns` (None: not at all).
fn vs_score(vs: &VirtualService, host: &str, viewer_ns: &str) -> Option<usize> {
    let ns = vs.metadata.namespace.as_deref().unwrap_or_default();
    if !visible(&vs.spec.export_to, ns, viewer_ns) || !binds_to_mesh(&vs.spec.gateways) {
        return None;
    }
    vs.spec
        .hosts
        .iter()
        .filter_map(|h| resolve_host(&fqdn(h, ns), host))
        .max()
}

/// Whether `vs` would name `host` for a viewer in `viewer_ns` but binds to
/// gateways only (no `mesh`), so no sidecar takes it.
fn gateway_only_names(vs: &VirtualService, host: &str, viewer_ns: &str) -> bool {
    let ns = vs.metadata.namespace.as_deref().unwrap_or_default();
    !binds_to_mesh(&vs.spec.gateways)
        && visible(&vs.spec.export_to, ns, viewer_ns)
        && vs
            .spec
            .hosts
            .iter()
            .any(|h| resolve_host(&fqdn(h, ns), host).is_some())
}

/// The service `host` as seen by `viewer`: the objects that route it.
pub fn service_view(index: &MeshIndex, viewer: &ProxyIdentity, service: &Service) -> ServiceView {
    let (vs, dr) = rules_for_service(index, viewer, &service.fqdn);
    let dr = dr.as_deref();
    let chosen_vs = vs.map(|v| key_of(&v.metadata, kind::VIRTUAL_SERVICE));
    let chosen_score = vs.and_then(|v| vs_score(v, &service.fqdn, &viewer.namespace));
    let mut ignored_virtual_services = Vec::new();
    for r in index.of_kind(kind::VIRTUAL_SERVICE) {
        let Resource::VirtualService(other) = r else {
            continue;
        };
        let key = r.key();
        if Some(&key) == chosen_vs.as_ref() {
            continue;
        }
        if let Some(score) = vs_score(other, &service.fqdn, &viewer.namespace) {
            let why = if Some(score) == chosen_score {
                "names the same host; the first in istiod's order (private, exported to this namespace, public; then oldest) wins".to_owned()
            } else {
                "names the host less specifically".to_owned()
            };
            ignored_virtual_services.push(Applied { object: key, why });
        } else if gateway_only_names(other, &service.fqdn, &viewer.namespace) {
            let why = format!(
                "bound only to gateways ({}), not to `mesh`: Sluice runs no gateway proxy",
                other.spec.gateways.join(", ")
            );
            ignored_virtual_services.push(Applied { object: key, why });
        }
    }
    let chosen_dr = dr.map(|d| key_of(&d.metadata, kind::DESTINATION_RULE));
    let ignored_destination_rules = index
        .of_kind(kind::DESTINATION_RULE)
        .filter_map(|r| match r {
            Resource::DestinationRule(d) => Some((r.key(), d)),
            _ => None,
        })
        .filter(|(key, _)| Some(key) != chosen_dr.as_ref())
        .filter(|(key, d)| {
            resolve_host(&fqdn(&d.spec.host, &key.namespace), &service.fqdn).is_some()
        })
        .map(|(key, d)| Applied {
            why: dr_ignored_why(d, &key, viewer),
            object: key,
        })
        .collect();
    let subsets = dr
        .map(|d| {
            d.spec
                .subsets
                .iter()
                .map(|s| SubsetView {
                    name: s.name.clone(),
                    labels: labels_text(&s.labels),
                    endpoints: service
                        .endpoints
                        .iter()
                        .filter(|e| labels_match(&s.labels, &e.labels))
                        .count(),
                })
                .collect()
        })
        .unwrap_or_default();
    ServiceView {
        host: service.fqdn.clone(),
        namespace: service.namespace.clone(),
        ports: service
            .ports
            .iter()
            .map(|p| PortView {
                number: p.number,
                name: p.name.clone(),
                protocol: format!("{:?}", p.protocol).to_ascii_uppercase(),
            })
            .collect(),
        endpoints: service
            .endpoints
            .iter()
            .map(|e| EndpointView {
                address: e.address.clone(),
                workload: e.workload.clone(),
                version: e.labels.get("version").cloned(),
                sidecar: e.has_sidecar(),
            })
            .collect(),
        virtual_service: chosen_vs.map(|object| Applied {
            object,
            why: format!(
                "routes {} for sidecars in namespace {}",
                service.fqdn, viewer.namespace
            ),
        }),
        ignored_virtual_services,
        destination_rule: chosen_dr.map(|object| Applied {
            why: dr_chosen_why(&object, viewer, service),
            object,
        }),
        subsets,
        ignored_destination_rules,
    }
}

fn dr_chosen_why(key: &ResourceKey, viewer: &ProxyIdentity, service: &Service) -> String {
    let place = if *key.namespace == *viewer.namespace {
        "the caller's namespace"
    } else if *key.namespace == *service.namespace {
        "the service's namespace"
    } else {
        "another namespace"
    };
    format!("most specific host match, found in {place}")
}

fn dr_ignored_why(dr: &DestinationRule, key: &ResourceKey, viewer: &ProxyIdentity) -> String {
    if !visible(&dr.spec.export_to, &key.namespace, &viewer.namespace) {
        return format!("not exported to namespace {}", viewer.namespace);
    }
    if let Some(sel) = &dr.spec.workload_selector
        && (*key.namespace != *viewer.namespace || !labels_match(&sel.match_labels, &viewer.labels))
    {
        return "its workloadSelector does not select the caller".into();
    }
    "another DestinationRule is closer to the caller or names the host more specifically".into()
}

/// Istio's PeerAuthentication level of `pa` for a workload, if in scope.
fn pa_level(pa: &PeerAuthentication, root: &str, instance: &Instance) -> Option<&'static str> {
    let ns = pa.metadata.namespace.as_deref().unwrap_or_default();
    match &pa.spec.selector {
        None if ns == root => Some("mesh"),
        None if ns == instance.namespace => Some("namespace"),
        Some(sel)
            if ns == instance.namespace && labels_match(&sel.match_labels, &instance.labels) =>
        {
            Some("workload")
        }
        _ => None,
    }
}

fn mode_name(m: i32) -> String {
    pb::MtlsMode::try_from(m)
        .map(|m| m.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("unknown({m})"))
}

/// The inbound side of `instance`, from the config its own proxy would get.
pub fn workload_view(mesh: &Mesh, instance: &Instance, config: &pb::ProxyConfig) -> WorkloadView {
    let index = &mesh.index;
    let root = index.mesh.root_namespace.as_str();
    let inbound = config.inbound.clone().unwrap_or_default();
    let security = inbound.security.clone().unwrap_or_default();
    let deciding: BTreeSet<&str> = security.mtls_sources.iter().map(String::as_str).collect();
    let mut peer_authentications: Vec<PeerAuthView> = index
        .of_kind(kind::PEER_AUTHENTICATION)
        .filter_map(|r| match r {
            Resource::PeerAuthentication(pa) => Some((r.key(), pa)),
            _ => None,
        })
        .filter_map(|(key, pa)| {
            let level = pa_level(pa, root, instance)?;
            let full = format!("{}/{}", key.namespace, key.name);
            Some(PeerAuthView {
                decides: deciding.contains(full.as_str()),
                object: key,
                level,
                mode: pa
                    .spec
                    .mtls
                    .as_ref()
                    .and_then(|m| m.mode.clone())
                    .unwrap_or_else(|| "UNSET".into()),
                port_level: pa
                    .spec
                    .port_level_mtls
                    .iter()
                    .map(|(p, m)| format!("{}={}", p.0, m.mode.as_deref().unwrap_or("UNSET")))
                    .collect(),
            })
        })
        .collect();
    let rank = |l: &str| match l {
        "mesh" => 0,
        "namespace" => 1,
        _ => 2,
    };
    peer_authentications.sort_by_key(|p| rank(p.level));
    let mut target_ports: BTreeSet<u32> = inbound.ports.iter().map(|p| p.target_port).collect();
    target_ports.extend(security.port_mtls.keys().copied());
    let ports = target_ports
        .into_iter()
        .map(|port| PortMode {
            port,
            mode: mode_name(
                security
                    .port_mtls
                    .get(&port)
                    .copied()
                    .unwrap_or(security.mtls),
            ),
        })
        .collect();
    let authorization_policies = security
        .policies
        .iter()
        .map(|p| {
            let (namespace, name) = p.name.split_once('/').unwrap_or(("", &p.name));
            let object = ResourceKey {
                kind: kind::AUTHORIZATION_POLICY,
                namespace: namespace.into(),
                name: name.into(),
            };
            let why = authz_why(index, &object, root);
            AuthzView {
                action: pb::authorization_policy::Action::try_from(p.action)
                    .map(|a| a.as_str_name().to_owned())
                    .unwrap_or_default(),
                dry_run: p.dry_run,
                rules: p.rules.len(),
                why,
                object,
            }
        })
        .collect();
    let jwt_rules = security
        .jwt_rules
        .iter()
        .map(|r| JwtView {
            policy: r.policy.clone(),
            issuer: r.issuer.clone(),
            keys: if !r.jwks_error.is_empty() {
                // Only a running controller fetches: name where it would.
                match jwks_uri(index, &r.policy, &r.issuer) {
                    Some(uri) => format!("keys fetched by the controller from {uri}"),
                    None => format!("no keys: {}", r.jwks_error),
                }
            } else {
                let count = serde_json::from_str::<serde_json::Value>(&r.jwks)
                    .ok()
                    .and_then(|v| v.get("keys").and_then(|k| k.as_array()).map(Vec::len))
                    .unwrap_or(0);
                format!("{count} key(s)")
            },
        })
        .collect();
    let rate_limits = inbound
        .rate_limits
        .iter()
        .map(|r| RateLimitView {
            name: r.name.clone(),
            max_tokens: r.max_tokens,
            tokens_per_fill: r.tokens_per_fill,
            fill_interval_ms: r.fill_interval_ms,
            runs: match pb::RateLimitStage::try_from(r.stage) {
                Ok(pb::RateLimitStage::BeforeAuthentication) => {
                    "before authentication and authorization"
                }
                Ok(pb::RateLimitStage::BeforeAuthorization) => "before authorization",
                Ok(pb::RateLimitStage::AfterAuthorization) => "after authorization",
                Err(_) => "at an unknown stage",
            },
        })
        .collect();
    WorkloadView {
        instance: instance.clone(),
        peer_authentications,
        mtls: mode_name(security.mtls),
        ports,
        jwt_rules,
        authorization_policies,
        rate_limits,
        telemetry: telemetry_view(index, instance, config),
        sidecar: sidecar_view(index, instance, config),
    }
}

fn sidecar_view(
    index: &MeshIndex,
    instance: &Instance,
    config: &pb::ProxyConfig,
) -> Option<SidecarView> {
    let sc = sluice_control_plane::translate::sidecar_for(index, &identity(instance))?;
    let object = ResourceKey {
        kind: kind::SIDECAR,
        namespace: sc.metadata.namespace.as_deref().unwrap_or_default().into(),
        name: sc.metadata.name.as_deref().unwrap_or_default().into(),
    };
    let why = if sc.spec.workload_selector.is_some() {
        "selector"
    } else if *object.namespace == *instance.namespace {
        "namespace"
    } else {
        "root namespace"
    };
    let egress = sc
        .spec
        .egress
        .iter()
        .map(|l| {
            let port = l
                .port
                .as_ref()
                .map_or("*".to_owned(), |p| p.number.to_string());
            format!("{port}: {}", l.hosts.join(", "))
        })
        .collect();
    let policy = config
        .outbound
        .as_ref()
        .map_or(pb::OutboundTrafficPolicy::AllowAny, |o| o.traffic_policy());
    Some(SidecarView {
        object,
        why,
        egress,
        outbound_traffic_policy: policy.as_str_name().to_owned(),
        reachable: config.virtual_hosts.len() + config.tcp_services.len(),
    })
}

/// Where the controller fetches the keys of `policy`'s rule for `issuer`.
fn jwks_uri(index: &MeshIndex, policy: &str, issuer: &str) -> Option<String> {
    let (namespace, name) = policy.split_once('/')?;
    index
        .of_kind(kind::REQUEST_AUTHENTICATION)
        .find_map(|r| match r {
            Resource::RequestAuthentication(ra)
                if ra.metadata.namespace.as_deref() == Some(namespace)
                    && ra.metadata.name.as_deref() == Some(name) =>
            {
                let rule = ra.spec.jwt_rules.iter().find(|j| j.issuer == issuer)?;
                Some(match rule.jwks_uri.as_deref().filter(|u| !u.is_empty()) {
                    Some(uri) => uri.to_owned(),
                    None => format!(
                        "{}/.well-known/openid-configuration",
                        issuer.trim_end_matches('/')
                    ),
                })
            }
            _ => None,
        })
}

fn selector_text(selector: Option<&serde_json::Value>) -> Option<String> {
    let labels = selector?.get("matchLabels")?.as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn authz_why(index: &MeshIndex, key: &ResourceKey, root: &str) -> String {
    let spec = index
        .resources
        .get(key)
        .and_then(|r| serde_json::to_value(r.as_ref()).ok())
        .and_then(|v| v.get("spec").cloned());
    let scope = if *key.namespace == *root {
        "root namespace"
    } else {
        "workload's namespace"
    };
    match selector_text(spec.as_ref().and_then(|s| s.get("selector"))) {
        Some(sel) => format!("{scope}, selector {sel}"),
        None => format!("{scope}, no selector"),
    }
}

/// Istio's Telemetry scoping, as translation applies it: root namespace
/// without selector (mesh), the workload's namespace without selector, then
/// a selector in the workload's namespace.
fn telemetry_view(
    index: &MeshIndex,
    instance: &Instance,
    config: &pb::ProxyConfig,
) -> TelemetryView {
    let root = index.mesh.root_namespace.as_str();
    let objects = index
        .of_kind(kind::TELEMETRY)
        .filter_map(|r| {
            let Resource::Telemetry(t) = r else {
                return None;
            };
            let key = r.key();
            let why = match &t.spec.selector {
                None if *key.namespace == *root => "mesh-wide (root namespace)".to_owned(),
                None if *key.namespace == *instance.namespace => "the workload's namespace".into(),
                Some(sel)
                    if *key.namespace == *instance.namespace
                        && labels_match(&sel.match_labels, &instance.labels) =>
                {
                    format!("selector {}", labels_text(&sel.match_labels))
                }
                _ => return None,
            };
            Some(Applied { object: key, why })
        })
        .collect();
    let t = config.telemetry.clone().unwrap_or_default();
    let tracing = t.tracing.map(|tr| {
        format!(
            "tracing {}% to {} ({})",
            tr.sampling_percent, tr.otlp_endpoint, tr.provider
        )
    });
    let access_log = t
        .access_log
        .map(|a| format!("access log {} ({})", a.encoding().as_str_name(), a.provider));
    let effective: Vec<String> = tracing.into_iter().chain(access_log).collect();
    TelemetryView {
        objects,
        effective: if effective.is_empty() {
            "no tracing, no access log".into()
        } else {
            effective.join("; ")
        },
    }
}
