//! The service catalog: services and their endpoints, derived from
//! ServiceEntry and WorkloadEntry objects (Kubernetes Services and
//! EndpointSlices feed the same catalog in Kubernetes mode).

use crate::crd::{ServiceEntry, WorkloadEntry, WorkloadEntrySpec};
use crate::resource::Resource;
use std::collections::{BTreeMap, HashMap};

/// Label Istio sets on endpoints that run a sidecar (auto mTLS).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";

/// Label naming the workload an instance belongs to (Istio's
/// `service.istio.io/workload-name`); else the WorkloadEntry's own name.
pub const WORKLOAD_NAME_LABEL: &str = "service.istio.io/workload-name";

/// Kubernetes cluster DNS suffix.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

/// Application protocol of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum PortProtocol {
    /// HTTP/1.1 (and HTTP/2 upgrades).
    Http,
    /// HTTP/2.
    Http2,
    /// gRPC.
    Grpc,
    /// Opaque TCP (also TLS, MONGO, ... as far as routing goes).
    Tcp,
    /// Not declared: sniffed by the proxy.
    Unspecified,
}

impl PortProtocol {
    /// Istio's protocol selection: the `protocol` field, else the port name prefix.
    pub fn select(protocol: Option<&str>, name: &str) -> Self {
        let from = |p: &str| match p.to_ascii_uppercase().as_str() {
            "HTTP" => Some(Self::Http),
            "HTTP2" => Some(Self::Http2),
            "GRPC" | "GRPC-WEB" => Some(Self::Grpc),
            "TCP" | "TLS" | "HTTPS" | "MONGO" | "MYSQL" | "REDIS" => Some(Self::Tcp),
            _ => None,
        };
        if let Some(p) = protocol.and_then(from) {
            return p;
        }
        let prefix = name.split('-').next().unwrap_or_default();
        from(prefix).unwrap_or(Self::Unspecified)
    }

    /// Whether HTTP routing (VirtualService `http`) applies.
    pub fn is_http(self) -> bool {
        !matches!(self, Self::Tcp)
    }
}

/// One port of a service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServicePort {
    /// Service port number.
    pub number: u32,
    /// Port name (endpoints' `ports` map uses it).
    pub name: String,
    /// Protocol.
    pub protocol: PortProtocol,
    /// Port of the workloads, when it differs.
    pub target_port: u32,
}

/// One workload instance backing a service.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Endpoint {
    /// IP address.
    pub address: String,
    /// Labels of the workload.
    pub labels: BTreeMap<String, String>,
    /// Service account it runs as.
    pub service_account: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Workload name (metrics `destination_workload`).
    pub workload: String,
    /// Named port overrides.
    pub ports: BTreeMap<String, u32>,
    /// Relative load-balancing weight (default 1).
    pub weight: u32,
}

impl Endpoint {
    /// Whether the workload runs a sidecar (Istio's `security.istio.io/tlsMode: istio`).
    pub fn has_sidecar(&self) -> bool {
        self.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio")
    }

    /// The port the application listens on for `port`.
    pub fn target_port(&self, port: &ServicePort) -> u32 {
        self.ports
            .get(&port.name)
            .copied()
            .unwrap_or(port.target_port)
    }
}

/// A service the mesh can route to.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Service {
    /// Fully qualified host, e.g. `reviews.default.svc.cluster.local`.
    pub fqdn: String,
    /// Namespace of the object that declared it.
    pub namespace: String,
    /// Short name (`reviews`) for Kubernetes-style hosts, else the host.
    pub short_name: String,
    /// Virtual IPs.
    pub addresses: Vec<String>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Backing workloads.
    pub endpoints: Vec<Endpoint>,
    /// `exportTo` of the declaring object (empty = everywhere).
    pub export_to: Vec<String>,
    /// Whether the host is a wildcard (`*.example.com`).
    pub wildcard: bool,
    /// ServiceEntry `subjectAltNames`: identities its servers present.
    pub subject_alt_names: Vec<String>,
}

impl Service {
    /// Port by number.
    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }
}

/// Every service, by FQDN.
#[derive(Debug, Default)]
pub struct ServiceCatalog {
    /// Services in FQDN order; a host declared twice keeps its first declaration.
    pub services: BTreeMap<String, Service>,
    /// Endpoint addresses → (service FQDN, index into its endpoints), built on
    /// first use: every proxy's inbound side looks itself up here instead of
    /// scanning (and parsing) every endpoint of the mesh.
    by_address:
        std::sync::OnceLock<std::collections::HashMap<std::net::IpAddr, Vec<(String, usize)>>>,
}

