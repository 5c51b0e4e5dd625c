//! Secrets stay out of logs: a real controller (local CA, bootstrap tokens)
//! and a real proxy that authenticates with its token and gets a workload
//! certificate, both logging at debug; their captured logs must not contain
//! the token or any private key text.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

const WORKLOADS: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1-0}
spec: {address: 127.0.9.1, labels: {app: reviews, version: v1}}
"#;

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sluice-controller` sits next to the proxy binary once the workspace is built.
fn controller_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_sluice-proxy")).with_file_name("sluice-controller");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p sluice-control-plane` first",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn log_to(path: &Path) -> Stdio {
    Stdio::from(File::create(path).unwrap())
}

#[tokio::test]
async fn logs_bootstrap_token_and_private_keys_never_appear() {
    let dir = tempfile_dir();
    std::fs::write(dir.join("00-workloads.yaml"), WORKLOADS).unwrap();
    let out = Command::new(controller_binary())
        .arg("--config-dir")
        .arg(&dir)
        .args(["--print-token", "default/productpage"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.len() >= 16, "{token:?}");
    let token_file = dir.join("token");
    std::fs::write(&token_file, &token).unwrap();

    let (grpc, secure, admin) = (free_port(), free_port(), free_port());
    let controller_log = dir.join("controller.log");
    let _controller = Running(
        Command::new(controller_binary())
            .arg("--config-dir")
            .arg(&dir)
            .args(["--listen", &format!("127.0.0.1:{grpc}")])
            .args(["--secure-listen", &format!("127.0.0.1:{secure}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{admin}")])
            .env("SLUICE_LOG", "debug")
            .stdout(log_to(&dir.join("controller.out")))
            .stderr(log_to(&controller_log))
            .spawn()
            .unwrap(),
    );
    let secure_addr = format!("127.0.0.1:{secure}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&secure_addr).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let root = dir.join(".sluice/ca/root-cert.pem");
    let proxy_log = dir.join("proxy.log");
    let ip = "127.0.163.1";
    let _proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
            .args(["--controller", &format!("https://{secure_addr}")])
            .args(["--ca-address", &format!("https://{secure_addr}")])
            .arg("--ca-root")
            .arg(&root)
            .arg("--token-file")
            .arg(&token_file)
            .args(["--ip", ip, "--id", "productpage-v1-0.default"])
            .args(["--workload", "productpage-v1", "--namespace", "default"])
            .args(["--service-account", "productpage"])
            .env("RUST_LOG", "debug")
            .stdout(log_to(&dir.join("proxy.out")))
            .stderr(log_to(&proxy_log))
            .spawn()
            .unwrap(),
    );
    // Wait for a workload certificate and an applied config: both used the token.
    let stats: std::net::SocketAddr = format!("{ip}:15090").parse().unwrap();
    let admin_addr: std::net::SocketAddr = format!("{ip}:15000").parse().unwrap();
    let mut ready = false;
    for _ in 0..150 {
        let cert = send(stats, get("/stats/prometheus", "stats")).await;
        let dump = send(admin_addr, get("/config_dump", "admin")).await;
        let has_cert = cert.is_ok_and(|r| {
            r.body.lines().any(|l| {
                l.starts_with("sluice_certificate_expiration_timestamp_seconds")
                    && !l.ends_with(" 0")
            })
        });
        if has_cert && dump.is_ok_and(|d| d.status == 200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = [&controller_log, &proxy_log].map(|p| std::fs::read_to_string(p).unwrap());
    assert!(
        ready,
        "proxy never got a certificate and a config:\n{}",
        logs[1]
    );

    let root_key = std::fs::read_to_string(dir.join(".sluice/ca/root-key.pem")).unwrap();
    let key_lines: Vec<&str> = root_key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .collect();
    assert!(!key_lines.is_empty());
    for (name, log) in ["controller", "proxy"].iter().zip(&logs) {
        assert!(log.lines().count() > 3, "{name} logged nothing at debug");
        assert!(!log.contains(&token), "{name} logged the bootstrap token");
        assert!(!log.contains("PRIVATE KEY"), "{name} logged a private key");
        for line in &key_lines {
            assert!(!log.contains(line), "{name} logged the CA key");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh folder under the system temp dir (the proxy crate has no tempfile dependency).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-secrets-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
