//! Where `describe` reads the mesh from: a `--config-dir` folder (workloads
//! from WorkloadEntry/ServiceEntry) or the Kubernetes API server (Istio
//! objects, Services, EndpointSlices and Pods), into the controller's own index.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject, ListParams};
use sluice_control_plane::index::{Intake, MeshIndex};
use sluice_control_plane::kube_source::{self, catalog};
use sluice_control_plane::mesh_config::MeshConfig;
use sluice_control_plane::metrics::ControllerMetrics;
use sluice_control_plane::resource::Resource;
use sluice_control_plane::services::{TLS_MODE_LABEL, WORKLOAD_NAME_LABEL};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the mesh could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The config folder does not exist or is not a folder.
    #[error("--config-dir {0}: not a readable folder")]
    ConfigDir(PathBuf),
    /// The API server is unreachable or refused a list.
    #[error("Kubernetes: {0}")]
    Kube(String),
}

/// One workload instance: a Pod, a WorkloadEntry or a ServiceEntry endpoint.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Instance {
    /// Pod (or WorkloadEntry) name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// What it came from: `Pod`, `WorkloadEntry` or `ServiceEntry endpoint`.
    pub kind: &'static str,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Service account.
    pub service_account: String,
    /// Addresses.
    pub ips: Vec<IpAddr>,
    /// Workload (Deployment) name, as metrics and the proxy id use it.
    pub workload: String,
    /// Whether it runs a sidecar.
    pub sidecar: bool,
}

/// The mesh as the controller would see it, plus its workload instances.
pub struct Mesh {
    /// The controller's index (accepted objects, rejections, service catalog).
    pub index: MeshIndex,
    /// Every known workload instance.
    pub instances: Vec<Instance>,
    /// Kinds that could not be read (e.g. CRD not installed).
    pub unreadable: Vec<String>,
}

impl Mesh {
    /// The instance `name` (or with address `name`) in `namespace`.
    pub fn instance(&self, name: &str, namespace: &str) -> Option<&Instance> {
        let ip: Option<IpAddr> = name.parse().ok();
        self.instances.iter().find(|i| {
            i.namespace == namespace && (i.name == name || ip.is_some_and(|ip| i.ips.contains(&ip)))
        })
    }
}

fn intake(root_namespace: &str) -> Intake {
    Intake::with_mesh(MeshConfig {
        root_namespace: root_namespace.to_owned(),
        ..MeshConfig::default()
    })
}

/// Reads a `--config-dir` folder as the controller does at startup.
pub fn local(dir: &Path, root_namespace: &str) -> Result<Mesh, SourceError> {
    if !dir.is_dir() {
        return Err(SourceError::ConfigDir(dir.to_path_buf()));
    }
    let metrics = Arc::new(ControllerMetrics::new());
    let config = sluice_control_plane::config_dir::ConfigDir::new(
        dir.to_path_buf(),
        Duration::ZERO,
        metrics,
    );
    let index = config.load(&mut intake(root_namespace));
    let instances = local_instances(&index);
    Ok(Mesh {
        index,
        instances,
        unreadable: Vec::new(),
    })
}

/// WorkloadEntries and inline ServiceEntry endpoints, named as the catalog
/// names their workloads (`<entry>-<i>` for inline endpoints).
fn local_instances(index: &MeshIndex) -> Vec<Instance> {
    let mut out = Vec::new();
    for r in index.resources.values() {
        let (entries, kind) = match r.as_ref() {
            Resource::WorkloadEntry(we) => (vec![(r.name().to_owned(), &we.spec)], "WorkloadEntry"),
            Resource::ServiceEntry(se) => (
                se.spec
                    .endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (format!("{}-{i}", r.name()), e))
                    .collect(),
                "ServiceEntry endpoint",
            ),
            _ => continue,
        };
        let namespace = r.namespace();
        for (name, spec) in entries {
            let Some(ip) = spec.address.as_deref().and_then(|a| a.parse().ok()) else {
                continue;
            };
            out.push(Instance {
                workload: spec
                    .labels
                    .get(WORKLOAD_NAME_LABEL)
                    .cloned()
                    .unwrap_or_else(|| name.clone()),
                name,
                namespace: namespace.to_owned(),
                kind,
                sidecar: spec.labels.get(TLS_MODE_LABEL).map(String::as_str) == Some("istio"),
                labels: spec.labels.clone(),
                service_account: spec
                    .service_account
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                ips: vec![ip],
            });
        }
    }
    out
}

