//! Controller scale: a synthetic mesh (services × endpoints in a `--config-dir`), many
//! simulated proxies on real gRPC streams, then (a) one VirtualService change → time until every
//! proxy has the new snapshot (it ACKs at once), (b) endpoint churn, (c) controller CPU/RSS
//! and bytes per proxy per change.
use crate::point::median;
use crate::procstat;
use anyhow::{Context as _, bail};
use dataplane_targets::Pinned;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dataplane::targets as dataplane_targets;

pub mod sim;
#[cfg(test)]
mod tests;

/// Sizes and durations.
#[derive(Debug, Clone)]
pub struct Opts {
    /// ServiceEntries.
    pub services: usize,
    /// WorkloadEntries (spread evenly over services).
    pub endpoints: usize,
    /// Simulated proxies.
    pub proxies: usize,
    /// VirtualService changes to time.
    pub changes: usize,
    /// Seconds of endpoint churn.
    pub churn_s: u64,
    /// Endpoint changes per second during churn.
    pub churn_rate: u64,
    /// Controller debounce (`--debounce-ms`).
    pub debounce_ms: u64,
    /// Directory with `sluice-controller`.
    pub bin_dir: PathBuf,
    /// Scratch directory.
    pub work_dir: PathBuf,
    /// Core for the controller.
    pub controller_core: u32,
    /// Why the sizes differ from the (empty when they do not).
    pub scaled_down: Option<String>,
}

/// Results of the scale benchmark.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ScaleResult {
    /// ServiceEntries.
    pub services: usize,
    /// WorkloadEntries.
    pub endpoints: usize,
    /// Simulated proxies asked for.
    pub proxies: usize,
    /// Streams that received their first snapshot.
    pub proxies_connected: usize,
    /// Connect or stream failures the simulated proxies retried (all phases).
    pub reconnects: usize,
    /// The last failure a simulated proxy saw, if any.
    pub last_failure: Option<String>,
    /// Controller `--debounce-ms` (included in every convergence time).
    pub debounce_ms: u64,
    /// Why sizes are smaller than the issue's.
    pub scaled_down: Option<String>,
    /// Seconds from starting to connect until every proxy had its first snapshot.
    pub initial_sync_s: f64,
    /// Per-proxy time from the VirtualService file write until the simulated proxy has applied
    /// the new snapshot and sends its ACK, ms; change after change, one sample per proxy.
    pub change_ms: Vec<f64>,
    /// p50 of `change_ms`.
    pub change_p50_ms: f64,
    /// p99 of `change_ms`.
    pub change_p99_ms: f64,
    /// Max of `change_ms`.
    pub change_max_ms: f64,
    /// Changes that did not reach every proxy within the timeout.
    pub changes_incomplete: usize,
    /// Mean encoded snapshot bytes per proxy per change.
    pub bytes_per_proxy_per_change: f64,
    /// `sluice_config_push_bytes` growth per proxy per change (controller's own count).
    pub push_bytes_per_proxy_per_change: Option<f64>,
    /// Endpoint changes written during churn.
    pub churn_changes: usize,
    /// Churn duration, s.
    pub churn_s: f64,
    /// Snapshots each proxy received during churn (median).
    pub churn_snapshots_per_proxy: f64,
    /// From churn start until every proxy received a newer snapshot, ms (None: not during churn).
    pub churn_first_update_ms: Option<f64>,
    /// From the last churn write until every proxy had the final revision, ms.
    pub churn_settle_ms: Option<f64>,
    /// Controller CPU while idle with all proxies connected, vCPU.
    pub controller_idle_vcpu: f64,
    /// Controller CPU during churn, vCPU.
    pub controller_churn_vcpu: f64,
    /// Controller CPU seconds for the initial sync of all proxies.
    pub controller_initial_sync_cpu_s: f64,
    /// Controller VmRSS at the end, MB.
    pub controller_rss_mb: f64,
    /// Controller VmHWM at the end, MB.
    pub controller_peak_rss_mb: f64,
    /// Snapshots the simulated proxies refused (deltas that did not apply), all phases.
    #[serde(default)]
    pub sim_nacks: usize,
}

