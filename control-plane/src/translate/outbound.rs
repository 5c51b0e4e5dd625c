//! The outbound half of a proxy's config: virtual hosts, clusters and TCP
//! services. It depends only on the proxy's namespace, labels and trust
//! domain, so proxies that share those share one translation per revision.

use super::{View, cluster, host, http, protocol};
use sluice_api::config as pb;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Virtual hosts, clusters and TCP services of one group of proxies.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    pub virtual_hosts: Vec<pb::VirtualHost>,
    pub clusters: Vec<pb::Cluster>,
    pub tcp_services: Vec<pb::TcpService>,
}

/// (namespace, labels, trust domain): what the outbound half depends on.
pub(crate) type OutboundKey = (String, BTreeMap<String, String>, String);

/// Outbound translations of one revision, by group.
#[derive(Debug, Default)]
pub struct OutboundCache(Mutex<HashMap<OutboundKey, Arc<Outbound>>>);

impl OutboundCache {
    /// Groups translated so far.
    pub fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether nothing was translated yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached translation for `key`, built with `build` on first use.
    pub(crate) fn get_or_build(
        &self,
        key: OutboundKey,
        build: impl FnOnce() -> Outbound,
    ) -> Arc<Outbound> {
        if let Some(hit) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Arc::clone(hit);
        }
        // Built outside the lock: translations of different groups run in parallel.
        let built = Arc::new(build());
        Arc::clone(
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(key)
                .or_insert(built),
        )
    }
}

/// Translates the outbound half for the proxy in `view`.
pub(crate) fn build(view: &View<'_>) -> Outbound {
    let mut clusters = cluster::Clusters::default();
    let mut virtual_hosts = Vec::new();
    let mut tcp_services = Vec::new();
    for service in &view.services {
        let vs = host::virtual_service_for(view, service);
        for port in &service.ports {
            let domains = host::domains(service, port.number, &view.proxy.namespace);
            if port.protocol.is_http() {
                let routes = match vs {
                    Some(vs) => http::routes(view, vs, service, port, &mut clusters),
                    None => vec![http::default_route(view, service, port, &mut clusters)],
                };
                virtual_hosts.push(pb::VirtualHost {
                    name: format!("{}:{}", service.fqdn, port.number),
                    port: port.number,
                    domains,
                    routes,
                    service: service.fqdn.clone(),
                    protocol: protocol(port.protocol) as i32,
                });
            } else {
                let routes = match vs {
                    Some(vs) => http::tcp_routes(view, vs, service, port, &mut clusters),
                    None => Vec::new(),
                };
                let routes = if routes.is_empty() {
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
                });
            }
        }
    }
    Outbound {
        virtual_hosts,
        clusters: clusters.into_vec(),
        tcp_services,
    }
}
