//! Rendering what the API server holds as the YAML documents `Intake`
//! parses: Istio objects as written, Kubernetes Services (with their
//! ready EndpointSlice endpoints and Pods) as synthetic ServiceEntries, and
//! ready Pods as synthetic WorkloadEntries, which ServiceEntry
//! `workloadSelector`s select as istiod's do.

use crate::services::{
    DOMAIN_SUFFIX, KUBERNETES_POD_ANNOTATION, KUBERNETES_SERVICE_ANNOTATION, TLS_MODE_LABEL,
    WORKLOAD_NAME_LABEL,
};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Label of an EndpointSlice naming the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Name of the sidecar container; a pod with it gets Istio's tlsMode label.
pub const SIDECAR_CONTAINER: &str = "sluice-proxy";

/// Annotation `kubectl apply` keeps a full copy of the object in: noise here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The `files` key of an object: `k8s/<kind>/<namespace>/<name>`.
pub fn file_key(kind: &str, namespace: &str, name: &str) -> String {
    format!("k8s/{kind}/{namespace}/{name}")
}

/// The `files` key of the WorkloadEntry standing for Pod `name`:
/// `k8s/pods/<namespace>/<name>`. Lowercase, it sorts after every kind's key
/// (`k8s/WorkloadEntry/...` included): `Intake` keeps the first of two
/// definitions of one object, so a user's WorkloadEntry would win even if
/// one were named as a Pod's (the source also leaves such Pods out).
pub fn pod_file_key(namespace: &str, name: &str) -> String {
    format!("k8s/pods/{namespace}/{name}")
}

/// Name of the WorkloadEntry standing for Pod `name`.
pub fn pod_workload_entry_name(name: &str) -> String {
    format!("pod-{name}")
}

/// Longest object name (a DNS subdomain).
const MAX_NAME: usize = 253;

/// Longest label value.
const MAX_LABEL_VALUE: usize = 63;

/// Name of the ServiceEntry standing for Service `name`. Service names
/// cannot contain dots, so this never collides with another Service's.
pub fn service_entry_name(name: &str) -> String {
    format!("{name}.svc")
}

/// Annotations only the documents this source synthesizes may carry: on a
/// user's object, [`KUBERNETES_SERVICE_ANNOTATION`] would claim a Kubernetes
/// Service's precedence for any ServiceEntry. Dropped from Istio objects.
const SYNTHETIC_ANNOTATIONS: [&str; 2] = [KUBERNETES_SERVICE_ANNOTATION, KUBERNETES_POD_ANNOTATION];

/// An Istio object as the API server returned it, as a YAML document: type,
/// identifying metadata and spec (status is ours, resourceVersion changes
/// with every status write and means nothing to translation). The
/// annotations marking synthetic documents are left out.
pub fn istio_document(object: &DynamicObject) -> Result<String, String> {
    let (api_version, kind) = match &object.types {
        Some(t) => (t.api_version.clone(), t.kind.clone()),
        None => return Err("object without apiVersion/kind".into()),
    };
    let mut metadata = Map::new();
    let m = &object.metadata;
    insert(&mut metadata, "name", &m.name);
    insert(&mut metadata, "namespace", &m.namespace);
    insert(&mut metadata, "uid", &m.uid);
    insert(&mut metadata, "generation", &m.generation);
    insert(&mut metadata, "creationTimestamp", &m.creation_timestamp);
    insert(&mut metadata, "labels", &m.labels);
    let annotations = m.annotations.as_ref().map(|a| {
        a.iter()
            .filter(|(k, _)| {
                k.as_str() != LAST_APPLIED && !SYNTHETIC_ANNOTATIONS.contains(&k.as_str())
            })
            .collect::<BTreeMap<_, _>>()
    });
    if let Some(a) = annotations.filter(|a| !a.is_empty()) {
        metadata.insert("annotations".into(), json!(a));
    }
    let mut doc = json!({"apiVersion": api_version, "kind": kind, "metadata": metadata});
    if let Some(spec) = object.data.get("spec") {
        doc["spec"] = spec.clone();
    }
    serde_yaml::to_string(&doc).map_err(|e| e.to_string())
}

fn insert<T: serde::Serialize>(map: &mut Map<String, Value>, key: &str, value: &Option<T>) {
    if let Some(v) = value
        && let Ok(v) = serde_json::to_value(v)
    {
        map.insert(key.into(), v);
    }
}