/// Percentile (nearest rank) of unsorted values; 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn endpoint_ip(e: usize, generation: usize) -> Ipv4Addr {
    // 10.g.x.y: the generation moves an endpoint to a new address on each
    // churn write. Generation 0 (the initial mesh) is g = 0; a moved endpoint
    // gets 1 + generation mod 199, a cycle coprime to the churn's 1,000-write
    // round, so rewriting a file never gives back the text it had.
    let g = match generation {
        0 => 0,
        g => 1 + g % 199,
    };
    Ipv4Addr::new(10, g as u8, (e / 250 % 256) as u8, (e % 250 + 1) as u8)
}

/// The YAML of service `s` with its endpoints; `moved` = (endpoint, generation) to relocate.
pub fn service_yaml(s: usize, per: usize, moved: Option<(usize, usize)>) -> String {
    let host = format!("svc-{s:04}.scale.svc.cluster.local");
    let mut out = format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: svc-{s:04}, namespace: scale}}\nspec:\n  hosts: [{host}]\n  \
         location: MESH_INTERNAL\n  resolution: STATIC\n  \
         ports: [{{number: 8080, name: http, protocol: HTTP, targetPort: 8080}}]\n  \
         workloadSelector: {{labels: {{app: svc-{s:04}}}}}\n"
    );
    for k in 0..per {
        let e = s * per + k;
        let generation = match moved {
            Some((m, g)) if m == k => g,
            _ => 0,
        };
        out.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: svc-{s:04}-{k}, namespace: scale}}\nspec:\n  address: \"{ip}\"\n  \
             labels: {{app: svc-{s:04}, version: v1, security.istio.io/tlsMode: istio}}\n  \
             serviceAccount: svc-{s:04}\n",
            ip = endpoint_ip(e, generation)
        ));
    }
    out
}

/// The `n`th churn write: (file, text) moving one endpoint of one service.
/// Writes visit the services in a scattered order, each once a round of
/// `services / gcd(services, 7919)` writes (1,000 at the full size), and
/// the generation is the round: two visits to a file in a row always give
/// it different text, whatever the sizes.
pub fn churn_write(n: usize, services: usize, per: usize) -> (String, String) {
    let services = services.max(1);
    let s = n * 7919 % services;
    let round = services / gcd(services, 7919);
    (
        format!("svc-{s:04}.yaml"),
        service_yaml(s, per, Some((n % per.max(1), n / round + 1))),
    )
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A VirtualService on service 0 whose timeout differs per `generation`.
pub fn vs_yaml(generation: usize) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: svc-0000, namespace: scale}}\nspec:\n  \
         hosts: [svc-0000.scale.svc.cluster.local]\n  http:\n  - timeout: {}s\n    \
         route:\n    - destination: {{host: svc-0000.scale.svc.cluster.local}}\n",
        generation + 1
    )
}

fn write_atomic(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(())
}

fn all_above(board: &sim::Board, v: u64) -> bool {
    board
        .iter()
        .all(|m| m.lock().unwrap_or_else(|e| e.into_inner()).latest() > v)
}

fn min_latest(board: &sim::Board) -> u64 {
    board
        .iter()
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).latest())
        .min()
        .unwrap_or(0)
}

async fn wait_all_above(
    board: &sim::Board,
    v: u64,
    timeout: Duration,
    controller: &mut Pinned,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + timeout;
    while !all_above(board, v) {
        controller.check()?;
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(true)
}

async fn push_bytes(metrics: SocketAddr) -> Option<f64> {
    let r = sluice_conformance::client::http_get(metrics, "/metrics")
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&r.body).to_string();
    // One line per kind (full, delta); their sum is every byte pushed.
    let lines = text.lines().filter(|l| {
        l.starts_with("sluice_config_push_bytes")
            && !l.starts_with("sluice_config_push_bytes_created")
    });
    let mut total = None;
    for l in lines {
        let v: f64 = l.split_whitespace().last()?.parse().ok()?;
        total = Some(total.unwrap_or(0.0) + v);
    }
    total
}

