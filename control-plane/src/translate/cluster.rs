//! Clusters: one per (service, port, subset), with the DestinationRule's
//! subsets and load-balancer settings applied.

use super::outbound::SharedCluster;
use super::{View, canonical, fqdn, namespace_of, policy, protocol};
use crate::crd::{DestinationRule, LoadBalancerSettings, TrafficPolicy};
use crate::services::{Service, ServicePort, labels_match};
use sluice_api::config as pb;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Clusters referenced so far, by name.
#[derive(Default)]
pub(crate) struct Clusters<'e> {
    by_name: BTreeMap<String, Arc<SharedCluster>>,
    /// An earlier revision's clusters, in name order, valid for this one.
    earlier: &'e [Arc<SharedCluster>],
}

impl<'e> Clusters<'e> {
    /// Takes clusters over from `earlier` (in name order) instead of
    /// building them: the caller vouches that nothing they are built from
    /// (services, DestinationRules, PeerAuthentications, the mesh config,
    /// the group) changed.
    pub fn reusing(earlier: Option<&'e [Arc<SharedCluster>]>) -> Self {
        Self {
            by_name: BTreeMap::new(),
            earlier: earlier.unwrap_or_default(),
        }
    }

    fn earlier(&self, name: &str) -> Option<Arc<SharedCluster>> {
        let at = self
            .earlier
            .binary_search_by(|c| c.cluster.name.as_str().cmp(name))
            .ok()?;
        self.earlier.get(at).cloned()
    }

    /// Name of the cluster for (service, port, subset), creating it on first use.
    /// An unknown subset yields a cluster marked missing, with no endpoints
    /// (503 `NC`, as Envoy's missing cluster), never a dangling reference.
    pub fn get(
        &mut self,
        view: &View<'_>,
        service: &Service,
        port: &ServicePort,
        subset: Option<&str>,
    ) -> String {
        let name = format!(
            "outbound|{}|{}|{}",
            port.number,
            subset.unwrap_or_default(),
            service.fqdn
        );
        if !self.by_name.contains_key(&name) {
            // The name does not say which namespace's declaration of the
            // host it was built from; a proxy may now use another one.
            let earlier = self
                .earlier(&name)
                .filter(|c| c.cluster.service_namespace == service.namespace);
            let cluster = earlier.unwrap_or_else(|| {
                Arc::new(SharedCluster::new(build(
                    view,
                    service,
                    port,
                    subset,
                    name.clone(),
                )))
            });
            self.by_name.insert(name.clone(), cluster);
        }
        name
    }

    /// A cluster for a host or port the mesh does not know: marked missing,
    /// no endpoints, so requests routed there get Envoy's missing-cluster 503 (`NC`).
    pub fn missing(&mut self, host: &str, port: u32, subset: Option<&str>) -> String {
        let name = format!("outbound|{port}|{}|{host}", subset.unwrap_or_default());
        if !self.by_name.contains_key(&name) {
            let cluster = pb::Cluster {
                name: name.clone(),
                service: host.to_owned(),
                subset: subset.unwrap_or_default().to_owned(),
                port,
                load_balancer: Some(pb::LoadBalancer::default()),
                missing: true,
                ..Default::default()
            };
            let cluster = self
                .earlier(&name)
                .unwrap_or_else(|| Arc::new(SharedCluster::new(cluster)));
            self.by_name.insert(name.clone(), cluster);
        }
        name
    }

    /// Every cluster, in name order.
    pub fn into_vec(self) -> Vec<Arc<SharedCluster>> {
        self.by_name.into_values().collect()
    }
}