/// Istio's protocol of a Service port: `appProtocol` first, then the port
/// name (`http`, `http-web`, ...). `None` leaves it to protocol sniffing.
pub fn port_protocol(app_protocol: Option<&str>, name: &str) -> Option<&'static str> {
    let known = |p: &str| -> Option<&'static str> {
        Some(match p.to_ascii_lowercase().as_str() {
            "http" => "HTTP",
            "http2" => "HTTP2",
            "https" => "HTTPS",
            "grpc" => "GRPC",
            "grpc-web" => "GRPC-WEB",
            "tcp" => "TCP",
            "tls" => "TLS",
            "mongo" => "MONGO",
            "mysql" => "MYSQL",
            "redis" => "REDIS",
            _ => return None,
        })
    };
    if let Some(app) = app_protocol {
        // Kubernetes' own appProtocol values (KEP-3726).
        let mapped = match app {
            "kubernetes.io/h2c" => Some("HTTP2"),
            "kubernetes.io/ws" => Some("HTTP"),
            "kubernetes.io/wss" => Some("HTTPS"),
            other => known(other),
        };
        if mapped.is_some() {
            return mapped;
        }
    }
    known(name.split('-').next().unwrap_or_default())
}

/// Port name used in the ServiceEntry: the Service's, or `port-<number>`
/// for the unnamed port of a single-port Service.
fn port_name(name: Option<&str>, number: i32) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => format!("port-{number}"),
    }
}

/// Whether a Service/EndpointSlice port carries TCP (UDP and SCTP ports are
/// not proxied).
fn is_tcp(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|p| p.eq_ignore_ascii_case("TCP"))
}

/// Pods by namespace and name.
pub type PodIndex<'a> = BTreeMap<(&'a str, &'a str), &'a Pod>;

/// The ServiceEntry document standing for `service`: its cluster host and
/// IPs, its TCP ports, and one inline endpoint per ready address of
/// `slices` (those labelled with the Service's name). `None` for Services
/// Sluice does not route to (ExternalName, no name).
pub fn service_entry(
    service: &Service,
    slices: &[&EndpointSlice],
    pods: &PodIndex<'_>,
) -> Option<Value> {
    let name = service.metadata.name.as_deref()?;
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let mut ports = Vec::new();
    let mut port_names = BTreeSet::new();
    for p in spec.ports.iter().flatten() {
        if !is_tcp(p.protocol.as_deref()) {
            continue;
        }
        let pname = port_name(p.name.as_deref(), p.port);
        let mut port = json!({"number": p.port, "name": pname});
        if let Some(proto) = port_protocol(p.app_protocol.as_deref(), &pname) {
            port["protocol"] = json!(proto);
        }
        if let Some(IntOrString::Int(target)) = p.target_port {
            port["targetPort"] = json!(target);
        }
        port_names.insert(pname);
        ports.push(port);
    }
    let addresses: Vec<&str> = match &spec.cluster_ips {
        Some(ips) => ips.iter().map(String::as_str).collect(),
        None => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    let addresses: Vec<&str> = addresses
        .into_iter()
        .filter(|a| !a.is_empty() && *a != "None")
        .collect();
    let mut endpoints = Vec::new();
    let mut seen = BTreeSet::new();
    for slice in slices {
        if slice.address_type == "FQDN" {
            continue;
        }
        let slice_ports: BTreeMap<String, i32> = slice
            .ports
            .iter()
            .flatten()
            .filter(|p| is_tcp(p.protocol.as_deref()))
            .filter_map(|p| Some((port_name(p.name.as_deref(), p.port?), p.port?)))
            .filter(|(n, _)| port_names.contains(n))
            .collect();
        for ep in &slice.endpoints {
            // Kubernetes: an unset `ready` means ready.
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| {
                    let ns = r.namespace.as_deref().unwrap_or(namespace);
                    pods.get(&(ns, r.name.as_deref()?)).copied()
                });
            for address in &ep.addresses {
                if !seen.insert(address.clone()) {
                    continue;
                }
                endpoints.push(endpoint(address, &slice_ports, pod));
            }
        }
    }
    let mut spec = json!({
        "hosts": [format!("{name}.{namespace}.{DOMAIN_SUFFIX}")],
        "ports": ports,
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
    });
    if !addresses.is_empty() {
        spec["addresses"] = json!(addresses);
    }
    if !endpoints.is_empty() {
        spec["endpoints"] = Value::Array(endpoints);
    }
    let mut metadata = json!({
        "name": service_entry_name(name),
        "namespace": namespace,
        "annotations": {KUBERNETES_SERVICE_ANNOTATION: "true"},
    });
    // The Service's age orders it among declarations of the same host.
    if let Some(created) = &service.metadata.creation_timestamp
        && let Ok(created) = serde_json::to_value(created)
    {
        metadata["creationTimestamp"] = created;
    }
    Some(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": metadata,
        "spec": spec,
    }))
}