/// Reads the API server once: every Istio kind, Services, EndpointSlices and
/// Pods, rendered into documents exactly as the controller renders its watches.
pub async fn kubernetes(
    kubeconfig: Option<&Path>,
    root_namespace: &str,
) -> Result<Mesh, SourceError> {
    let kube_err = |e: &dyn std::fmt::Display| SourceError::Kube(e.to_string());
    let mut config = kube_source::client_config(kubeconfig)
        .await
        .map_err(|e| kube_err(&e))?;
    // A one-shot command reports an unreachable server at once.
    config.default_retry = false;
    let client = kube::Client::try_from(config).map_err(|e| kube_err(&e))?;
    let mut files: BTreeMap<String, Result<String, String>> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for ar in kube_source::watch::istio_resources() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for object in list.items {
                    let (Some(ns), Some(name)) =
                        (&object.metadata.namespace, &object.metadata.name)
                    else {
                        continue;
                    };
                    let doc = catalog::istio_document(&object);
                    files.insert(catalog::file_key(&ar.kind, ns, name), doc);
                }
            }
            // A CRD that is not installed: nothing of that kind applies.
            Err(kube::Error::Api(status)) if status.code == 404 => {
                unreadable.push(format!("{} ({}): CRD not installed", ar.kind, ar.group));
            }
            Err(e) => return Err(SourceError::Kube(format!("listing {}: {e}", ar.kind))),
        }
    }
    let list_err = |what: &str, e: kube::Error| SourceError::Kube(format!("listing {what}: {e}"));
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| list_err("Services", e))?
        .items;
    let slices: Vec<Arc<EndpointSlice>> = Api::<EndpointSlice>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| list_err("EndpointSlices", e))?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let pods = Api::<Pod>::all(client)
        .list(&ListParams::default())
        .await
        .map_err(|e| list_err("Pods", e))?
        .items;
    let pod_index: catalog::PodIndex<'_> = pods
        .iter()
        .filter_map(|p| {
            let m = &p.metadata;
            Some(((m.namespace.as_deref()?, m.name.as_deref()?), p))
        })
        .collect();
    let by_service = catalog::slices_by_service(&slices);
    for svc in &services {
        let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            continue;
        };
        let own = by_service
            .get(&(ns.clone(), name.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        if let Some(doc) = catalog::service_entry(svc, own, &pod_index) {
            let text = serde_yaml::to_string(&doc).map_err(|e| e.to_string());
            files.insert(catalog::file_key("Service", ns, name), text);
        }
    }
    let metrics = ControllerMetrics::new();
    let index = intake(root_namespace).ingest(files, Instant::now(), &metrics);
    Ok(Mesh {
        index,
        instances: pods.iter().filter_map(pod_instance).collect(),
        unreadable,
    })
}

/// A Pod as a workload instance; a sidecar is the `sluice-proxy` container
/// (a native sidecar in `initContainers` by default, or a plain container).
fn pod_instance(pod: &Pod) -> Option<Instance> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let sidecar = spec.is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == catalog::SIDECAR_CONTAINER)
    });
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    Some(Instance {
        name: m.name.clone()?,
        namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
        kind: "Pod",
        labels: m.labels.clone().unwrap_or_default(),
        service_account: spec
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        ips,
        workload: catalog::workload_name(m).unwrap_or_default(),
        sidecar,
    })
}
