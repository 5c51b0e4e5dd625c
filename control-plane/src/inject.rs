//! Sidecar injection: what the mutating webhook and `sluicectl inject` do to
//! a pod, in one pure function so both give byte-identical results.
//!
//! Follows Istio's injection: namespace label opt-in, pod annotation opt-out,
//! an iptables init container (its argument contract is documented in
//! [`capture`]), the proxy as a Kubernetes native sidecar, HTTP probe rewrite
//! (recorded for the proxy as described in [`probes`]) and Istio's labels.

pub mod capture;
pub mod probes;
pub mod sidecar;

#[cfg(test)]
mod tests;

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;
use std::collections::BTreeMap;

/// The label that opts a namespace in.
pub const NAMESPACE_LABEL: &str = "sluice-injection";
/// Istio's namespace label, honoured too so Istio namespaces carry over.
pub const ISTIO_NAMESPACE_LABEL: &str = "istio-injection";
/// The pod annotation that opts a pod out (`"false"`).
pub const INJECT_ANNOTATION: &str = "sidecar.sluice.io/inject";
/// Istio's opt-out annotation (also read as a label, as Istio does).
pub const ISTIO_INJECT_ANNOTATION: &str = "sidecar.istio.io/inject";
/// Records what was injected; its presence makes injection a no-op.
pub const STATUS_ANNOTATION: &str = "sidecar.sluice.io/status";
/// `"false"` keeps the app's HTTP probes as they are.
pub const REWRITE_PROBES_ANNOTATION: &str = "sidecar.sluice.io/rewriteAppHTTPProbers";
/// Istio's spelling of [`REWRITE_PROBES_ANNOTATION`].
pub const ISTIO_REWRITE_PROBES_ANNOTATION: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
/// Per-pod proxy settings (Istio's `ProxyConfig`, as YAML or JSON); Sluice reads `concurrency`.
pub const PROXY_CONFIG_ANNOTATION: &str = "proxy.sluice.io/config";
/// Istio's spelling of [`PROXY_CONFIG_ANNOTATION`].
pub const ISTIO_PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";
/// Istio's per-pod sidecar resources: (annotation, requests or limits, resource).
/// Setting any of them replaces the mesh-wide resources of the sidecar (and of
/// its init container) with only what these annotations set, as Istio does.
pub const RESOURCE_ANNOTATIONS: [(&str, &str, &str); 4] = [
    ("sidecar.istio.io/proxyCPU", "requests", "cpu"),
    ("sidecar.istio.io/proxyMemory", "requests", "memory"),
    ("sidecar.istio.io/proxyCPULimit", "limits", "cpu"),
    ("sidecar.istio.io/proxyMemoryLimit", "limits", "memory"),
];
/// The pod's own image for the sidecar and its init container, Sluice's
/// spelling first, then Istio's.
pub const PROXY_IMAGE_ANNOTATIONS: [&str; 2] = [
    "sidecar.sluice.io/proxyImage",
    "sidecar.istio.io/proxyImage",
];
/// Label telling peers this workload speaks mTLS (Istio's name, so policies carry over).
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// Istio's canonical service name label.
pub const CANONICAL_NAME_LABEL: &str = "service.istio.io/canonical-name";
/// Istio's canonical revision label.
pub const CANONICAL_REVISION_LABEL: &str = "service.istio.io/canonical-revision";

/// Labels that controllers stamp on each pod; they identify the pod rather
/// than the workload, and leaving them out of `SLUICE_LABELS` keeps the
/// webhook's output equal to `sluicectl inject`'s on the template.
const PER_POD_LABELS: [&str; 7] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "batch.kubernetes.io/controller-uid",
    "controller-uid",
];

