//! Rotating the mesh root under steady load, as docs/security.md describes: the new root is
//! first trusted beside the old (`ca/extra-roots.pem`), then signs while the old is still
//! trusted, then the old one goes. The controller restarts to pick up each step; the
//! sidecars (6-second certificates) pick it up at their next renewal. No request fails and
//! no TLS handshake fails.
use super::load::Load;
use super::{SERIAL, get, metric, outbound_of, start_mesh};
use sluice_conformance::client;
use sluice_conformance::mesh::LocalMesh;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Every request on a new connection between the sidecars, so each one is a fresh mutual
/// TLS handshake with whatever certificates and roots the two hold at that moment.
const FRESH_CONNECTIONS: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 1}}
";

/// A new P-256 root (certificate, PKCS#8 key) made with the `openssl` command.
fn new_root(dir: &Path) -> (String, String) {
    let (cert, key) = (dir.join("root2-cert.pem"), dir.join("root2-key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/O=cluster.local/CN=Sluice root 2",
        ])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args([
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the openssl command is needed to make a second root");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read_to_string(key).unwrap(),
    )
}

async fn issued(stats: &[SocketAddr]) -> Vec<f64> {
    let mut v = Vec::new();
    for s in stats {
        v.push(
            metric(
                *s,
                "sluice_certificate_requests_total",
                &[("outcome", "success")],
            )
            .await,
        );
    }
    v
}

/// Restarts the controller on the state folder as it is now and waits until every sidecar
/// got a certificate from it.
async fn restart_and_renew(mesh: &mut LocalMesh, stats: &[SocketAddr]) {
    mesh.kill_controller().await;
    mesh.start_controller().unwrap();
    mesh.wait_converged(None).await.unwrap();
    let before = issued(stats).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = issued(stats).await;
        if now.iter().zip(&before).all(|(n, b)| n > b) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every sidecar renewed from the restarted controller: {before:?} -> {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `line` without terminal colour sequences (`ESC [ ... m`), which the logs may carry.
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `roots=` field of each "workload certificate issued" line in a sidecar's logs.
fn bundle_sizes(log_dir: &Path, workload: &str) -> Vec<u32> {
    let mut sizes = Vec::new();
    for suffix in ["log", "restarted.log"] {
        let path = log_dir.join(format!("proxy-{workload}.default.{suffix}"));
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text
            .lines()
            .filter(|l| l.contains("workload certificate issued"))
        {
            if let Some(n) = strip_colours(line)
                .split_whitespace()
                .find_map(|w| w.strip_prefix("roots="))
                .and_then(|n| n.parse().ok())
            {
                sizes.push(n);
            }
        }
    }
    assert!(
        !sizes.is_empty(),
        "no certificate in the logs of {workload} in {}",
        log_dir.display()
    );
    sizes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_rotated_in_three_steps_under_load_no_errors() {
    let _turn = SERIAL.lock().await;
    let (work, mut mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 2}}]",
        FRESH_CONNECTIONS,
        &["--cert-ttl-s", "6"],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let stats: Vec<_> = mesh.instances().iter().map(|i| i.stats_addr()).collect();
    let ca = mesh.controller_state_dir().join("ca");
    let old_cert = std::fs::read_to_string(ca.join("root-cert.pem")).unwrap();
    let old_key = std::fs::read_to_string(ca.join("root-key.pem")).unwrap();
    let (new_cert, new_key) = new_root(work.path());

    let load = Load::start(2, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/get", Duration::from_secs(5))
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 1. Trust the new root beside the old one.
    std::fs::write(ca.join("extra-roots.pem"), &new_cert).unwrap();
    restart_and_renew(&mut mesh, &stats).await;
    // 2. Sign with the new root, still trusting the old one.
    std::fs::write(ca.join("root-cert.pem"), &new_cert).unwrap();
    std::fs::write(ca.join("root-key.pem"), &new_key).unwrap();
    std::fs::write(ca.join("extra-roots.pem"), &old_cert).unwrap();
    restart_and_renew(&mut mesh, &stats).await;
    // 3. Drop the old root.
    std::fs::remove_file(ca.join("extra-roots.pem")).unwrap();
    restart_and_renew(&mut mesh, &stats).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = load.finish_after(300).await;
    drop(old_key);
    // Pooled connections between sidecars may predate the last step: a restarted client
    // sidecar must handshake afresh, with only the new root on both sides.
    let sleep_n = mesh.select("sleep", None, None)[0];
    mesh.restart_sidecar(sleep_n).await.unwrap();
    for _ in 0..10 {
        let o = client::send(&get(
            sleep,
            "http://reviews:9080/get",
            Duration::from_secs(5),
        ))
        .await;
        assert_eq!(o.status, Some(200), "after the rotation: {:?}", o.error);
        assert!(
            o.headers.contains_key("x-echo-peer-principal"),
            "not over mTLS"
        );
    }

    let mut handshake_failures = 0.0;
    for s in &stats {
        handshake_failures +=
            metric(*s, "sluice_tls_handshakes_total", &[("outcome", "failure")]).await;
    }
    let bundles: Vec<Vec<u32>> = mesh
        .instances()
        .iter()
        .map(|i| bundle_sizes(mesh.log_dir(), &i.workload_name()))
        .collect();
    eprintln!(
        "root rotation: {} requests, {} failed, TLS handshake failures {handshake_failures}, trust bundle sizes per sidecar over time {bundles:?}",
        report.records.len(),
        report.failures().len()
    );
    report.assert_all_ok(300);
    assert_eq!(handshake_failures, 0.0);
    for b in &bundles {
        // One root, then both during the rotation, then only the new one.
        assert_eq!(b.first(), Some(&1), "{bundles:?}");
        assert!(b.contains(&2), "{bundles:?}");
        assert_eq!(b.last(), Some(&1), "{bundles:?}");
    }
    mesh.shutdown().await;
}
