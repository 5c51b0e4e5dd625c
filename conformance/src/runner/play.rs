//! Plays one scenario's steps against a fresh local mesh.
use crate::client::{self, Call, Outcome, Via};
use crate::mesh::kube::Kube;
use crate::mesh::{LocalMesh, MeshOptions};
use crate::scenario::{Request, Scenario, Step, Workload};
use crate::{expect, metrics};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Per-request timeout: long enough for `/delay` tests, short enough for the 30 s budget.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts the mesh in `work_dir`, plays every step and stops the mesh; `Err` says which step
/// failed and how (steps are numbered from 1).
pub async fn play(
    scenario: &Scenario,
    work_dir: &Path,
    bin_dir: Option<PathBuf>,
    kube: Option<Kube>,
) -> Result<(), String> {
    let steps = scenario.resolved_steps()?;
    let mut opts = MeshOptions::new(work_dir.to_path_buf());
    opts.bin_dir = bin_dir;
    opts.mtls = scenario.mtls;
    if kube.is_some() {
        // Registering pods and waiting for EndpointSlices adds a few seconds.
        opts.start_timeout = Duration::from_secs(40);
    }
    opts.kube = kube;
    let mut mesh = LocalMesh::start(&scenario.workloads, &scenario.config, opts)
        .await
        .map_err(|e| format!("mesh start: {e}"))?;
    let mut rr = 0usize;
    let mut result = Ok(());
    for (n, step) in steps.iter().enumerate() {
        if let Err(why) = play_step(&mut mesh, scenario, step, &mut rr).await {
            result = Err(format!("step {}: {why}", n + 1));
            break;
        }
    }
    mesh.shutdown().await;
    result
}

async fn play_step(
    mesh: &mut LocalMesh,
    scenario: &Scenario,
    step: &Step,
    rr: &mut usize,
) -> Result<(), String> {
    match step {
        Step::Request(call) => {
            let (req, exp) = &**call;
            let outcomes = send_all(mesh, &scenario.workloads, req, rr).await?;
            expect::check(exp, &outcomes)
        }
        Step::Behave(b) => {
            let selected = selected(
                mesh,
                &b.service,
                b.version.as_deref(),
                b.instances.as_deref(),
            )?;
            for n in selected {
                mesh.behave_with(n, b.status, b.grpc_status, b.delay_ms)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Step::Apply(yaml) => mesh.apply(yaml).await.map_err(|e| format!("apply: {e}")),
        Step::Delete(yaml) => mesh.delete(yaml).await.map_err(|e| format!("delete: {e}")),
        Step::SleepMs(ms) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            Ok(())
        }
        Step::Kill(s) => {
            for n in selected(
                mesh,
                &s.service,
                s.version.as_deref(),
                s.instances.as_deref(),
            )? {
                mesh.kill_echo(n).await;
            }
            Ok(())
        }
        Step::Start(s) => {
            for n in selected(
                mesh,
                &s.service,
                s.version.as_deref(),
                s.instances.as_deref(),
            )? {
                mesh.start_echo(n).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Step::Metrics(m) => {
            let mut samples = Vec::new();
            for n in selected(mesh, &m.of, m.version.as_deref(), None)? {
                let addr = mesh.instances()[n].stats_addr();
                samples.extend(metrics::scrape(addr).await.map_err(|e| e.to_string())?);
            }
            metrics::evaluate(&m.expect, &samples)
        }
    }
}

fn selected(
    mesh: &LocalMesh,
    service: &str,
    version: Option<&str>,
    indexes: Option<&[u32]>,
) -> Result<Vec<usize>, String> {
    let s = mesh.select(service, version, indexes);
    if s.is_empty() {
        return Err(format!(
            "no instance of {service} matches (version {version:?}, instances {indexes:?})"
        ));
    }
    Ok(s)
}

/// The workload a URL host names: `svc`, `svc.ns`, `svc.ns.svc.cluster.local` (with a port or not).
pub fn target_workload<'a>(
    workloads: &'a [Workload],
    host: &str,
    client_ns: &str,
) -> Option<&'a Workload> {
    let labels: Vec<&str> = host.split('.').collect();
    let service = labels.first()?;
    let ns = labels.get(1).copied().unwrap_or(client_ns);
    workloads
        .iter()
        .find(|w| w.service == *service && w.namespace == ns)
}

/// Host (without port) of an `http://` or `tcp://` URL.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

async fn send_all(
    mesh: &LocalMesh,
    workloads: &[Workload],
    req: &Request,
    rr: &mut usize,
) -> Result<Vec<Outcome>, String> {
    let host = url_host(&req.url).ok_or_else(|| format!("bad url {}", req.url))?;
    let (vias, client_ns) = if req.from == "outside" {
        let target = target_workload(workloads, host, "default")
            .ok_or_else(|| format!("from: outside needs a url naming a workload, got {host}"))?;
        let vias: Vec<Via> = mesh
            .select(
                &format!("{}.{}", target.service, target.namespace),
                None,
                None,
            )
            .into_iter()
            .map(|n| Via::Inbound(mesh.instances()[n].inbound_addr()))
            .collect();
        (vias, target.namespace.clone())
    } else {
        let sel = selected(mesh, &req.from, req.from_version.as_deref(), None)?;
        let ns = mesh.instances()[sel[0]].namespace.clone();
        let vias = sel
            .into_iter()
            .map(|n| Via::Outbound(mesh.instances()[n].outbound_addr()))
            .collect();
        (vias, ns)
    };
    if vias.is_empty() {
        return Err(format!("no instance to send from for `from: {}`", req.from));
    }
    let h2 = target_workload(workloads, host, &client_ns).is_some_and(|w| w.protocol.is_h2());
    let base = Call {
        via: vias[0],
        url: req.url.clone(),
        method: req.method.clone(),
        headers: req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body: Bytes::from(req.body.clone()),
        h2,
        timeout: REQUEST_TIMEOUT,
    };
    let count = req.count as usize;
    let first = *rr;
    *rr += count;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let worker = || async {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= count {
                break;
            }
            if let Some(rate) = req.rate.filter(|r| *r > 0.0) {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let mut call = base.clone();
            call.via = vias[(first + i) % vias.len()];
            mine.push((i, client::send(&call).await));
        }
        mine
    };
    let workers = (0..req.concurrency.max(1)).map(|_| worker());
    let mut all: Vec<(usize, Outcome)> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, o)| o).collect())
}
