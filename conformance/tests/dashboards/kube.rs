//! The controller in Kubernetes mode, where some of its metrics live:
//! admission webhook requests, and watch restarts (the API server is
//! restarted under it, so every watch fails and is retried).
use sluice_conformance::client;
use sluice_conformance::mesh::bins;
use sluice_testenv::TestEnv;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the controller when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
}

/// Polls the controller's metrics until `done` holds for them (30 s).
async fn metrics_until(
    child: &mut Running,
    addr: SocketAddr,
    log: &Path,
    done: &dyn Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "controller exited ({status}); log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let text = match client::http_get(addr, "/metrics").await {
            Ok(r) => String::from_utf8_lossy(&r.body).into_owned(),
            Err(_) => String::new(),
        };
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "controller metrics not as expected in 30 s:\n{text}\nlog:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The scrape of a controller that served one validation webhook request
/// and saw its watches fail once.
pub async fn controller_scrape(work: &Path) -> String {
    let mut env = TestEnv::start().await.expect("test API server");
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let crds = crds.display().to_string();
    env.kubectl_run(&["apply", "-f", &crds])
        .await
        .expect("CRDs");
    env.kubectl_run(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        &crds,
    ])
    .await
    .expect("CRDs established");
    let bin = bins::find("sluice-controller", None).expect("controller binary");
    let (metrics, webhook) = (free_addr(), free_addr());
    let log = work.join("kube-controller.log");
    let mut child = Running(
        Command::new(bin)
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(["--listen", &free_addr().to_string()])
            .args(["--secure-listen", &free_addr().to_string()])
            .args(["--metrics-listen", &metrics.to_string()])
            .args(["--webhook-listen", &webhook.to_string()])
            .arg("--state-dir")
            .arg(work.join("kube-state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn controller"),
    );
    // The metrics listener opens once the first lists arrived.
    metrics_until(&mut child, metrics, &log, &|t| {
        t.contains("sluice_config_revision")
    })
    .await;
    // Any AdmissionReview is counted; an empty one as an error.
    let status = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-X", "POST"])
        .args(["-H", "content-type: application/json", "--data", "{}"])
        .arg(format!("https://{webhook}/validate"))
        .status()
        .expect("run curl");
    assert!(status.success(), "curl to the webhook failed: {status}");
    env.restart_apiserver(Duration::from_secs(1))
        .await
        .expect("restart the API server");
    metrics_until(&mut child, metrics, &log, &|t| {
        t.contains("sluice_kube_watch_restarts_total{")
            && t.contains("sluice_webhook_requests_total{")
    })
    .await
}