/// Everything injection needs to know about the mesh (Helm values in a cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectConfig {
    /// Image of `sluice-proxy` (runs the sidecar and `sluice-proxy init`).
    pub proxy_image: String,
    /// Controller config stream address, e.g. `https://sluice-controller.sluice-system.svc:15012`
    /// (TLS, the sidecar proves itself with its projected token); a bare `host:port` is plaintext.
    pub controller: String,
    /// Certificate service address, e.g. `https://sluice-controller.sluice-system.svc:15012`;
    /// empty = no certificate (no mTLS).
    pub ca_address: String,
    /// SPIFFE trust domain of workload identities.
    pub trust_domain: String,
    /// UID the proxy runs as; iptables lets its traffic through unredirected.
    pub proxy_uid: i64,
    /// Resource requests of the sidecar container, e.g. `{"cpu": "50m", "memory": "32Mi"}`.
    pub requests: BTreeMap<String, String>,
    /// Resource limits of the sidecar container.
    pub limits: BTreeMap<String, String>,
    /// Worker threads of every sidecar (`meshConfig.defaultConfig.concurrency`);
    /// `None` leaves it to the proxy (the CPUs it may use, at most 2). A pod's
    /// `proxy.istio.io/config` annotation overrides it.
    pub concurrency: Option<u32>,
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            proxy_image: "ghcr.io/sluice-mesh/sluice-proxy:0.1.0".to_owned(),
            controller: "https://sluice-controller.sluice-system.svc:15012".to_owned(),
            ca_address: "https://sluice-controller.sluice-system.svc:15012".to_owned(),
            trust_domain: "cluster.local".to_owned(),
            proxy_uid: 1337,
            requests: BTreeMap::from([
                ("cpu".to_owned(), "50m".to_owned()),
                ("memory".to_owned(), "32Mi".to_owned()),
            ]),
            limits: BTreeMap::new(),
            concurrency: None,
        }
    }
}

/// Why a pod could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// An annotation has a value injection cannot use; names it.
    #[error("annotation {annotation}: {reason}")]
    Annotation { annotation: String, reason: String },
    /// The pod has no `spec` to put the sidecar in.
    #[error("pod has no spec")]
    MissingSpec,
}

/// What [`STATUS_ANNOTATION`] records (JSON, fields in this order).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    init_containers: [&'a str; 2],
    containers: [&'a str; 0],
    volumes: [&'a str; 2],
    image: &'a str,
}

/// Whether a pod in a namespace with `namespace_labels` gets a sidecar.
///
/// Istio's default policy: the namespace label decides, the pod can only
/// opt out; `hostNetwork` pods never get one (capture would hit the node).
pub fn wants_sidecar(namespace_labels: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let enabled = namespace_labels
        .get(NAMESPACE_LABEL)
        .or_else(|| namespace_labels.get(ISTIO_NAMESPACE_LABEL))
        .is_some_and(|v| v == "enabled");
    enabled && !opted_out(pod)
}

/// Whether the pod refuses a sidecar whoever asks: `hostNetwork`, or an
/// inject annotation (or Istio's label) saying false.
pub fn opted_out(pod: &Pod) -> bool {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let annotations = pod.metadata.annotations.as_ref();
    let labels = pod.metadata.labels.as_ref();
    // The first of these that is set decides: Sluice's spelling wins.
    let choice = [
        annotations.and_then(|a| a.get(INJECT_ANNOTATION)),
        labels.and_then(|l| l.get(INJECT_ANNOTATION)),
        annotations.and_then(|a| a.get(ISTIO_INJECT_ANNOTATION)),
        labels.and_then(|l| l.get(ISTIO_INJECT_ANNOTATION)),
    ]
    .into_iter()
    .flatten()
    .next();
    host_network || choice.is_some_and(|v| is_false(v))
}

/// Whether injection already happened (status annotation or proxy container present).
pub fn is_injected(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STATUS_ANNOTATION));
    let spec = pod.spec.as_ref();
    let has_proxy = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .any(|c| c.name == sidecar::PROXY_NAME);
    annotated || has_proxy
}

/// The pod with the sidecar, its init container and rewritten probes; a pod
/// that already has the sidecar comes back unchanged.
pub fn inject(pod: &Pod, cfg: &InjectConfig) -> Result<Pod, InjectError> {
    inject_workload(pod, &workload_name(pod), cfg)
}

