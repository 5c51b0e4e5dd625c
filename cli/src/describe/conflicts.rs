//! Conflicts and likely mistakes among the objects that apply: duplicate
//! VirtualServices, subsets that select nothing or are not defined, TLS
//! settings that contradict PeerAuthentication, workloads without a sidecar.

use super::report::{ServiceView, WorkloadView};
use sluice_control_plane::crd::{ClientTlsSettings, DestinationRule, TrafficPolicy};
use sluice_control_plane::index::MeshIndex;
use sluice_control_plane::resource::Resource;
use sluice_control_plane::translate::{ProxyIdentity, fqdn, rules_for_service};

/// Warnings about one service as `viewer` sees it.
pub fn service_warnings(
    index: &MeshIndex,
    viewer: &ProxyIdentity,
    service: &ServiceView,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(vs) = &service.virtual_service {
        for other in &service.ignored_virtual_services {
            if other.why.starts_with("names the same host") {
                out.push(format!(
                    "{} and {} both name host {} for sidecars in namespace {}: only {} is used (oldest first, then by namespace and name)",
                    vs.object, other.object, service.host, viewer.namespace, vs.object.name
                ));
            }
        }
        if let Some(Resource::VirtualService(spec)) =
            index.resources.get(&vs.object).map(|r| r.as_ref())
        {
            out.extend(undefined_subsets(
                index,
                viewer,
                &vs.object.to_string(),
                &vs.object.namespace,
                spec,
            ));
        }
    }
    if let Some(dr) = &service.destination_rule {
        for s in service.subsets.iter().filter(|s| s.endpoints == 0) {
            out.push(format!(
                "{} subset {:?} ({}) matches no endpoint of {}: traffic routed to it fails (503)",
                dr.object, s.name, s.labels, service.host
            ));
        }
    }
    out
}

