//! `sluicectl describe pod|service NAME`: which Istio objects apply to a
//! workload or a service, where a sample request goes, and what conflicts.
//! Reads a `--config-dir` folder or the API server, like the controller,
//! and answers with the controller's translation and the proxy's route code.

mod conflicts;
mod render;
mod report;
mod request;
mod source;
#[cfg(test)]
mod tests;

use report::{ServiceView, WorkloadView};
use request::SampleRequest;
use serde::Serialize;
use sluice_control_plane::translate::{ProxyIdentity, fqdn, service_for, translate};
use source::{Mesh, SourceError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// What to describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A workload instance (Pod, WorkloadEntry, ServiceEntry endpoint).
    #[value(alias = "po", alias = "pods", alias = "workload")]
    Pod,
    /// A service (Kubernetes Service or ServiceEntry host).
    #[value(alias = "svc", alias = "services")]
    Service,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Pod => "pod",
            Kind::Service => "service",
        })
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Human-readable text.
    Text,
    /// JSON.
    Json,
}

/// Flags of `sluicectl describe`.
#[derive(clap::Args)]
pub struct Args {
    /// `pod` or `service`.
    pub kind: Kind,
    /// Pod (or WorkloadEntry) name or address; service name or host.
    pub name: String,
    /// Namespace of the pod or service.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Read the YAML folder the controller reads (`--config-dir` mode).
    #[arg(long, conflicts_with = "kubeconfig")]
    pub config_dir: Option<PathBuf>,
    /// Kubernetes: this kubeconfig (default: as kubectl finds one).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace whose policies apply mesh-wide (the controller's --root-namespace).
    #[arg(long, env = "SLUICE_ROOT_NAMESPACE", default_value = "istio-system")]
    pub root_namespace: String,
    /// Sample request, e.g. 'GET http://reviews:9080/path -H end-user:jason'.
    #[arg(long)]
    pub request: Option<String>,
    /// Sample request URL (instead of, or overriding, the one in --request).
    #[arg(long)]
    pub url: Option<String>,
    /// Sample request method (default GET).
    #[arg(long)]
    pub method: Option<String>,
    /// Sample request header `name:value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Service mode: send the sample request from this pod (default: a
    /// workload without labels in the service's namespace).
    #[arg(long)]
    pub from: Option<String>,
    /// Also ask the live sidecar's admin port (`/debug/route`) and compare.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: Output,
}

/// The described object.
#[derive(Debug, Serialize)]
pub struct Target {
    /// `pod` or `service`.
    pub kind: Kind,
    /// Name as found.
    pub name: String,
    /// Namespace.
    pub namespace: String,
}

/// The sidecar's own answer to the sample request.
#[derive(Debug, Serialize)]
pub struct LiveAnswer {
    /// Admin address asked.
    pub admin: SocketAddr,
    /// Its `/debug/route` JSON.
    pub answer: Option<serde_json::Value>,
    /// One-line summary of it.
    pub summary: Option<String>,
    /// Why there is no answer.
    pub error: Option<String>,
}

/// Where the sample request goes.
#[derive(Debug, Serialize)]
pub struct RouteAnswer {
    /// The request.
    pub request: SampleRequest,
    /// It as one line.
    pub line: String,
    /// Proxy id of the sending sidecar.
    pub from: String,
    /// `/debug/route` run on the translated config.
    pub simulated: serde_json::Value,
    /// One-line summary of it.
    pub simulated_summary: String,
    /// The live sidecar's answer, with `--admin`.
    pub live: Option<LiveAnswer>,
    /// Whether both agree (None without an answer from the sidecar).
    pub agree: Option<bool>,
    /// Where they differ.
    pub differences: Vec<String>,
}

/// Everything `describe` found.
#[derive(Debug, Serialize)]
pub struct Description {
    /// What was described.
    pub target: Target,
    /// `config-dir <path>` or `kubernetes`.
    pub source: String,
    /// Revision of the index read.
    pub revision: u64,
    /// Proxy id whose view of the services is shown.
    pub viewer: String,
    /// Services (pod: those it serves).
    pub services: Vec<ServiceView>,
    /// Inbound side of the workload (pod) or of each endpoint (service).
    pub workloads: Vec<WorkloadView>,
    /// The sample request's route.
    pub request: Option<RouteAnswer>,
    /// Conflicts and likely mistakes.
    pub warnings: Vec<String>,
}