/// [`inject`] for a pod of the workload `workload` (e.g. a Deployment's pod
/// template, which has no name or owner to derive it from).
pub fn inject_workload(pod: &Pod, workload: &str, cfg: &InjectConfig) -> Result<Pod, InjectError> {
    if is_injected(pod) {
        return Ok(pod.clone());
    }
    // Validate every annotation before changing anything.
    let capture = capture::Capture::from_pod(pod, cfg.proxy_uid)?;
    let resources = pod_resources(pod)?;
    let image = pod_image(pod)?;
    let overridden;
    let cfg = if resources.is_some() || image.is_some() {
        let mut own = cfg.clone();
        if let Some((requests, limits)) = resources {
            own.requests = requests;
            own.limits = limits;
        }
        if let Some(image) = image {
            own.proxy_image = image;
        }
        overridden = own;
        &overridden
    } else {
        cfg
    };
    // Istio's order: the pod's ProxyConfig, the mesh's, then the sidecar's CPU limit.
    let concurrency = proxy_concurrency(pod)?.or(cfg.concurrency).or_else(|| {
        cfg.limits
            .get("cpu")
            .and_then(|cpu| concurrency_of_cpu_limit(cpu))
    });
    let mut pod = pod.clone();
    let rewrite = !annotation_is_false(&pod, REWRITE_PROBES_ANNOTATION)
        && !annotation_is_false(&pod, ISTIO_REWRITE_PROBES_ANNOTATION);

    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    let name = canonical(
        labels,
        CANONICAL_NAME_LABEL,
        ["app.kubernetes.io/name", "app"],
    )
    .unwrap_or_else(|| workload.to_owned());
    let revision = canonical(
        labels,
        CANONICAL_REVISION_LABEL,
        ["app.kubernetes.io/version", "version"],
    )
    .unwrap_or_else(|| "latest".to_owned());
    labels.insert(CANONICAL_NAME_LABEL.to_owned(), name);
    labels.insert(CANONICAL_REVISION_LABEL.to_owned(), revision);
    labels.insert(TLS_MODE_LABEL.to_owned(), "istio".to_owned());
    let reported: BTreeMap<String, String> = labels
        .iter()
        .filter(|(k, _)| !PER_POD_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();

    let spec = pod.spec.as_mut().ok_or(InjectError::MissingSpec)?;
    let mut app_probes = probes::AppProbes::new();
    if rewrite {
        for container in &mut spec.containers {
            probes::rewrite(container, &mut app_probes);
        }
    }
    let app_probes = if app_probes.is_empty() {
        None
    } else {
        // A map of strings to JSON values always serialises.
        serde_json::to_string(&app_probes).ok()
    };
    let proxy = sidecar::proxy_container(
        cfg,
        &sidecar::Workload {
            name: workload,
            labels: &reported,
            app_probes,
            concurrency,
        },
    );
    // Init containers run in order: capture first, then the proxy, so the
    // pod's own init containers already reach the mesh through it.
    let init = spec.init_containers.get_or_insert_with(Vec::new);
    init.splice(0..0, [sidecar::init_container(cfg, &capture), proxy]);
    spec.volumes
        .get_or_insert_with(Vec::new)
        .extend(sidecar::volumes());

    let status = Status {
        init_containers: [sidecar::INIT_NAME, sidecar::PROXY_NAME],
        containers: [],
        volumes: [sidecar::TOKEN_VOLUME, sidecar::CA_ROOT_VOLUME],
        image: &cfg.proxy_image,
    };
    // Plain strings and arrays always serialise.
    let status = serde_json::to_string(&status).unwrap_or_default();
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(STATUS_ANNOTATION.to_owned(), status);
    // Point annotation-driven Prometheus scrapes at the proxy's metrics, as
    // Istio does; an app that already asks to be scraped keeps its settings.
    if !annotations.contains_key("prometheus.io/scrape") {
        for (key, value) in [
            ("prometheus.io/scrape", "true".to_owned()),
            ("prometheus.io/port", capture::STATS_PORT.to_string()),
            ("prometheus.io/path", "/stats/prometheus".to_owned()),
        ] {
            annotations.insert(key.to_owned(), value);
        }
    }
    Ok(pod)
}

/// The workload a pod belongs to, as Istio names it: the owning
/// ReplicaSet's Deployment, the owning Job's CronJob, the owner, or the pod.
pub fn workload_name(pod: &Pod) -> String {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.iter().flatten().next());
    if let Some(owner) = owner {
        let hash = meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"));
        return match (owner.kind.as_str(), hash) {
            ("ReplicaSet", Some(hash)) => owner
                .name
                .strip_suffix(hash.as_str())
                .and_then(|n| n.strip_suffix('-'))
                .unwrap_or(&owner.name)
                .to_owned(),
            ("Job", _) => cron_job_name(&owner.name).unwrap_or(&owner.name).to_owned(),
            _ => owner.name.clone(),
        };
    }
    if let Some(name) = meta.name.as_deref().filter(|n| !n.is_empty()) {
        return name.to_owned();
    }
    meta.generate_name
        .as_deref()
        .map(|n| n.trim_end_matches('-').to_owned())
        .unwrap_or_default()
}

