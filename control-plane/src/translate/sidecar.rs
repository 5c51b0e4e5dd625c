//! The `Sidecar` that applies to a proxy, and the scope of services and
//! VirtualServices its egress listeners import (Istio's `SidecarScope`).

use super::{fqdn, namespace_of};
use crate::crd::Sidecar;
use crate::crd::VirtualService;
use crate::index::MeshIndex;
use crate::resource::Resource;
use crate::services::{PortProtocol, Service, labels_match};
use crate::validation::host_subset_of;
use sluice_api::config as pb;
use std::collections::{BTreeMap, BTreeSet};

/// The Sidecar in force for a workload of `namespace` with `labels`:
/// the oldest of its namespace whose selector matches, else the oldest of
/// its namespace without a selector, else the oldest selector-less one of
/// the root namespace (the mesh default).
pub(crate) fn sidecar_for<'a>(
    index: &'a MeshIndex,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Option<&'a Sidecar> {
    // The oldest of those `pick` accepts, by (creation, name) as istiod
    // orders them; no allocation, as this runs for every proxy.
    let oldest = |pick: &dyn Fn(&Sidecar) -> bool| {
        index
            .of_kind(crate::resource::kind::SIDECAR)
            .filter_map(|r| match r {
                Resource::Sidecar(s) => Some(s),
                _ => None,
            })
            .filter(|s| pick(s))
            .min_by(|a, b| {
                let key = |s: &'a Sidecar| {
                    (
                        s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        s.metadata.name.as_deref(),
                    )
                };
                key(a).cmp(&key(b))
            })
    };
    oldest(&|s| {
        namespace_of(&s.metadata) == namespace
            && s.spec
                .workload_selector
                .as_ref()
                .is_some_and(|sel| labels_match(&sel.labels, labels))
    })
    .or_else(|| {
        oldest(&|s| namespace_of(&s.metadata) == namespace && s.spec.workload_selector.is_none())
    })
    .or_else(|| {
        let root = index.mesh.root_namespace.as_str();
        oldest(&|s| namespace_of(&s.metadata) == root && s.spec.workload_selector.is_none())
    })
}

/// One `namespace/dnsName` entry of an egress listener.
#[derive(Debug)]
struct Import {
    /// `None`: any namespace (`*`); `Some("")`: none (`~`).
    namespace: Option<String>,
    /// `*`, a wildcard or a full name.
    host: String,
}

impl Import {
    fn parse(entry: &str, config_ns: &str) -> Option<Self> {
        let (ns, host) = entry.split_once('/')?;
        let namespace = match ns {
            "*" => None,
            "." => Some(config_ns.to_owned()),
            "~" => Some(String::new()),
            ns => Some(ns.to_owned()),
        };
        Some(Self {
            namespace,
            host: host.to_ascii_lowercase(),
        })
    }

    fn namespace_matches(&self, ns: &str) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|want| !want.is_empty() && want == ns)
    }
}

/// The services (by name) one egress listener makes reachable.
#[derive(Debug)]
struct Listener {
    /// `None`: every port no other listener names.
    port: Option<u32>,
    /// The listener port's protocol: how traffic to that port is handled,
    /// whatever the services' ports declare.
    protocol: Option<PortProtocol>,
    imports: Vec<Import>,
    /// Declarations (host → namespaces) imported by name, or as
    /// destinations of imported VirtualServices.
    services: BTreeMap<String, BTreeSet<String>>,
}

/// What a proxy with a Sidecar can reach on its outbound side.
#[derive(Debug)]
pub(crate) struct Scope {
    listeners: Vec<Listener>,
}

impl Scope {
    /// The scope of `sidecar` for a proxy of `config_ns`, over the service
    /// declarations (hosts in order, each host's declarations in precedence
    /// order) and VirtualServices the proxy may see (`exportTo` already applied).
    /// A Sidecar without egress listeners imports everything (`*/*`).
    pub fn new(
        sidecar: &Sidecar,
        config_ns: &str,
        services: &[&Service],
        virtual_services: &[&VirtualService],
    ) -> Self {
        type Egress = (Option<u32>, Option<PortProtocol>, Vec<Import>);
        let egress: Vec<Egress> = if sidecar.spec.egress.is_empty() {
            vec![(
                None,
                None,
                Import::parse("*/*", config_ns).into_iter().collect(),
            )]
        } else {
            sidecar
                .spec
                .egress
                .iter()
                .map(|l| {
                    let imports = l
                        .hosts
                        .iter()
                        .filter_map(|h| Import::parse(h, config_ns))
                        .collect();
                    let protocol = l
                        .port
                        .as_ref()
                        .map(|p| PortProtocol::of_service_entry(Some(&p.protocol)));
                    (l.port.as_ref().map(|p| p.number), protocol, imports)
                })
                .collect()
        };
        let listeners = egress
            .into_iter()
            .map(|(port, protocol, imports)| {
                let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
                for s in services.iter().filter(|s| imports_service(&imports, s)) {
                    names
                        .entry(s.fqdn.clone())
                        .or_default()
                        .insert(s.namespace.clone());
                }
                // Istio adds the destinations of the VirtualServices a
                // listener imports, found by exact name: the declaration of
                // the proxy's namespace, else the first namespace by name.
                // They never override a host the listener imports itself.
                let explicit: BTreeSet<String> = names.keys().cloned().collect();
                for vs in virtual_services
                    .iter()
                    .filter(|vs| imports_virtual_service(&imports, vs))
                {
                    let ns = namespace_of(&vs.metadata);
                    for host in destinations(vs) {
                        let host = fqdn(host, ns);
                        if explicit.contains(&host) {
                            continue;
                        }
                        let declared = services.iter().filter(|s| s.fqdn == host);
                        let pick = declared
                            .clone()
                            .find(|s| s.namespace == config_ns)
                            .or_else(|| declared.min_by(|a, b| a.namespace.cmp(&b.namespace)));
                        if let Some(s) = pick {
                            names.entry(host).or_default().insert(s.namespace.clone());
                        }
                    }
                }
                Listener {
                    port,
                    protocol,
                    imports,
                    services: names,
                }
            })
            .collect();
        Self { listeners }
    }

