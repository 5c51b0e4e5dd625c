//! The data-plane benchmark: fortio load through each target (direct, Sluice pair, HAProxy
//! pair, nginx pair) against a fortio server, measuring latency, CPU and memory per proxy.
use crate::point::{FortioRun, PERCENTILES, Point, ProxyUse, median, parse_fortio, spread};
use crate::procstat;
use anyhow::Context as _;
use std::path::PathBuf;
use std::time::Duration;
use targets::{Addrs, Env, GRPC_PORT, H2_PORT, HTTP_PORT, Pinned, SERVICE_HOST};

pub mod targets;

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Fewer points, 10 s each, 1 repetition.
    pub quick: bool,
    /// Seconds per repetition.
    pub seconds: u32,
    /// Repetitions per point.
    pub reps: u32,
    /// The fortio binary.
    pub fortio: PathBuf,
    /// Directory with the Sluice binaries.
    pub bin_dir: PathBuf,
    /// Scratch directory (logs, configs, raw fortio JSON).
    pub work_dir: PathBuf,
    /// `bench/peers`.
    pub peers_dir: PathBuf,
    /// Core for proxies.
    pub proxy_core: u32,
    /// Core for fortio (load and server) and the controller.
    pub load_core: u32,
    /// Only these targets (empty = all).
    pub only: Vec<String>,
}

/// One load setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    /// `http1`, `h2`, `grpc`.
    pub protocol: &'static str,
    /// fortio `-c`.
    pub connections: u32,
    /// fortio `-qps` (0 = max).
    pub qps: f64,
}

/// The points of a run: Istio's published setting (HTTP/1.1, 1 KB, 1,000 rps) at 4, 16 and
/// 64 connections, maximum rate, then HTTP/2 and gRPC.
pub fn scenarios(quick: bool) -> Vec<Scenario> {
    let s = |protocol, connections, qps| Scenario {
        protocol,
        connections,
        qps,
    };
    let mut v = vec![
        s("http1", 4, 1000.0),
        s("http1", 16, 1000.0),
        s("http1", 64, 1000.0),
        s("http1", 16, 0.0),
        s("h2", 4, 1000.0),
        s("grpc", 4, 1000.0),
    ];
    if !quick {
        v.push(s("h2", 16, 0.0));
        v.push(s("grpc", 16, 0.0));
    }
    v
}

/// How fortio reaches a target.
struct Route {
    name: &'static str,
    label: String,
    http: String,
    h2: String,
    grpc: String,
    host: Option<(String, String)>,
}

fn routes(addrs: Addrs) -> Vec<Route> {
    let (haproxy, nginx) = (version("haproxy"), version("nginx"));
    let s = addrs.server();
    let c = addrs.sluice_client();
    let peer = |name: &'static str, ip: std::net::Ipv4Addr, label: String| Route {
        name,
        label,
        http: format!("http://{ip}:{HTTP_PORT}/echo"),
        h2: format!("http://{ip}:{H2_PORT}/echo"),
        grpc: format!("{ip}:{GRPC_PORT}"),
        host: None,
    };
    vec![
        Route {
            name: "direct",
            label: "direct (fortio → fortio server, no proxy)".into(),
            http: format!("http://{s}:{HTTP_PORT}/echo"),
            h2: format!("http://{s}:{HTTP_PORT}/echo"),
            grpc: format!("{s}:{GRPC_PORT}"),
            host: None,
        },
        Route {
            name: "sluice",
            label: "sluice pair (mTLS between sidecars; HTTP/1.1 or h2 by Istio's rules)".into(),
            http: format!("http://{c}:15001/echo"),
            h2: format!("http://{c}:15001/echo"),
            grpc: format!("{c}:15001"),
            host: Some((
                format!("{SERVICE_HOST}:{HTTP_PORT}"),
                format!("{SERVICE_HOST}:{GRPC_PORT}"),
            )),
        },
        Route {
            name: "sluice-plain",
            label: "sluice pair (no certificates: plaintext between sidecars)".into(),
            http: format!("http://{c}:15001/echo"),
            h2: format!("http://{c}:15001/echo"),
            grpc: format!("{c}:15001"),
            host: Some((
                format!("{SERVICE_HOST}:{HTTP_PORT}"),
                format!("{SERVICE_HOST}:{GRPC_PORT}"),
            )),
        },
        peer(
            "haproxy",
            addrs.ip(4),
            format!("haproxy pair (plaintext, {haproxy})"),
        ),
        peer(
            "nginx",
            addrs.ip(6),
            format!("nginx pair (plaintext; h2 front, HTTP/1.1 upstream; {nginx})"),
        ),
        peer(
            "haproxy-tls",
            addrs.ip(8),
            format!("haproxy pair (TLS 1.3 between, {haproxy})"),
        ),
        peer(
            "nginx-tls",
            addrs.ip(10),
            format!("nginx pair (TLS 1.3 between; h2 front, HTTP/1.1 upstream; {nginx})"),
        ),
    ]
}