/// A CronJob names its Jobs `<cronjob>-<scheduled minutes>` (8 to 10 digits).
fn cron_job_name(job: &str) -> Option<&str> {
    let (base, suffix) = job.rsplit_once('-')?;
    (!base.is_empty()
        && (8..=10).contains(&suffix.len())
        && suffix.bytes().all(|b| b.is_ascii_digit()))
    .then_some(base)
}

/// The label `key` if set, else the first of `fallbacks` that is.
fn canonical<const N: usize>(
    labels: &BTreeMap<String, String>,
    key: &str,
    fallbacks: [&str; N],
) -> Option<String> {
    std::iter::once(key)
        .chain(fallbacks)
        .find_map(|k| labels.get(k).filter(|v| !v.is_empty()).cloned())
}

/// Resource name → quantity, e.g. `cpu` → `50m`.
pub type Quantities = BTreeMap<String, String>;

/// Sidecar resources from JSON shaped like a container's `resources`
/// (`{"requests": {...}, "limits": {...}}`, either may be left out): the
/// requests and limits maps. Numbers are taken as quantities (`cpu: 1`).
pub fn parse_resources(json: &str) -> Result<(Quantities, Quantities), String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let object = match &value {
        serde_json::Value::Null => return Ok((Quantities::new(), Quantities::new())),
        serde_json::Value::Object(o) => o,
        _ => return Err("expected an object with requests and limits".into()),
    };
    if let Some(key) = object.keys().find(|k| *k != "requests" && *k != "limits") {
        return Err(format!(
            "unknown field `{key}` (expected requests and limits)"
        ));
    }
    let (requests, limits) = (
        quantities(object, "requests")?,
        quantities(object, "limits")?,
    );
    for (field, m) in [("requests", &requests), ("limits", &limits)] {
        for (name, q) in m {
            if quantity(q).is_none() {
                return Err(format!(
                    "{field}.{name}: {q:?} is not a quantity (such as \"100m\" or \"64Mi\")"
                ));
            }
        }
    }
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name)
            && quantity(request) > quantity(limit)
        {
            return Err(format!(
                "requests.{name}: {request} is more than limits.{name} {limit}; the API server would refuse every injected pod"
            ));
        }
    }
    Ok((requests, limits))
}

/// The `field` map of a resources object (absent or null: empty), values as text.
fn quantities(
    object: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Quantities, String> {
    let map = match object.get(field) {
        None | Some(serde_json::Value::Null) => return Ok(Quantities::new()),
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => {
            return Err(format!(
                "{field}: expected a map of resource name to quantity"
            ));
        }
    };
    map.iter()
        .map(|(name, q)| match q {
            serde_json::Value::String(s) if !s.is_empty() => Ok((name.clone(), s.clone())),
            serde_json::Value::Number(n) => Ok((name.clone(), n.to_string())),
            _ => Err(format!(
                "{field}.{name}: expected a quantity such as \"100m\" or \"64Mi\""
            )),
        })
        .collect()
}

/// The image a [`PROXY_IMAGE_ANNOTATIONS`] annotation asks for (Istio's
/// `sidecar.istio.io/proxyImage`: the sidecar and its init container), if any.
fn pod_image(pod: &Pod) -> Result<Option<String>, InjectError> {
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return Ok(None);
    };
    let Some((annotation, value)) = PROXY_IMAGE_ANNOTATIONS
        .iter()
        .find_map(|a| annotations.get(*a).map(|v| (*a, v)))
    else {
        return Ok(None);
    };
    let image = value.trim();
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InjectError::Annotation {
            annotation: annotation.to_owned(),
            reason: format!(
                "{value:?} is not an image reference (such as \"registry/sluice-proxy:0.1.0\")"
            ),
        });
    }
    Ok(Some(image.to_owned()))
}