/// The DestinationRule for `service` seen from this proxy, as istiod picks
/// it (`PushContext.destinationRule`, then `SidecarScope.DestinationRule`):
/// - the first place with a rule for the host decides: for a proxy outside
///   the root namespace, every rule of its own namespace; for one in the root
///   namespace, the root's private rules (`exportTo: .`); then the rules the
///   service's namespace exports to the proxy's; then those the root exports;
///   within a place, the most specific host;
/// - the rules found for that host were merged as istiod merges rules of one
///   namespace for one host ([`merge_rules`]);
/// - of them, a rule with a `workloadSelector` matching the proxy (in the
///   proxy's namespace) wins, else the one without a selector, else none: a
///   selector rule that does not pick the proxy hides the other places' rules.
pub(crate) fn destination_rule_for<'a>(
    view: &View<'a>,
    service: &Service,
) -> Option<Cow<'a, DestinationRule>> {
    let root = view.index.mesh.root_namespace.as_str();
    let proxy_ns = view.proxy.namespace.as_str();
    // The proxy's own place: every rule of its namespace that namespace may
    // see (istiod's `namespaceLocal`), or, in the root namespace, only the
    // root's private rules.
    let own = |dr: &DestinationRule| {
        let (owner, exports) = (namespace_of(&dr.metadata), raw_exports(dr));
        if proxy_ns == root {
            private_only(&exports, owner)
        } else {
            exports.is_empty()
                || exports
                    .iter()
                    .any(|e| *e == "*" || *e == "." || *e == owner)
        }
    };
    let exported =
        |dr: &DestinationRule| !private_only(&raw_exports(dr), namespace_of(&dr.metadata));
    let places: [(&str, RuleFilter<'_>, bool); 3] = [
        (proxy_ns, &own, false),
        (service.namespace.as_str(), &exported, true),
        (root, &exported, true),
    ];
    for (ns, counts, check_visible) in places {
        let mut best: Option<usize> = None;
        let mut found: Vec<&'a DestinationRule> = Vec::new();
        for &dr in &view.destination_rules {
            if namespace_of(&dr.metadata) != ns || !counts(dr) {
                continue;
            }
            let Some(score) = super::resolve_host(&fqdn(&dr.spec.host, ns), &service.fqdn) else {
                continue;
            };
            if best.is_none_or(|b| score > b) {
                best = Some(score);
                found.clear();
            }
            if best == Some(score) {
                found.push(dr);
            }
        }
        if best.is_none() {
            continue;
        }
        let mut entries = merge_rules(&found);
        // An exported index's most specific host decides first; only then
        // are its rules checked against the proxy's namespace, and the
        // lookup goes on when none is exported there (istiod's
        // `getExportedDestinationRuleFromNamespace`).
        if check_visible {
            entries.retain(|e| {
                let exports = raw_exports(e);
                exports.is_empty() || exports.iter().any(|x| *x == "*" || *x == proxy_ns)
            });
            if entries.is_empty() {
                continue;
            }
        }
        return pick_for_proxy(view, entries);
    }
    None
}

/// Which rules of a namespace count at one step of the lookup.
type RuleFilter<'f> = &'f dyn Fn(&DestinationRule) -> bool;

/// A rule's `exportTo` as istiod keeps it: the names as written (none =
/// the default, public); a rule with a `workloadSelector` is never exported
/// (`.`), whatever it says.
fn raw_exports(rule: &DestinationRule) -> BTreeSet<&str> {
    if rule.spec.workload_selector.is_some() {
        return BTreeSet::from(["."]);
    }
    rule.spec.export_to.iter().map(String::as_str).collect()
}

/// Whether a rule stays in its namespace (istiod keeps it out of the
/// exported index): `exportTo` of only `.` or only its own namespace.
fn private_only(exports: &BTreeSet<&str>, owner: &str) -> bool {
    exports.len() == 1 && exports.iter().all(|e| *e == "." || *e == owner)
}