fn version(bin: &str) -> String {
    let out = targets::which(bin)
        .ok()
        .and_then(|b| std::process::Command::new(b).arg("-v").output().ok());
    out.map(|o| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        // "HAProxy version 2.6.12-1 2026/10/17 - https://…" → "HAProxy version 2.6.12-1".
        let first = text.lines().next().unwrap_or(bin);
        first
            .split(" - ")
            .next()
            .unwrap_or(first)
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    })
    .unwrap_or_else(|| bin.into())
}

/// Runs every target through every scenario.
pub async fn run(opts: &Opts, addrs: Addrs) -> anyhow::Result<Vec<Point>> {
    std::fs::create_dir_all(&opts.work_dir)?;
    let env = Env {
        bin_dir: opts.bin_dir.clone(),
        dir: opts.work_dir.clone(),
        proxy_core: opts.proxy_core,
        other_core: opts.load_core,
    };
    let server =
        targets::fortio_server(&opts.fortio, addrs, opts.load_core, &opts.work_dir).await?;
    let mut points = Vec::new();
    for route in routes(addrs) {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == route.name) {
            continue;
        }
        eprintln!("== target {}", route.label);
        let (controller, procs) = match start(&env, addrs, &route, opts).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("   could not start: {e:#}");
                for sc in scenarios(opts.quick) {
                    points.push(skipped(&route, sc, opts, format!("could not start: {e:#}")));
                }
                continue;
            }
        };
        for sc in scenarios(opts.quick) {
            let point = measure(opts, &route, sc, &procs).await;
            eprintln!(
                "   {} c={} qps={} → got {:.0} p50 {:.3} p99 {:.3} ms cpu/1k {:?} rss {:?} errors {} {}",
                sc.protocol,
                sc.connections,
                sc.qps,
                point.qps_got,
                point.p50_ms,
                point.p99_ms,
                point.cpu_s_per_1k_req,
                point.rss_mb,
                point.errors,
                point.skipped.as_deref().unwrap_or("")
            );
            points.push(point);
        }
        for p in procs {
            p.stop().await;
        }
        if let Some(c) = controller {
            c.stop().await;
        }
    }
    server.stop().await;
    Ok(points)
}

async fn start(
    env: &Env,
    addrs: Addrs,
    route: &Route,
    opts: &Opts,
) -> anyhow::Result<(Option<Pinned>, Vec<Pinned>)> {
    let template = |name: &str| {
        std::fs::read_to_string(opts.peers_dir.join(name))
            .with_context(|| format!("read bench/peers/{name}"))
    };
    Ok(match route.name {
        "sluice" | "sluice-plain" => {
            let (c, p) = targets::sluice(env, addrs, route.name == "sluice").await?;
            (Some(c), p)
        }
        "haproxy" | "nginx" | "haproxy-tls" | "nginx-tls" => {
            let tls = route.name.ends_with("-tls");
            let kind = route.name.trim_end_matches("-tls");
            // Each pair has its own two addresses: .4/.5, .6/.7, .8/.9, .10/.11.
            let first = match route.name {
                "haproxy" => 4,
                "nginx" => 6,
                "haproxy-tls" => 8,
                _ => 10,
            };
            let file = if kind == "haproxy" {
                "haproxy.cfg"
            } else {
                "nginx.conf"
            };
            let pair = (addrs.ip(first), addrs.ip(first + 1));
            (
                None,
                targets::peer_pair(env, addrs, kind, pair, &template(file)?, tls).await?,
            )
        }
        _ => (None, Vec::new()),
    })
}