/// Why describing failed.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The mesh could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// No such pod or service.
    #[error("{0}")]
    NotFound(String),
    /// The sample request is unusable.
    #[error(transparent)]
    Request(#[from] request::RequestError),
}

/// Runs `describe`: 0 with a description (warnings included), 2 on errors.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("describe: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(describe(&args)) {
        Ok(d) => {
            match args.output {
                Output::Json => match serde_json::to_string_pretty(&d) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("describe: {e}");
                        return ExitCode::from(2);
                    }
                },
                Output::Text => print!("{}", render::text(&d)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("describe: {e}");
            ExitCode::from(2)
        }
    }
}

/// Reads the mesh and describes what `args` names.
pub async fn describe(args: &Args) -> Result<Description, DescribeError> {
    let sample = SampleRequest::from_flags(
        args.request.as_deref(),
        args.url.as_deref(),
        args.method.as_deref(),
        &args.headers,
    )?;
    let (mesh, source) = match &args.config_dir {
        Some(dir) => (
            source::local(dir, &args.root_namespace)?,
            format!("config-dir {}", dir.display()),
        ),
        None => (
            source::kubernetes(args.kubeconfig.as_deref(), &args.root_namespace).await?,
            "kubernetes".to_owned(),
        ),
    };
    let mut d = match args.kind {
        Kind::Pod => describe_pod(&mesh, args, source)?,
        Kind::Service => describe_service(&mesh, args, source)?,
    };
    if let Some(sample) = sample {
        let viewer = match (args.kind, &args.from) {
            (Kind::Pod, _) => pod(&mesh, &args.name, &args.namespace)?,
            (Kind::Service, Some(from)) => pod(&mesh, from, &args.namespace)?,
            (Kind::Service, None) => report::generic_client(&d.target.namespace),
        };
        d.request = Some(route(&mesh, &viewer, sample, args.admin).await?);
    }
    Ok(d)
}