/// istiod's `mergeDestinationRule` over one namespace's rules for one host,
/// in its order (`rules` is sorted so: rules with a selector first, then by
/// creation time, name, namespace). A rule merges into each earlier entry
/// whose `exportTo` (as written) is the same set as its own, or a non-empty
/// set its own covers (it then also stands alone), and whose selector does not differ (a
/// selector-less rule merges into selector entries too): the entry gains the
/// subsets whose names it lacks, and the rule's top-level traffic policy
/// where it has none. The rule stands as an entry of its own unless it merged
/// into one with the same `exportTo` and the same selector (or both none).
fn merge_rules<'a>(rules: &[&'a DestinationRule]) -> Vec<Cow<'a, DestinationRule>> {
    let mut entries: Vec<(Cow<'a, DestinationRule>, BTreeSet<&'a str>)> = Vec::new();
    for &rule in rules {
        let exports = raw_exports(rule);
        let mut own_entry = true;
        let selector = rule
            .spec
            .workload_selector
            .as_ref()
            .map(|s| &s.match_labels);
        for (entry, entry_exports) in &mut entries {
            let same_exports = exports == *entry_exports;
            if !same_exports && (entry_exports.is_empty() || !exports.is_superset(entry_exports)) {
                continue;
            }
            let theirs = entry
                .spec
                .workload_selector
                .as_ref()
                .map(|s| &s.match_labels);
            if let (Some(a), Some(b)) = (selector, theirs)
                && a != b
            {
                continue;
            }
            if same_exports && selector.is_none() == theirs.is_none() {
                own_entry = false;
            }
            let merged = entry.to_mut();
            for subset in &rule.spec.subsets {
                if !merged.spec.subsets.iter().any(|s| s.name == subset.name) {
                    merged.spec.subsets.push(subset.clone());
                }
            }
            if merged.spec.traffic_policy.is_none() {
                merged.spec.traffic_policy = rule.spec.traffic_policy.clone();
            }
        }
        if own_entry {
            entries.push((Cow::Borrowed(rule), exports));
        }
    }
    entries.into_iter().map(|(entry, _)| entry).collect()
}

/// `SidecarScope.DestinationRule`: the entry whose selector picks the proxy
/// (only selectors of the proxy's own namespace count), else the last entry
/// without a selector.
fn pick_for_proxy<'a>(
    view: &View<'a>,
    entries: Vec<Cow<'a, DestinationRule>>,
) -> Option<Cow<'a, DestinationRule>> {
    let mut catch_all = None;
    for entry in entries {
        match &entry.spec.workload_selector {
            None => catch_all = Some(entry),
            Some(sel) => {
                if namespace_of(&entry.metadata) == view.proxy.namespace
                    && labels_match(&sel.match_labels, &view.proxy.labels)
                {
                    return Some(entry);
                }
            }
        }
    }
    catch_all
}