    /// The listener traffic to `port` uses: the one naming the port, else
    /// the one without a port.
    fn listener(&self, port: u32) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| l.port == Some(port))
            .or_else(|| self.listeners.iter().find(|l| l.port.is_none()))
    }

    /// Whether (this declaration of) `service` is reachable on `port`.
    pub fn reaches(&self, service: &Service, port: u32) -> bool {
        self.listener(port).is_some_and(|l| {
            l.services
                .get(&service.fqdn)
                .is_some_and(|namespaces| namespaces.contains(&service.namespace))
        })
    }

    /// The protocol the egress listener for `port` sets, if one names the
    /// port: istiod builds that listener from the Sidecar's port, so its
    /// protocol replaces the service port's (a TCP listener proxies HTTP
    /// services' traffic as TCP, and VirtualService `tcp` rules apply).
    pub fn port_protocol(&self, port: u32) -> Option<PortProtocol> {
        self.listeners
            .iter()
            .find(|l| l.port == Some(port))
            .and_then(|l| l.protocol)
    }

    /// Whether (this declaration of) `service` is reachable on some port.
    pub fn reaches_any(&self, service: &Service) -> bool {
        service
            .ports
            .iter()
            .any(|p| self.reaches(service, p.number))
    }

    /// Whether some listener imports `vs`.
    pub fn imports(&self, vs: &VirtualService) -> bool {
        self.listeners
            .iter()
            .any(|l| imports_virtual_service(&l.imports, vs))
    }
}

/// A service is imported by an entry of its own namespace (or `*`) whose
/// name covers its host.
fn imports_service(imports: &[Import], service: &Service) -> bool {
    imports
        .iter()
        .any(|i| i.namespace_matches(&service.namespace) && host_subset_of(&service.fqdn, &i.host))
}

/// A VirtualService is imported by an entry of its own namespace (or `*`)
/// whose name covers one of its hosts or is covered by one.
fn imports_virtual_service(imports: &[Import], vs: &VirtualService) -> bool {
    let ns = namespace_of(&vs.metadata);
    imports.iter().any(|i| {
        i.namespace_matches(ns)
            && vs.spec.hosts.iter().any(|h| {
                let h = fqdn(h, ns);
                host_subset_of(&h, &i.host) || host_subset_of(&i.host, &h)
            })
    })
}

/// Every destination host a VirtualService names (routes and mirrors).
fn destinations(vs: &VirtualService) -> impl Iterator<Item = &str> {
    let http = vs.spec.http.iter().flat_map(|r| {
        r.route
            .iter()
            .map(|d| &d.destination)
            .chain(r.mirror.iter())
            .chain(r.mirrors.iter().map(|m| &m.destination))
    });
    let tcp = vs
        .spec
        .tcp
        .iter()
        .flat_map(|r| r.route.iter().map(|d| &d.destination));
    let tls = vs
        .spec
        .tls
        .iter()
        .flat_map(|r| r.route.iter().map(|d| &d.destination));
    http.chain(tcp).chain(tls).map(|d| d.host.as_str())
}

/// A Sidecar's ingress listeners on the inbound ports: traffic arriving at
/// a listener's port goes to its `defaultEndpoint`'s port and is handled
/// with the listener's protocol; a listener for a port no service names
/// adds that port.
/// Unix socket endpoints are not served (warned at validation) and leave
/// the port as it is.
pub(crate) fn apply_ingress(sidecar: &Sidecar, ports: &mut Vec<pb::InboundPort>) {
    for listener in &sidecar.spec.ingress {
        let Some(port) = &listener.port else { continue };
        let app_port = crate::validation::default_endpoint(&listener.default_endpoint)
            .ok()
            .flatten()
            .map_or(0, u32::from);
        // istiod builds the inbound chain from the listener's port, so its
        // protocol replaces that of a service port on the same number.
        let protocol = super::protocol(PortProtocol::of_service_entry(Some(&port.protocol))) as i32;
        let mut found = false;
        for p in ports.iter_mut().filter(|p| p.target_port == port.number) {
            p.app_port = app_port;
            p.protocol = protocol;
            found = true;
        }
        if !found {
            ports.push(pb::InboundPort {
                target_port: port.number,
                service_port: port.number,
                protocol,
                service: String::new(),
                service_name: String::new(),
                service_namespace: String::new(),
                app_port,
            });
        }
    }
}

#[cfg(test)]
mod tests;