/// VirtualService destinations naming a subset no DestinationRule (as the
/// caller sees them) defines.
fn undefined_subsets(
    index: &MeshIndex,
    viewer: &ProxyIdentity,
    name: &str,
    namespace: &str,
    vs: &sluice_control_plane::crd::VirtualService,
) -> Vec<String> {
    let http = vs
        .spec
        .http
        .iter()
        .flat_map(|h| h.route.iter().map(|r| &r.destination));
    let tcp = vs
        .spec
        .tcp
        .iter()
        .flat_map(|t| t.route.iter().map(|r| &r.destination));
    let tls = vs
        .spec
        .tls
        .iter()
        .flat_map(|t| t.route.iter().map(|r| &r.destination));
    let mut out = Vec::new();
    for dest in http.chain(tcp).chain(tls) {
        let Some(subset) = &dest.subset else {
            continue;
        };
        let host = fqdn(&dest.host, namespace);
        let (_, dr) = rules_for_service(index, viewer, &host);
        let dr = dr.as_deref();
        let defined = dr.is_some_and(|d| d.spec.subsets.iter().any(|s| &s.name == subset));
        if !defined {
            let why = match dr {
                Some(d) => format!(
                    "DestinationRule {}/{} has no such subset",
                    d.metadata.namespace.as_deref().unwrap_or_default(),
                    d.metadata.name.as_deref().unwrap_or_default()
                ),
                None => "no DestinationRule applies to that host".into(),
            };
            let line = format!(
                "{name} routes to subset {subset:?} of {host}, which no DestinationRule defines ({why}): those requests get 503"
            );
            if !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// Where a DestinationRule turns TLS off: `trafficPolicy`, a port, a subset.
fn tls_disabled_at(dr: &DestinationRule) -> Vec<String> {
    let off = |t: &Option<ClientTlsSettings>| {
        t.as_ref().and_then(|t| t.mode.as_deref()) == Some("DISABLE")
    };
    let mut at = Vec::new();
    let mut policy = |p: &TrafficPolicy, prefix: &str| {
        if off(&p.tls) {
            at.push(format!("{prefix}trafficPolicy.tls"));
        }
        for pl in &p.port_level_settings {
            if off(&pl.tls) {
                let port = pl.port.as_ref().map(|p| p.number).unwrap_or_default();
                at.push(format!("{prefix}trafficPolicy port {port} tls"));
            }
        }
    };
    if let Some(p) = &dr.spec.traffic_policy {
        policy(p, "");
    }
    for s in &dr.spec.subsets {
        if let Some(p) = &s.traffic_policy {
            policy(p, &format!("subset {} ", s.name));
        }
    }
    at
}

/// DestinationRule `tls.mode: DISABLE` towards workloads whose
/// PeerAuthentication is STRICT: the sidecar sends plaintext, the server refuses it.
pub fn tls_conflicts(
    index: &MeshIndex,
    service: &ServiceView,
    workloads: &[WorkloadView],
) -> Vec<String> {
    let Some(dr) = &service.destination_rule else {
        return Vec::new();
    };
    let Some(Resource::DestinationRule(spec)) = index.resources.get(&dr.object).map(|r| r.as_ref())
    else {
        return Vec::new();
    };
    let at = tls_disabled_at(spec);
    if at.is_empty() {
        return Vec::new();
    }
    let addresses: Vec<&str> = service
        .endpoints
        .iter()
        .map(|e| e.address.as_str())
        .collect();
    let mut out = Vec::new();
    for w in workloads {
        let serves = w
            .instance
            .ips
            .iter()
            .any(|ip| addresses.contains(&ip.to_string().as_str()));
        if !serves || !w.instance.sidecar {
            continue;
        }
        let strict: Vec<String> = w
            .ports
            .iter()
            .filter(|p| p.mode == "STRICT")
            .map(|p| p.port.to_string())
            .collect();
        let all_strict = w.mtls == "STRICT" && w.ports.is_empty();
        if strict.is_empty() && !all_strict {
            continue;
        }
        let ports = if strict.is_empty() {
            "every port".to_owned()
        } else {
            format!("port {}", strict.join(", "))
        };
        out.push(format!(
            "{} disables TLS ({}) but PeerAuthentication makes {} STRICT on {ports}: its sidecar refuses that plaintext",
            dr.object,
            at.join(", "),
            w.instance.name
        ));
    }
    out
}

/// Warnings about one workload's own inbound side.
pub fn workload_warnings(w: &WorkloadView) -> Vec<String> {
    let mut out = Vec::new();
    if !w.instance.sidecar {
        out.push(format!(
            "{} {}/{} has no sidecar: PeerAuthentication, AuthorizationPolicy and rate limits are not enforced on it",
            w.instance.kind, w.instance.namespace, w.instance.name
        ));
    }
    for ap in &w.authorization_policies {
        if ap.action == "ALLOW" && ap.rules == 0 && !ap.dry_run {
            out.push(format!(
                "{} is ALLOW with no rules: it allows nothing, so every request to {} is denied unless another ALLOW matches",
                ap.object, w.instance.name
            ));
        }
    }
    if w.instance.ips.is_empty() {
        out.push(format!(
            "{} has no address yet: no service counts it as an endpoint",
            w.instance.name
        ));
    }
    out
}

/// Warnings about the mesh as a whole: refused objects, unreadable kinds.
pub fn mesh_warnings(index: &MeshIndex, unreadable: &[String]) -> Vec<String> {
    let mut out: Vec<String> = unreadable
        .iter()
        .map(|u| format!("not read: {u}"))
        .collect();
    for r in index.rejected.iter().take(5) {
        out.push(format!(
            "refused by validation, not applied: {}{}",
            r.object
                .as_deref()
                .map(|o| format!("{o}: "))
                .unwrap_or_default(),
            r.message
        ));
    }
    if index.rejected.len() > 5 {
        out.push(format!(
            "... and {} more refused (sluicectl analyze shows all)",
            index.rejected.len() - 5
        ));
    }
    out
}
