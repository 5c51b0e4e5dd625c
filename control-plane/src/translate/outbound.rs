//! The outbound half of a proxy's config: virtual hosts, clusters and TCP
//! services. It depends only on the proxy's namespace, labels and trust
//! domain, so proxies that share those share one translation per revision.
//! Which declaration of a host declared in several namespaces a proxy uses
//! depends on its namespace and Sidecar (namespace and selected labels), so
//! clusters of the same name but of different declarations never meet in
//! one group.

use super::{View, cluster, host, http, policy, protocol};
use sluice_api::config as pb;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Virtual hosts, clusters and TCP services of one group of proxies.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    pub virtual_hosts: Vec<pb::VirtualHost>,
    /// In name order.
    pub clusters: Vec<Arc<SharedCluster>>,
    pub tcp_services: Vec<pb::TcpService>,
}

/// A cluster as translated once and shared: by every proxy of a group, and
/// by the next revisions' halves of the group while nothing it is built
/// from changes. Its encoding (and the digest's hash of it) is made once,
/// by the first half that needs it.
#[derive(Debug)]
pub(crate) struct SharedCluster {
    pub cluster: pb::Cluster,
    encoded: OnceLock<(bytes::Bytes, u128)>,
}

impl SharedCluster {
    pub fn new(cluster: pb::Cluster) -> Self {
        Self {
            cluster,
            encoded: OnceLock::new(),
        }
    }

    /// The cluster's message bytes and their hash, from `encode` the first time.
    pub fn encoded(
        &self,
        encode: impl FnOnce(&pb::Cluster) -> (bytes::Bytes, u128),
    ) -> &(bytes::Bytes, u128) {
        self.encoded.get_or_init(|| encode(&self.cluster))
    }
}

/// (namespace, labels, trust domain): what the outbound half depends on.
pub(crate) type OutboundKey = (String, BTreeMap<String, String>, String);

type Built = Arc<Mutex<HashMap<OutboundKey, Arc<Outbound>>>>;

/// Outbound translations of one revision, by group.
#[derive(Debug, Default)]
pub struct OutboundCache {
    built: Built,
    /// The translations of an earlier revision that differs from this one
    /// only in VirtualServices: clusters read no VirtualService, so theirs
    /// are taken over as they are (by name) instead of translated again.
    previous: Option<Built>,
}

impl OutboundCache {
    /// A cache for a revision whose inputs other than VirtualServices are
    /// those of `earlier`'s revision: its clusters are reused.
    pub fn reusing_clusters_of(earlier: &OutboundCache) -> Self {
        Self {
            built: Built::default(),
            previous: Some(earlier.built.clone()),
        }
    }

    /// Another handle on the same translations (without `previous`), for a
    /// later revision to reuse from.
    pub fn handle(&self) -> Self {
        Self {
            built: self.built.clone(),
            previous: None,
        }
    }

    fn lock(built: &Built) -> std::sync::MutexGuard<'_, HashMap<OutboundKey, Arc<Outbound>>> {
        built.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Groups translated so far.
    pub fn len(&self) -> usize {
        Self::lock(&self.built).len()
    }

    /// Whether nothing was translated yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached translation for `key`, built with `build` on first use;
    /// `build` gets the group's translation from the earlier revision, if
    /// clusters may be reused from it.
    pub(crate) fn get_or_build(
        &self,
        key: OutboundKey,
        build: impl FnOnce(Option<&Outbound>) -> Outbound,
    ) -> Arc<Outbound> {
        if let Some(hit) = Self::lock(&self.built).get(&key) {
            return Arc::clone(hit);
        }
        let earlier = self
            .previous
            .as_ref()
            .and_then(|p| Self::lock(p).get(&key).cloned());
        // Built outside the lock: translations of different groups run in parallel.
        let built = Arc::new(build(earlier.as_deref()));
        Arc::clone(Self::lock(&self.built).entry(key).or_insert(built))
    }
}

/// Translates the outbound half for the proxy in `view`, taking clusters
/// over from `earlier` (the group's half of a revision that differs only in
/// VirtualServices) by name.
pub(crate) fn build(view: &View<'_>, earlier: Option<&Outbound>) -> Outbound {
    let mut clusters = cluster::Clusters::reusing(earlier.map(|e| e.clusters.as_slice()));
    let mut virtual_hosts = Vec::new();
    let mut tcp_services = Vec::new();
    for service in &view.services {
        let vs = host::virtual_service_for(view, service);
        for port in service
            .ports
            .iter()
            .filter(|p| view.reaches(service, p.number))
        {
            let mut domains = host::domains(service, port.number, &view.proxy.namespace);
            let port_protocol = view.port_protocol(port);
            let sniffed = port_protocol == crate::services::PortProtocol::Unspecified;
            if port_protocol.is_http() {
                let routes = match vs {
                    Some(vs) => http::routes(view, vs, service, port, &mut clusters),
                    None => vec![http::default_route(view, service, port, &mut clusters)],
                };
                virtual_hosts.push(pb::VirtualHost {
                    name: format!("{}:{}", service.fqdn, port.number),
                    port: port.number,
                    domains: if sniffed {
                        domains.clone()
                    } else {
                        std::mem::take(&mut domains)
                    },
                    routes,
                    service: service.fqdn.clone(),
                    protocol: protocol(port_protocol) as i32,
                });
            }
            // A port of no declared protocol is sniffed (Istio): what is not
            // HTTP follows the VirtualService's `tcp` routes.
            if !port_protocol.is_http() || sniffed {
                let routes = match vs {
                    Some(vs) => http::tcp_routes(view, vs, service, port, &mut clusters),
                    None => Vec::new(),
                };
                let routes = if routes.is_empty() {
                    let dr = cluster::destination_rule_for(view, service);
                    let (idle_timeout_ms, max_connection_duration_ms) =
                        policy::tcp_proxy_timeouts(dr.as_deref());
                    vec![pb::TcpRoute {
                        virtual_service: String::new(),
                        rule_index: 0,
                        forward: Some(pb::WeightedClusters {
                            clusters: vec![pb::WeightedCluster {
                                cluster: clusters.get(view, service, port, None),
                                weight: 100,
                                ..Default::default()
                            }],
                        }),
                        idle_timeout_ms,
                        max_connection_duration_ms,
                    }]
                } else {
                    routes
                };
                tcp_services.push(pb::TcpService {
                    name: format!("{}:{}", service.fqdn, port.number),
                    port: port.number,
                    addresses: service.addresses.clone(),
                    routes,
                    service: service.fqdn.clone(),
                    domains,
                    sniffed,
                });
            }
        }
    }
    for (host, vs, service) in host::hosts_under_wildcards(view) {
        for port in service
            .ports
            .iter()
            .filter(|p| view.port_protocol(p).is_http() && view.reaches(service, p.number))
        {
            let routes = http::routes(view, vs, service, port, &mut clusters);
            virtual_hosts.push(pb::VirtualHost {
                name: format!("{host}:{}", port.number),
                port: port.number,
                domains: vec![host.clone()],
                routes,
                service: host.clone(),
                protocol: protocol(view.port_protocol(port)) as i32,
            });
        }
    }
    Outbound {
        virtual_hosts,
        clusters: clusters.into_vec(),
        tcp_services,
    }
}

#[cfg(test)]
mod tests;