fn build(
    view: &View<'_>,
    service: &Service,
    port: &ServicePort,
    subset: Option<&str>,
    name: String,
) -> pb::Cluster {
    let dr = destination_rule_for(view, service);
    let dr = dr.as_deref();
    let subset_def =
        subset.and_then(|s| dr.and_then(|dr| dr.spec.subsets.iter().find(|x| x.name == s)));
    let endpoints = service
        .endpoints
        .iter()
        .filter(|e| match (subset, subset_def) {
            (None, _) => true,
            (Some(_), Some(def)) => labels_match(&def.labels, &e.labels),
            (Some(_), None) => false,
        })
        .map(|e| {
            let (app, version) = canonical(&e.labels, &e.workload);
            let target_port = e.target_port(port);
            // Istio's per-endpoint tlsMode: a workload whose PeerAuthentication
            // disables mTLS on this port gets plaintext from auto mTLS.
            let mtls_disabled = e.has_sidecar()
                && super::security::peer_modes(
                    &view.peer_authentications,
                    &view.index.mesh.root_namespace,
                    &e.namespace,
                    &e.labels,
                )
                .for_port(target_port)
                    == pb::MtlsMode::Disable;
            pb::Endpoint {
                mtls_disabled,
                address: e.address.clone(),
                port: target_port,
                sidecar: e.has_sidecar(),
                inbound_port: 15006,
                workload: Some(pb::WorkloadMeta {
                    workload: e.workload.clone(),
                    namespace: e.namespace.clone(),
                    app,
                    version,
                    principal: format!(
                        "spiffe://{}/ns/{}/sa/{}",
                        view.proxy.trust_domain, e.namespace, e.service_account
                    ),
                    cluster: "Kubernetes".into(),
                }),
                labels: e.labels.clone().into_iter().collect(),
                weight: e.weight,
            }
        })
        .collect();
    let top = dr.and_then(|d| d.spec.traffic_policy.as_ref());
    let sub = subset_def.and_then(|s| s.traffic_policy.as_ref());
    let policy = effective_policy(top, sub, port.number);
    let connection_pool = policy::pick(
        top,
        sub,
        port.number,
        |p| p.connection_pool.as_ref(),
        |p| p.connection_pool.as_ref(),
    )
    .map(|cp| policy::connection_pool(&cp));
    let connection_pool = mesh_h2_upgrade(connection_pool, view.index.mesh.h2_upgrade, port);
    let outlier_detection = policy::pick(
        top,
        sub,
        port.number,
        |p| p.outlier_detection.as_ref(),
        |p| p.outlier_detection.as_ref(),
    )
    .map(|od| policy::outlier_detection(&od));
    let tls = policy::pick(
        top,
        sub,
        port.number,
        |p| p.tls.as_ref(),
        |p| p.tls.as_ref(),
    );
    let tls = upstream_tls(tls.as_ref(), service, &view.proxy.trust_domain);
    // `portLevelSettings` carry no retry budget: a subset's wins over the top level's.
    let retry_budget = sub
        .and_then(|p| p.retry_budget.as_ref())
        .or_else(|| top.and_then(|p| p.retry_budget.as_ref()))
        .map(policy::retry_budget);
    pb::Cluster {
        name,
        service: service.fqdn.clone(),
        subset: subset.unwrap_or_default().to_owned(),
        port: port.number,
        protocol: protocol(port.protocol) as i32,
        load_balancer: Some(load_balancer(policy.as_ref())),
        endpoints,
        authority: String::new(),
        service_namespace: service.namespace.clone(),
        service_name: service.short_name.clone(),
        connection_pool,
        outlier_detection,
        tls: Some(tls),
        retry_budget,
        // istiod builds a subset's cluster only from a DestinationRule that
        // defines it.
        missing: subset.is_some() && subset_def.is_none(),
    }
}

/// MeshConfig `h2UpgradePolicy: UPGRADE` applies where no DestinationRule sets
/// a policy or `useClientProtocol`, and (as in Istio) only to ports declared
/// HTTP: a sniffed port keeps the caller's protocol, since its app may speak
/// only HTTP/1.1.
fn mesh_h2_upgrade(
    pool: Option<pb::ConnectionPool>,
    mesh_upgrade: bool,
    port: &ServicePort,
) -> Option<pb::ConnectionPool> {
    use pb::connection_pool::H2UpgradePolicy;
    let declared_http = port.protocol == crate::services::PortProtocol::Http;
    let unset = pool.as_ref().is_none_or(|p| {
        p.h2_upgrade_policy() == H2UpgradePolicy::Default && !p.use_client_protocol
    });
    if !(mesh_upgrade && declared_http && unset) {
        return pool;
    }
    let mut pool = pool.unwrap_or_default();
    pool.set_h2_upgrade_policy(H2UpgradePolicy::Upgrade);
    Some(pool)
}