/// What [`service_entry`] renders from, as resourceVersions: the Service's,
/// each slice's (in the order given), and those of the Pods the slices'
/// endpoints name (`-` for one not found). Equal lists render equal
/// documents. `None` if an object has no resourceVersion.
pub fn service_entry_versions(
    service: &Service,
    slices: &[&EndpointSlice],
    pods: &PodIndex<'_>,
) -> Option<Vec<String>> {
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let mut versions = vec![service.metadata.resource_version.clone()?];
    for slice in slices {
        let m = &slice.metadata;
        versions.push(format!(
            "slice {}/{} {}",
            m.namespace.as_deref().unwrap_or_default(),
            m.name.as_deref().unwrap_or_default(),
            m.resource_version.as_deref()?
        ));
        for r in slice.endpoints.iter().filter_map(|e| e.target_ref.as_ref()) {
            if r.kind.as_deref() != Some("Pod") {
                continue;
            }
            let ns = r.namespace.as_deref().unwrap_or(namespace);
            let name = r.name.as_deref().unwrap_or_default();
            let version = match pods.get(&(ns, name)) {
                Some(pod) => pod.metadata.resource_version.as_deref()?,
                None => "-",
            };
            versions.push(format!("pod {ns}/{name} {version}"));
        }
    }
    Some(versions)
}

/// The WorkloadEntry document standing for `pod`, for ServiceEntry
/// `workloadSelector`s to select: its IP, labels (with Istio's tlsMode and
/// workload name when it runs a sidecar), service account. `None` unless the
/// pod runs, is ready, has an IP and is not being deleted (istiod sends no
/// traffic to such endpoints either), and for a pod whose `pod-<name>` would
/// be longer than an object name may be.
pub fn workload_entry(pod: &Pod) -> Option<Value> {
    let name = pod.metadata.name.as_deref()?;
    let we_name = pod_workload_entry_name(name);
    if we_name.len() > MAX_NAME {
        return None;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if status.phase.as_deref() != Some("Running") || !ready {
        return None;
    }
    let ip = status.pod_ip.as_deref().filter(|ip| !ip.is_empty())?;
    let mut spec = endpoint(ip, &BTreeMap::new(), Some(pod));
    if spec.get("labels").is_none() {
        spec["labels"] = json!({});
    }
    Some(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {
            "name": we_name,
            "namespace": namespace,
            "annotations": {KUBERNETES_POD_ANNOTATION: "true"},
        },
        "spec": spec,
    }))
}

fn endpoint(address: &str, ports: &BTreeMap<String, i32>, pod: Option<&Pod>) -> Value {
    let mut ep = json!({"address": address});
    if !ports.is_empty() {
        ep["ports"] = json!(ports);
    }
    let Some(pod) = pod else {
        return ep;
    };
    let mut labels = pod.metadata.labels.clone().unwrap_or_default();
    let containers = pod.spec.iter().flat_map(|s| &s.containers);
    if !labels.contains_key(TLS_MODE_LABEL)
        && containers.into_iter().any(|c| c.name == SIDECAR_CONTAINER)
    {
        labels.insert(TLS_MODE_LABEL.into(), "istio".into());
    }
    // A name longer than a label value may be is not injected (the label
    // would make the whole document invalid): the catalog then names the
    // workload after the WorkloadEntry or ServiceEntry.
    if !labels.contains_key(WORKLOAD_NAME_LABEL)
        && let Some(workload) = workload_name(&pod.metadata)
        && workload.len() <= MAX_LABEL_VALUE
    {
        labels.insert(WORKLOAD_NAME_LABEL.into(), workload);
    }
    if !labels.is_empty() {
        ep["labels"] = json!(labels);
    }
    let sa = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    ep["serviceAccount"] = json!(sa);
    ep
}

/// The workload a pod belongs to, as Istio names it: the Deployment behind
/// a ReplicaSet (its name less the pod-template hash), else the controlling
/// owner, else the pod itself.
pub fn workload_name(meta: &ObjectMeta) -> Option<String> {
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let Some(owner) = owner else {
        return meta.name.clone();
    };
    let hash = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    if owner.kind == "ReplicaSet"
        && let Some(hash) = hash
        && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
    {
        return Some(deployment.to_owned());
    }
    Some(owner.name.clone())
}

/// Slices by the namespace and name of their Service.
pub fn slices_by_service(
    slices: &[std::sync::Arc<EndpointSlice>],
) -> BTreeMap<(String, String), Vec<&EndpointSlice>> {
    let mut out: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        out.entry((ns, svc.clone())).or_default().push(s.as_ref());
    }
    out
}