fn skipped(route: &Route, sc: Scenario, opts: &Opts, why: String) -> Point {
    Point {
        target: route.name.into(),
        label: route.label.clone(),
        protocol: sc.protocol.into(),
        connections: sc.connections,
        qps_asked: sc.qps,
        qps_got: 0.0,
        p50_ms: 0.0,
        p90_ms: 0.0,
        p99_ms: 0.0,
        p999_ms: 0.0,
        cpu_s_per_1k_req: None,
        rss_mb: None,
        rss_peak_mb: None,
        errors: 0,
        requests: 0,
        repetitions: 0,
        seconds: opts.seconds,
        p99_ms_spread: (0.0, 0.0),
        qps_spread: (0.0, 0.0),
        skipped: Some(why),
        proxies: Vec::new(),
    }
}

fn fortio_args(route: &Route, sc: Scenario, seconds: u32, json: &std::path::Path) -> Vec<String> {
    let pcts: Vec<String> = PERCENTILES.iter().map(f64::to_string).collect();
    let mut a: Vec<String> = vec![
        "load".into(),
        "-quiet".into(),
        "-qps".into(),
        sc.qps.to_string(),
        "-c".into(),
        sc.connections.to_string(),
        "-t".into(),
        format!("{seconds}s"),
        "-payload-size".into(),
        "1024".into(),
        "-p".into(),
        pcts.join(","),
        "-json".into(),
        json.display().to_string(),
    ];
    let (url, host) = match sc.protocol {
        "grpc" => {
            a.push("-grpc".into());
            a.push("-ping".into());
            (&route.grpc, route.host.as_ref().map(|h| &h.1))
        }
        "h2" => {
            a.push("-h2".into());
            (&route.h2, route.host.as_ref().map(|h| &h.0))
        }
        _ => (&route.http, route.host.as_ref().map(|h| &h.0)),
    };
    if let Some(h) = host {
        a.push("-H".into());
        a.push(format!("Host: {h}"));
    }
    a.push(url.clone());
    a
}

/// One fortio invocation; `Err` carries fortio's output when it failed.
async fn fortio_once(
    opts: &Opts,
    args: &[String],
    json: &std::path::Path,
) -> anyhow::Result<FortioRun> {
    let _ = std::fs::remove_file(json);
    let out = tokio::process::Command::new("taskset")
        .arg("-c")
        .arg(opts.load_core.to_string())
        .arg(&opts.fortio)
        .args(args)
        .output()
        .await
        .context("run fortio")?;
    let text = std::fs::read_to_string(json).map_err(|_| {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        anyhow::anyhow!("fortio failed ({}): {tail}", out.status)
    })?;
    Ok(parse_fortio(&text)?)
}