/// The sidecar's requests and limits from the pod's [`RESOURCE_ANNOTATIONS`],
/// or `None` when it sets none of them (the mesh-wide resources apply).
fn pod_resources(pod: &Pod) -> Result<Option<(Quantities, Quantities)>, InjectError> {
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return Ok(None);
    };
    let (mut requests, mut limits) = (Quantities::new(), Quantities::new());
    let mut any = false;
    for (annotation, field, resource) in RESOURCE_ANNOTATIONS {
        let Some(value) = annotations.get(annotation) else {
            continue;
        };
        any = true;
        if quantity(value).is_none() {
            return Err(InjectError::Annotation {
                annotation: annotation.to_owned(),
                reason: format!(
                    "{value:?} is not a quantity (such as \"100m\" or \"64Mi\") for the sidecar's {field}.{resource}"
                ),
            });
        }
        let map = if field == "requests" {
            &mut requests
        } else {
            &mut limits
        };
        map.insert(resource.to_owned(), value.clone());
    }
    if !any {
        return Ok(None);
    }
    for (annotation, field, resource) in RESOURCE_ANNOTATIONS {
        if field != "requests" {
            continue;
        }
        if let (Some(request), Some(limit)) = (requests.get(resource), limits.get(resource))
            && quantity(request) > quantity(limit)
        {
            return Err(InjectError::Annotation {
                annotation: annotation.to_owned(),
                reason: format!(
                    "request {request} is more than the {resource} limit {limit}; the API server would refuse the pod"
                ),
            });
        }
    }
    Ok(Some((requests, limits)))
}

/// `concurrency` of the pod's proxy-config annotations: Sluice's spelling,
/// then Istio's; the first that sets it wins. Other `ProxyConfig` fields are
/// not read, but each annotation present must be a ProxyConfig map.
fn proxy_concurrency(pod: &Pod) -> Result<Option<u32>, InjectError> {
    let Some(annotations) = pod.metadata.annotations.as_ref() else {
        return Ok(None);
    };
    let mut found = None;
    for name in [PROXY_CONFIG_ANNOTATION, ISTIO_PROXY_CONFIG_ANNOTATION] {
        let Some(text) = annotations.get(name) else {
            continue;
        };
        let bad = |reason: String| InjectError::Annotation {
            annotation: name.to_owned(),
            reason,
        };
        let config: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| bad(format!("not a ProxyConfig in YAML or JSON: {e}")))?;
        let config = match config {
            serde_yaml::Value::Null => continue,
            serde_yaml::Value::Mapping(m) => m,
            _ => {
                return Err(bad(
                    "not a ProxyConfig in YAML or JSON: expected a map".into()
                ));
            }
        };
        match config.get("concurrency") {
            None | Some(serde_yaml::Value::Null) => {}
            Some(v) => {
                let n = concurrency_value(v).ok_or_else(|| {
                    bad(format!(
                        "concurrency: {CONCURRENCY_EXPECTED}, got {}",
                        serde_yaml::to_string(v).unwrap_or_default().trim()
                    ))
                })?;
                found = found.or(Some(n));
            }
        }
    }
    Ok(found)
}

/// What a `concurrency` value must be.
pub const CONCURRENCY_EXPECTED: &str =
    "expected a whole number of worker threads, 0 or more (0 = every CPU)";

/// A `ProxyConfig.concurrency` value: a non-negative int32, written as a
/// number or (as protobuf JSON allows) a string of digits.
pub fn concurrency_value(v: &serde_yaml::Value) -> Option<u32> {
    let n = match v {
        serde_yaml::Value::Number(n) => n.as_u64()?,
        serde_yaml::Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()?
        }
        _ => return None,
    };
    u32::try_from(n).ok().filter(|n| i32::try_from(*n).is_ok())
}

/// Worker threads Istio gives a sidecar whose CPU limit is `cpu` when
/// `concurrency` is unset: the limit rounded up (`2500m` → 3, `500m` → 1).
pub fn concurrency_of_cpu_limit(cpu: &str) -> Option<u32> {
    let cores = quantity(cpu)?;
    (cores > 0.0).then(|| cores.ceil().min(f64::from(i32::MAX)) as u32)
}

/// A Kubernetes quantity (`100m`, `1.5`, `64Mi`, `1e3`, `2G`) as a number of
/// base units; `None` when it is not one.
pub fn quantity(q: &str) -> Option<f64> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() || number.matches('.').count() > 1 || number == "." {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e => {
            let exp: i32 = e.strip_prefix(['e', 'E'])?.parse().ok()?;
            10f64.powi(exp)
        }
    };
    Some(number * scale)
}

fn annotation_is_false(pod: &Pod, key: &str) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| is_false(v))
}

/// Go's `strconv.ParseBool` false spellings, as Istio reads these values.
fn is_false(value: &str) -> bool {
    matches!(value.trim(), "false" | "False" | "FALSE" | "f" | "F" | "0")
}