/// Runs the scale benchmark on loopback address `ip`.
/// Pins every thread of this process to `core` (`taskset -a -p`); threads
/// made later inherit it.
pub fn pin_process(core: u32) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &core.to_string()])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| anyhow::anyhow!("running taskset to pin the simulator: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "taskset could not pin the simulator to core {core}"
    );
    Ok(())
}

pub async fn run(opts: &Opts, ip: Ipv4Addr) -> anyhow::Result<ScaleResult> {
    let cfg = opts.work_dir.join("scale-config");
    if cfg.exists() {
        std::fs::remove_dir_all(&cfg)?;
    }
    std::fs::create_dir_all(&cfg)?;
    let per = (opts.endpoints / opts.services.max(1)).max(1);
    for s in 0..opts.services {
        write_atomic(
            &cfg,
            &format!("svc-{s:04}.yaml"),
            &service_yaml(s, per, None),
        )?;
    }
    write_atomic(&cfg, "vs.yaml", &vs_yaml(0))?;
    let mut controller = Pinned::spawn(
        "sluice-controller",
        opts.controller_core,
        &opts.bin_dir.join("sluice-controller"),
        &[
            "--config-dir".into(),
            cfg.display().to_string(),
            "--listen".into(),
            format!("{ip}:15010"),
            "--metrics-listen".into(),
            format!("{ip}:15014"),
            "--debounce-ms".into(),
            opts.debounce_ms.to_string(),
        ],
        &opts.work_dir.join("scale-controller.log"),
    )?;
    let metrics = SocketAddr::new(ip.into(), 15014);
    dataplane_targets::wait_listening(
        SocketAddr::new(ip.into(), 15010),
        std::slice::from_mut(&mut controller),
    )
    .await?;
    let pid = controller.pid;
    let mut res = ScaleResult {
        services: opts.services,
        endpoints: per * opts.services,
        proxies: opts.proxies,
        debounce_ms: opts.debounce_ms,
        scaled_down: opts.scaled_down.clone(),
        churn_s: opts.churn_s as f64,
        ..Default::default()
    };

    // Connect every proxy (bounded concurrency, like a rollout) and wait for first snapshots.
    let board = sim::board(opts.proxies);
    let shared = Arc::new(std::sync::Mutex::new(sim::Shared::default()));
    let url = format!("http://{ip}:15010");
    let cpu0 = procstat::cpu_seconds(pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..opts.proxies {
        tasks.push(tokio::spawn(sim::proxy(
            i,
            url.clone(),
            opts.services,
            board.clone(),
            shared.clone(),
        )));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let synced = wait_all_above(&board, 0, Duration::from_secs(300), &mut controller).await?;
    res.initial_sync_s = t0.elapsed().as_secs_f64();
    res.controller_initial_sync_cpu_s = procstat::cpu_seconds(pid).unwrap_or(0.0) - cpu0;
    res.proxies_connected = board
        .iter()
        .filter(|m| m.lock().unwrap_or_else(|e| e.into_inner()).latest() > 0)
        .count();
    eprintln!(
        "   {} of {} proxies synced in {:.1} s",
        res.proxies_connected, opts.proxies, res.initial_sync_s
    );
    if !synced {
        let ended = board
            .iter()
            .find_map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).ended.clone());
        bail!("not every proxy got its first snapshot within 300 s (first failure: {ended:?})");
    }

    // Idle CPU with every stream open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = procstat::cpu_seconds(pid).unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    res.controller_idle_vcpu = (procstat::cpu_seconds(pid).unwrap_or(0.0) - c) / 5.0;

    // (a) VirtualService changes.
    let mut bytes = Vec::new();
    let pb0 = push_bytes(metrics).await;
    let mut done = 0usize;
    for g in 1..=opts.changes {
        let before = min_latest(&board);
        let at = Instant::now();
        write_atomic(&cfg, "vs.yaml", &vs_yaml(g))?;
        if !wait_all_above(&board, before, Duration::from_secs(120), &mut controller).await? {
            res.changes_incomplete += 1;
        }
        done += 1;
        for m in board.iter() {
            let s = m.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((t, b)) = s.first_above(before) {
                res.change_ms
                    .push(t.duration_since(at).as_secs_f64() * 1000.0);
                bytes.push(b as f64);
            }
        }
        eprintln!(
            "   change {g}: p99 {:.0} ms so far",
            percentile(&res.change_ms, 99.0)
        );
        // Let the controller go quiet before the next change.
        tokio::time::sleep(Duration::from_millis(opts.debounce_ms * 3 + 500)).await;
    }
    res.change_p50_ms = percentile(&res.change_ms, 50.0);
    res.change_p99_ms = percentile(&res.change_ms, 99.0);
    res.change_max_ms = percentile(&res.change_ms, 100.0);
    res.bytes_per_proxy_per_change = bytes.iter().sum::<f64>() / bytes.len().max(1) as f64;
    if let (Some(a), Some(b)) = (pb0, push_bytes(metrics).await) {
        res.push_bytes_per_proxy_per_change = Some((b - a) / (opts.proxies * done.max(1)) as f64);
    }

    // (b) Endpoint churn at a fixed rate.
    let before = min_latest(&board);
    let counts0: Vec<usize> = board
        .iter()
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).snapshots.len())
        .collect();
    let cpu_c = procstat::cpu_seconds(pid).unwrap_or(0.0);
    let start = Instant::now();
    let period = Duration::from_micros(1_000_000 / opts.churn_rate.max(1));
    let mut next = start;
    let mut first_update: Option<f64> = None;
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs(opts.churn_s) {
        let (file, text) = churn_write(n, opts.services, per);
        write_atomic(&cfg, &file, &text)?;
        n += 1;
        if first_update.is_none() && all_above(&board, before) {
            first_update = Some(start.elapsed().as_secs_f64() * 1000.0);
        }
        next += period;
        tokio::time::sleep_until(next.into()).await;
    }
    let end = Instant::now();
    res.controller_churn_vcpu =
        (procstat::cpu_seconds(pid).unwrap_or(0.0) - cpu_c) / start.elapsed().as_secs_f64();
    res.churn_changes = n;
    res.churn_first_update_ms = first_update;
    let counts: Vec<f64> = board
        .iter()
        .zip(&counts0)
        .map(|(m, c0)| (m.lock().unwrap_or_else(|e| e.into_inner()).snapshots.len() - c0) as f64)
        .collect();
    res.churn_snapshots_per_proxy = median(&counts);
    // Settle: the controller's revision stops moving, then every proxy has it.
    let mut settled = None;
    let deadline = end + Duration::from_secs(120);
    while Instant::now() < deadline {
        controller.check()?;
        if let Ok(z) = sluice_conformance::mesh::sync::fetch(metrics).await
            && z.revision > before
            && min_latest(&board) >= z.revision
        {
            settled = Some(end.elapsed().as_secs_f64() * 1000.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    res.churn_settle_ms = settled;

    for m in board.iter() {
        let s = m.lock().unwrap_or_else(|e| e.into_inner());
        res.reconnects += s.reconnects;
        res.sim_nacks += s.nacks;
        if s.ended.is_some() {
            res.last_failure = s.ended.clone();
        }
    }
    let mem = procstat::memory(pid).context("controller memory")?;
    res.controller_rss_mb = mem.rss_mb;
    res.controller_peak_rss_mb = mem.hwm_mb;
    for t in tasks {
        t.abort();
    }
    controller.stop().await;
    Ok(res)
}