/// DestinationRule `tls` in force → the client TLS of a cluster. Without a
/// `tls` (or `mode` unset) Istio's auto mTLS applies. The identities a mesh
/// server may present are the service accounts its endpoints run as (or the
/// ServiceEntry's `subjectAltNames`), unless the rule lists its own.
fn upstream_tls(
    tls: Option<&crate::crd::ClientTlsSettings>,
    service: &crate::services::Service,
    trust_domain: &str,
) -> pb::UpstreamTls {
    use pb::upstream_tls::Mode;
    let mode = match tls.and_then(|t| t.mode.as_deref()) {
        Some("DISABLE") => Mode::Disable,
        Some("ISTIO_MUTUAL") => Mode::IstioMutual,
        Some("SIMPLE") => Mode::Simple,
        Some("MUTUAL") => Mode::Mutual,
        // istiod builds no auto mTLS for a MESH_EXTERNAL ServiceEntry: plaintext
        // unless a DestinationRule asks for TLS.
        _ if service.mesh_external => Mode::Disable,
        _ => Mode::Auto,
    };
    let listed = tls.map(|t| t.subject_alt_names.clone()).unwrap_or_default();
    let subject_alt_names = if !listed.is_empty() {
        listed
            .iter()
            .map(|s| s.trim_start_matches("spiffe://").to_owned())
            .collect()
    } else if matches!(mode, Mode::Auto | Mode::IstioMutual) {
        // A ServiceEntry's `subjectAltNames` and, as its doc says, the service
        // accounts of the mesh workloads it selects (without ServiceEntry
        // names: every endpoint's).
        let workloads = service
            .endpoints
            .iter()
            .filter(|e| service.subject_alt_names.is_empty() || e.has_sidecar())
            .map(|e| format!("{trust_domain}/ns/{}/sa/{}", e.namespace, e.service_account));
        let mut names: Vec<String> = service
            .subject_alt_names
            .iter()
            .map(|s| s.trim_start_matches("spiffe://").to_owned())
            .chain(workloads)
            .collect();
        names.sort();
        names.dedup();
        names
    } else {
        service.subject_alt_names.clone()
    };
    let file = |f: Option<&String>| f.cloned().unwrap_or_default();
    pb::UpstreamTls {
        mode: mode as i32,
        subject_alt_names,
        sni: file(tls.and_then(|t| t.sni.as_ref())),
        ca_certificates: file(tls.and_then(|t| t.ca_certificates.as_ref())),
        client_certificate: file(tls.and_then(|t| t.client_certificate.as_ref())),
        private_key: file(tls.and_then(|t| t.private_key.as_ref())),
        insecure_skip_verify: tls.and_then(|t| t.insecure_skip_verify).unwrap_or(false),
    }
}

/// Load-balancer settings in force: subset over top level, port-level over both.
fn effective_policy(
    top: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u32,
) -> Option<LoadBalancerSettings> {
    policy::pick(
        top,
        subset,
        port,
        |p| p.load_balancer.as_ref(),
        |p| p.load_balancer.as_ref(),
    )
}

fn load_balancer(lb: Option<&LoadBalancerSettings>) -> pb::LoadBalancer {
    use pb::load_balancer::Simple;
    let Some(lb) = lb else {
        return pb::LoadBalancer::default();
    };
    let simple = match lb.simple.as_deref().unwrap_or("LEAST_REQUEST") {
        "ROUND_ROBIN" => Simple::RoundRobin,
        "RANDOM" => Simple::Random,
        "PASSTHROUGH" => Simple::Passthrough,
        // UNSPECIFIED and LEAST_CONN (deprecated alias) mean least request.
        _ => Simple::LeastRequest,
    };
    let consistent_hash = lb.consistent_hash.as_ref().and_then(|ch| {
        use pb::consistent_hash::{Cookie, Key};
        let key = if let Some(h) = &ch.http_header_name {
            Key::Header(h.to_ascii_lowercase())
        } else if let Some(c) = &ch.http_cookie {
            Key::Cookie(Cookie {
                name: c.name.clone(),
                path: c.path.clone().unwrap_or_default(),
                ttl_ms: c
                    .ttl
                    .as_deref()
                    .and_then(|t| crate::crd::parse_duration(t).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            })
        } else if ch.use_source_ip == Some(true) {
            Key::SourceIp(true)
        } else if let Some(q) = &ch.http_query_parameter_name {
            Key::QueryParameter(q.clone())
        } else {
            return None;
        };
        Some(pb::ConsistentHash {
            key: Some(key),
            minimum_ring_size: ch
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size)
                .unwrap_or(1024),
        })
    });
    pb::LoadBalancer {
        simple: simple as i32,
        consistent_hash,
    }
}

#[cfg(test)]
mod tests;