impl ServiceCatalog {
    /// Derives services from ServiceEntry and WorkloadEntry objects.
    pub fn build<'a>(resources: impl Iterator<Item = &'a Resource>) -> Self {
        let mut entries: Vec<&ServiceEntry> = Vec::new();
        let mut workloads: Vec<&WorkloadEntry> = Vec::new();
        for r in resources {
            match r {
                Resource::ServiceEntry(se) => entries.push(se),
                Resource::WorkloadEntry(we) => workloads.push(we),
                _ => {}
            }
        }
        let by_label = WorkloadIndex::new(&workloads);
        let mut services = BTreeMap::new();
        for se in entries {
            let namespace = se.metadata.namespace.clone().unwrap_or_default();
            let ports: Vec<ServicePort> = se
                .spec
                .ports
                .iter()
                .map(|p| ServicePort {
                    number: p.number,
                    name: p.name.clone(),
                    protocol: PortProtocol::select(p.protocol.as_deref(), &p.name),
                    target_port: p.target_port.unwrap_or(p.number),
                })
                .collect();
            let mut endpoints: Vec<Endpoint> = se
                .spec
                .endpoints
                .iter()
                .enumerate()
                .filter_map(|(i, spec)| {
                    endpoint(spec, &namespace, &format!("{}-{i}", name_of(&se.metadata)))
                })
                .collect();
            if let Some(selector) = &se.spec.workload_selector {
                let ns = se.metadata.namespace.as_deref().unwrap_or_default();
                for we in by_label.candidates(ns, &selector.labels) {
                    if !labels_match(&selector.labels, &we.spec.labels) {
                        continue;
                    }
                    if let Some(ep) = endpoint(&we.spec, &namespace, &name_of(&we.metadata)) {
                        endpoints.push(ep);
                    }
                }
            }
            for host in &se.spec.hosts {
                let fqdn = host.to_ascii_lowercase();
                let short_name = fqdn
                    .strip_suffix(&format!(".{namespace}.{DOMAIN_SUFFIX}"))
                    .unwrap_or(&fqdn)
                    .to_owned();
                services.entry(fqdn.clone()).or_insert_with(|| Service {
                    wildcard: fqdn.starts_with('*'),
                    fqdn,
                    namespace: namespace.clone(),
                    short_name,
                    addresses: se.spec.addresses.clone(),
                    ports: ports.clone(),
                    endpoints: endpoints.clone(),
                    export_to: se.spec.export_to.clone(),
                    subject_alt_names: se.spec.subject_alt_names.clone(),
                });
            }
        }
        Self {
            services,
            by_address: std::sync::OnceLock::new(),
        }
    }

    /// The endpoints at `ip`, as (service, endpoint) pairs in FQDN order.
    pub fn endpoints_at(
        &self,
        ip: &std::net::IpAddr,
    ) -> impl Iterator<Item = (&Service, &Endpoint)> {
        let index = self.by_address.get_or_init(|| {
            let mut map: std::collections::HashMap<std::net::IpAddr, Vec<(String, usize)>> =
                std::collections::HashMap::new();
            for (fqdn, service) in &self.services {
                for (n, e) in service.endpoints.iter().enumerate() {
                    if let Ok(addr) = e.address.parse::<std::net::IpAddr>() {
                        map.entry(addr).or_default().push((fqdn.clone(), n));
                    }
                }
            }
            map
        });
        index.get(ip).into_iter().flatten().filter_map(|(fqdn, n)| {
            let service = self.services.get(fqdn)?;
            Some((service, service.endpoints.get(*n)?))
        })
    }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn endpoint(spec: &WorkloadEntrySpec, namespace: &str, workload: &str) -> Option<Endpoint> {
    let address = spec.address.clone().filter(|a| !a.is_empty())?;
    Some(Endpoint {
        address,
        labels: spec.labels.clone(),
        service_account: spec
            .service_account
            .clone()
            .unwrap_or_else(|| "default".into()),
        namespace: namespace.to_owned(),
        workload: spec
            .labels
            .get(WORKLOAD_NAME_LABEL)
            .cloned()
            .unwrap_or_else(|| workload.to_owned()),
        ports: spec.ports.clone(),
        weight: spec.weight.filter(|w| *w > 0).unwrap_or(1),
    })
}

/// WorkloadEntries by namespace and by each of their labels, so a
/// ServiceEntry's selector looks at the workloads carrying one of its labels
/// instead of every workload (1,000 selectors × 10,000 workloads made this
/// the controller's largest cost per endpoint change).
struct WorkloadIndex<'a> {
    /// In resource order, per namespace: what an empty selector selects.
    by_namespace: HashMap<&'a str, Vec<&'a WorkloadEntry>>,
    /// (namespace, label key, label value) → workloads, in resource order.
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a WorkloadEntry>>,
}

impl<'a> WorkloadIndex<'a> {
    fn new(workloads: &[&'a WorkloadEntry]) -> Self {
        let mut by_namespace: HashMap<&str, Vec<&WorkloadEntry>> = HashMap::new();
        let mut by_label: HashMap<(&str, &str, &str), Vec<&WorkloadEntry>> = HashMap::new();
        for we in workloads {
            let ns = we.metadata.namespace.as_deref().unwrap_or_default();
            by_namespace.entry(ns).or_default().push(we);
            for (k, v) in &we.spec.labels {
                by_label
                    .entry((ns, k.as_str(), v.as_str()))
                    .or_default()
                    .push(we);
            }
        }
        Self {
            by_namespace,
            by_label,
        }
    }

    /// A superset of the workloads in `namespace` that `selector` selects, in
    /// resource order: those carrying the selector's rarest label.
    fn candidates(
        &self,
        namespace: &'a str,
        selector: &'a BTreeMap<String, String>,
    ) -> &[&'a WorkloadEntry] {
        if selector.is_empty() {
            return self.by_namespace.get(namespace).map_or(&[], Vec::as_slice);
        }
        selector
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(&(namespace, k.as_str(), v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|list| list.len())
            .unwrap_or(&[])
    }
}

/// Whether every `selector` label is on `labels` (an empty selector selects all).
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