fn instance<'m>(
    mesh: &'m Mesh,
    name: &str,
    namespace: &str,
) -> Result<&'m source::Instance, DescribeError> {
    mesh.instance(name, namespace).ok_or_else(|| {
        let known: Vec<&str> = mesh
            .instances
            .iter()
            .filter(|i| i.namespace == namespace)
            .map(|i| i.name.as_str())
            .collect();
        DescribeError::NotFound(format!(
            "no pod {name} in namespace {namespace} (known there: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })
}

fn pod(mesh: &Mesh, name: &str, namespace: &str) -> Result<ProxyIdentity, DescribeError> {
    instance(mesh, name, namespace).map(report::identity)
}

fn describe_pod(mesh: &Mesh, args: &Args, source: String) -> Result<Description, DescribeError> {
    let instance = instance(mesh, &args.name, &args.namespace)?;
    let identity = report::identity(instance);
    let config = translate(&mesh.index, &identity);
    let mut hosts: Vec<&str> = Vec::new();
    for p in config.inbound.iter().flat_map(|i| &i.ports) {
        if !hosts.contains(&p.service.as_str()) {
            hosts.push(&p.service);
        }
    }
    let services: Vec<ServiceView> = hosts
        .iter()
        // The inbound side serves the declarations of the pod's namespace.
        .filter_map(|h| mesh.index.catalog.declared_in(h, &identity.namespace))
        .map(|s| report::service_view(&mesh.index, &identity, s))
        .collect();
    let workloads = vec![report::workload_view(mesh, instance, &config)];
    let warnings = warnings(mesh, &identity, &services, &workloads);
    Ok(Description {
        target: Target {
            kind: Kind::Pod,
            name: instance.name.clone(),
            namespace: instance.namespace.clone(),
        },
        source,
        revision: mesh.index.revision,
        viewer: identity.id,
        services,
        workloads,
        request: None,
        warnings,
    })
}

fn describe_service(
    mesh: &Mesh,
    args: &Args,
    source: String,
) -> Result<Description, DescribeError> {
    let catalog = &mesh.index.catalog;
    // A host declared in several namespaces: the declaration of the
    // namespace asked about, else the first.
    let declared = |host: &str| {
        catalog
            .declared_in(host, &args.namespace)
            .or_else(|| catalog.services.get(host))
    };
    let service = declared(&fqdn(&args.name, &args.namespace))
        .or_else(|| declared(&args.name.to_ascii_lowercase()))
        .ok_or_else(|| {
            DescribeError::NotFound(format!(
                "no service {} in namespace {} (hosts known: {})",
                args.name,
                args.namespace,
                catalog
                    .services
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let viewer = match &args.from {
        Some(from) => pod(mesh, from, &args.namespace)?,
        None => report::generic_client(&service.namespace),
    };
    // What the viewer's sidecar uses for the host (its own namespace's
    // declaration, else the first it may see), as `translate` chooses it.
    let service = service_for(&mesh.index, &viewer, &service.fqdn).unwrap_or(service);
    let view = report::service_view(&mesh.index, &viewer, service);
    let mut workloads = Vec::new();
    for e in &service.endpoints {
        let Ok(ip) = e.address.parse::<std::net::IpAddr>() else {
            continue;
        };
        let found = mesh
            .instances
            .iter()
            .find(|i| i.namespace == e.namespace && i.ips.contains(&ip));
        if let Some(instance) = found {
            let config = translate(&mesh.index, &report::identity(instance));
            workloads.push(report::workload_view(mesh, instance, &config));
        }
    }
    let services = vec![view];
    let warnings = warnings(mesh, &viewer, &services, &workloads);
    Ok(Description {
        target: Target {
            kind: Kind::Service,
            name: service.fqdn.clone(),
            namespace: service.namespace.clone(),
        },
        source,
        revision: mesh.index.revision,
        viewer: viewer.id,
        services,
        workloads,
        request: None,
        warnings,
    })
}

fn warnings(
    mesh: &Mesh,
    viewer: &ProxyIdentity,
    services: &[ServiceView],
    workloads: &[WorkloadView],
) -> Vec<String> {
    let mut out = conflicts::mesh_warnings(&mesh.index, &mesh.unreadable);
    for s in services {
        out.extend(conflicts::service_warnings(&mesh.index, viewer, s));
        out.extend(conflicts::tls_conflicts(&mesh.index, s, workloads));
    }
    for w in workloads {
        out.extend(conflicts::workload_warnings(w));
    }
    // Endpoints without a sidecar that no workload section above covers.
    let covered: Vec<String> = workloads
        .iter()
        .flat_map(|w| w.instance.ips.iter().map(ToString::to_string))
        .collect();
    for s in services {
        for e in s
            .endpoints
            .iter()
            .filter(|e| !e.sidecar && !covered.contains(&e.address))
        {
            out.push(format!(
                "endpoint {} ({}) of {} has no sidecar: its inbound policies are not enforced",
                e.address, e.workload, s.host
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|w| seen.insert(w.clone()));
    out
}

async fn route(
    mesh: &Mesh,
    viewer: &ProxyIdentity,
    sample: SampleRequest,
    admin: Option<SocketAddr>,
) -> Result<RouteAnswer, DescribeError> {
    let config = translate(&mesh.index, viewer);
    let simulated = request::simulate(config, &mesh.index.revision.to_string(), &sample)?;
    let live = match admin {
        Some(addr) => Some(match request::ask_sidecar(addr, &sample).await {
            Ok(answer) => LiveAnswer {
                admin: addr,
                summary: Some(request::summary(&answer)),
                answer: Some(answer),
                error: None,
            },
            Err(e) => LiveAnswer {
                admin: addr,
                answer: None,
                summary: None,
                error: Some(e.to_string()),
            },
        }),
        None => None,
    };
    let differences = live
        .as_ref()
        .and_then(|l| l.answer.as_ref())
        .map(|a| request::differences(&simulated, a))
        .unwrap_or_default();
    let agree = live
        .as_ref()
        .and_then(|l| l.answer.as_ref())
        .map(|_| differences.is_empty());
    Ok(RouteAnswer {
        line: sample.line(),
        from: viewer.id.clone(),
        simulated_summary: request::summary(&simulated),
        simulated,
        request: sample,
        live,
        agree,
        differences,
    })
}