async fn measure(opts: &Opts, route: &Route, sc: Scenario, procs: &[Pinned]) -> Point {
    let tag = format!(
        "{}-{}-c{}-q{}",
        route.name, sc.protocol, sc.connections, sc.qps
    );
    let json = opts.work_dir.join(format!("{tag}.json"));
    // The peak of this point alone, not of the points before it on the same processes.
    for p in procs {
        if !procstat::reset_peak(p.pid) {
            eprintln!(
                "   (could not reset the peak RSS of {}; peaks include earlier points)",
                p.pid
            );
        }
    }
    // Warm-up: opens the pools and lets the allocator settle, not measured.
    let warm = fortio_args(route, sc, 2, &json);
    if let Err(e) = fortio_once(opts, &warm, &json).await {
        return skipped(route, sc, opts, format!("{e:#}"));
    }
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    // Each process's CPU seconds per 1k requests, one entry per repetition it was measured in.
    let mut cpu_each: Vec<Vec<f64>> = vec![Vec::new(); procs.len()];
    // Each process's CPU time over all repetitions, for its kernel share.
    let mut times_each = vec![procstat::CpuTimes::default(); procs.len()];
    for rep in 0..opts.reps {
        let before: Vec<Option<procstat::CpuTimes>> =
            procs.iter().map(|p| procstat::cpu_times(p.pid)).collect();
        let args = fortio_args(route, sc, opts.seconds, &json);
        let run = match fortio_once(opts, &args, &json).await {
            Ok(r) => r,
            Err(e) => return skipped(route, sc, opts, format!("repetition {rep}: {e:#}")),
        };
        let _ = std::fs::copy(&json, opts.work_dir.join(format!("{tag}-rep{rep}.json")));
        let times: Vec<Option<procstat::CpuTimes>> = procs
            .iter()
            .zip(&before)
            .map(|(p, b)| Some(procstat::cpu_times(p.pid)?.since((*b)?)))
            .collect();
        for (sum, t) in times_each.iter_mut().zip(&times) {
            if let Some(t) = t {
                sum.user += t.user;
                sum.system += t.system;
            }
        }
        let used: Vec<Option<f64>> = times
            .iter()
            .map(|t| t.map(procstat::CpuTimes::total))
            .collect();
        if run.count > 0 {
            let kreq = run.count as f64 / 1000.0;
            for (each, u) in cpu_each.iter_mut().zip(&used) {
                if let Some(u) = u {
                    each.push(u / kreq);
                }
            }
            // The pair's mean only when every process was measured.
            let known: Vec<f64> = used.iter().flatten().copied().collect();
            if !known.is_empty() && known.len() == used.len() {
                cpu.push(known.iter().sum::<f64>() / known.len() as f64 / kreq);
            }
        }
        runs.push(run);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let proxies: Vec<ProxyUse> = procs
        .iter()
        .zip(&cpu_each)
        .zip(&times_each)
        .enumerate()
        .filter_map(|(i, ((p, each), times))| {
            let m = procstat::memory(p.pid)?;
            Some(ProxyUse {
                side: if i == 0 { "client" } else { "server" }.into(),
                cpu_s_per_1k_req: (!each.is_empty()).then(|| median(each)),
                kernel_share: (times.total() > 0.0).then(|| times.system / times.total()),
                rss_mb: m.rss_mb,
                rss_peak_mb: m.hwm_mb,
            })
        })
        .collect();
    let col = |f: fn(&FortioRun) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let p99s = col(|r| r.p_ms[2]);
    let qps = col(|r| r.qps);
    Point {
        target: route.name.into(),
        label: route.label.clone(),
        protocol: sc.protocol.into(),
        connections: sc.connections,
        qps_asked: sc.qps,
        qps_got: median(&qps),
        p50_ms: median(&col(|r| r.p_ms[0])),
        p90_ms: median(&col(|r| r.p_ms[1])),
        p99_ms: median(&p99s),
        p999_ms: median(&col(|r| r.p_ms[3])),
        cpu_s_per_1k_req: (!cpu.is_empty()).then(|| median(&cpu)),
        rss_mb: proxies.iter().map(|p| p.rss_mb).reduce(f64::max),
        rss_peak_mb: proxies.iter().map(|p| p.rss_peak_mb).reduce(f64::max),
        errors: runs.iter().map(|r| r.errors).sum(),
        requests: runs.iter().map(|r| r.count).sum(),
        repetitions: runs.len() as u32,
        seconds: opts.seconds,
        p99_ms_spread: spread(&p99s),
        qps_spread: spread(&qps),
        skipped: None,
        proxies,
    }
}
