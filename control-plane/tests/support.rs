//! Helpers shared by the tests that run the real `sluice-controller` binary
//! against a real API server: start it, poll, read its metrics, play a proxy.
//! Included by each test binary with `#[path = "support.rs"] mod support;`.
// Each test binary compiles its own copy and uses only part of it.
#![allow(dead_code)]

use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{Ack, Node, ProxyConfig, ProxyMessage, Snapshot, proxy_message};
use sluice_testenv::TestEnv;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A config-dir mesh of one service with one endpoint.
pub const WORKLOADS: &str = r#"
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

/// Routes every `reviews` request to subset v1.
pub const VS_V1: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
"#;

/// A loopback address that was free a moment ago, and not handed out before
/// by this test process: the kernel may give a just-released port again, and
/// two listeners of one controller must not get the same one.
pub fn free_addr() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let addr = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr");
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

/// The workspace root (crds/, charts/, examples/).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// `kubectl <args>` as admin; panics with kubectl's stderr when it fails.
pub async fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    env.kubectl_run(args)
        .await
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

/// Applies `crds/` and waits until the API server serves every CRD; the
/// controller serves only once it has listed every Istio kind.
pub async fn install_crds(env: &TestEnv) {
    let crds = workspace().join("crds");
    kubectl(env, &["apply", "-f", crds.to_str().expect("utf-8 path")]).await;
    wait_crds_established(env).await;
}

/// Waits until the API server serves every installed CRD.
pub async fn wait_crds_established(env: &TestEnv) {
    kubectl(
        env,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    )
    .await;
}

/// A running `sluice-controller`, killed when dropped.
pub struct Controller {
    /// The process.
    pub child: Child,
    /// Plaintext config stream (`--listen`).
    pub grpc: SocketAddr,
    /// Metrics and debug endpoints (`--metrics-listen`).
    pub admin: SocketAddr,
    /// TLS config stream and certificate signing (`--secure-listen`).
    pub secure: SocketAddr,
    /// `--state-dir` (the mesh CA is kept in `ca/`).
    pub state: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    /// Starts the controller in Kubernetes mode with `kubeconfig`, fresh
    /// listeners, a 50 ms debounce and `extra` arguments, without waiting.
    pub fn spawn(kubeconfig: &Path, extra: &[&str]) -> Controller {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("controller.log");
        let state = dir.path().join("state");
        let (grpc, admin, secure) = (free_addr(), free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--listen", &grpc.to_string()])
            .args(["--metrics-listen", &admin.to_string()])
            .args(["--secure-listen", &secure.to_string()])
            .arg("--state-dir")
            .arg(&state)
            .args(["--debounce-ms", "50"])
            .args(extra)
            .stderr(std::fs::File::create(&log).expect("log file"))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn controller");
        Controller {
            child,
            grpc,
            admin,
            secure,
            state,
            log,
            _dir: dir,
        }
    }

    /// Starts the controller in `--config-dir` mode on `dir` (its state, the
    /// mesh CA included, in `dir/.sluice`), fresh listeners and a 20 ms
    /// debounce, and waits until the config stream listens.
    pub async fn start_config_dir(dir: &Path) -> Controller {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = tmp.path().join("controller.log");
        let (grpc, admin, secure) = (free_addr(), free_addr(), free_addr());
        let child = Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
            .arg("--config-dir")
            .arg(dir)
            .args(["--listen", &grpc.to_string()])
            .args(["--metrics-listen", &admin.to_string()])
            .args(["--secure-listen", &secure.to_string()])
            .args(["--debounce-ms", "20"])
            .stderr(std::fs::File::create(&log).expect("log file"))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn controller");
        let c = Controller {
            child,
            grpc,
            admin,
            secure,
            state: dir.join(".sluice"),
            log,
            _dir: tmp,
        };
        c.wait_listening(c.grpc).await;
        c
    }

    /// [`Controller::spawn`], then waits until the config stream listens,
    /// which it does once every watched list has arrived.
    pub async fn start(kubeconfig: &Path, extra: &[&str]) -> Controller {
        let c = Controller::spawn(kubeconfig, extra);
        c.wait_listening(c.grpc).await;
        c
    }

    /// Waits up to 30 s until `addr` accepts connections; panics with the log.
    pub async fn wait_listening(&self, addr: SocketAddr) {
        for _ in 0..600 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("controller did not listen on {addr}; log:\n{}", self.log());
    }

    /// The log (stderr) without terminal colour codes.
    pub fn log(&self) -> String {
        strip_colours(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// A TLS channel to the secure listener, trusting the mesh root in the
    /// state directory and expecting `domain` in its certificate.
    pub async fn secure_channel(&self, domain: &str) -> tonic::transport::Channel {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
        let root = std::fs::read_to_string(self.state.join("ca/root-cert.pem")).expect("root kept");
        Endpoint::from_shared(format!("https://{}", self.secure))
            .expect("endpoint")
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(root))
                    .domain_name(domain),
            )
            .expect("tls")
            .connect()
            .await
            .expect("TLS connect to the controller")
    }

    /// The body of `GET path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> String {
        admin_get(self.admin, path).await
    }

    /// The value of the series `name` (with its labels, as exposed) in
    /// `/metrics`, or `None` when absent or unreachable.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let body = try_admin_get(self.admin, "/metrics").await?;
        metric_value(&body, name)
    }
}

/// The body of `GET path` from `addr` over plain HTTP/1.1.
pub async fn admin_get(addr: SocketAddr, path: &str) -> String {
    try_admin_get(addr, path)
        .await
        .unwrap_or_else(|| panic!("GET {path} from {addr} failed"))
}

async fn try_admin_get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_owned())
}

/// The value of series `name` in a Prometheus text exposition.
pub fn metric_value(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn strip_colours(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip `ESC [ ... m`.
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

/// Polls `check` (which says why it is not satisfied yet) every 100 ms
/// until `limit`, then panics with `what`, the reason and the logs of `cs`.
pub async fn eventually<F, Fut>(cs: &[&Controller], what: &str, limit: Duration, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => {
                let logs: Vec<String> = cs.iter().map(|c| c.log()).collect();
                panic!(
                    "{what}: {why}\ncontroller logs:\n{}",
                    logs.join("\n-----\n")
                )
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A fake proxy on the plaintext config stream: it receives snapshots and
/// ACKs (or NACKs) them by hand, or keeps the configuration they add up to.
pub struct Proxy {
    /// Messages to the controller.
    pub tx: mpsc::Sender<ProxyMessage>,
    snapshots: tonic::Streaming<Snapshot>,
    /// The configuration the snapshots passed to [`Proxy::apply`] add up to.
    pub config: ProxyConfig,
}

impl Proxy {
    /// Opens the stream to `addr` as `node`.
    pub async fn connect(addr: SocketAddr, node: Node) -> Proxy {
        let mut client = ConfigDiscoveryClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(8);
        let hello = proxy_message::Kind::Hello(node);
        tx.send(ProxyMessage { kind: Some(hello) })
            .await
            .expect("hello");
        let snapshots = client
            .stream(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        Proxy {
            tx,
            snapshots,
            config: ProxyConfig::default(),
        }
    }

    /// The next snapshot, `None` if none came within `limit`; panics when
    /// the stream fails or ends.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Snapshot> {
        tokio::time::timeout(limit, self.next()).await.ok()
    }

    /// Applies `snapshot` to [`Proxy::config`] as a proxy would: a complete
    /// configuration replaces it, a delta upserts and removes by name.
    pub fn apply(&mut self, snapshot: Snapshot) {
        match (snapshot.config, snapshot.delta) {
            (Some(config), _) => self.config = config,
            (None, Some(d)) => {
                let c = &mut self.config;
                merge(
                    &mut c.virtual_hosts,
                    d.virtual_hosts,
                    &d.removed_virtual_hosts,
                    |v| &v.name,
                );
                merge(&mut c.clusters, d.clusters, &d.removed_clusters, |v| {
                    &v.name
                });
                merge(
                    &mut c.tcp_services,
                    d.tcp_services,
                    &d.removed_tcp_services,
                    |v| &v.name,
                );
                if d.inbound.is_some() {
                    c.inbound = d.inbound;
                }
                if d.self_.is_some() {
                    c.self_ = d.self_;
                }
            }
            (None, None) => panic!("snapshot {} without config or delta", snapshot.version),
        }
    }

    /// Receives, applies and ACKs snapshots until `done` holds for the
    /// resulting configuration; `Err` with the last configuration after `limit`.
    pub async fn sync_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&ProxyConfig) -> bool,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        while !done(&self.config) {
            let left = limit.saturating_sub(started.elapsed());
            let Some(snapshot) = self.next_within(left).await else {
                return Err(format!("after {limit:?}, config is {:#?}", self.config));
            };
            let version = snapshot.version.clone();
            self.apply(snapshot);
            self.ack(&version).await;
        }
        Ok(started.elapsed())
    }

    /// The next snapshot; panics when the stream fails or ends.
    pub async fn next(&mut self) -> Snapshot {
        self.snapshots
            .message()
            .await
            .expect("stream ok")
            .expect("a snapshot")
    }

    /// ACKs `version`.
    pub async fn ack(&self, version: &str) {
        let ack = proxy_message::Kind::Ack(Ack {
            version: version.into(),
        });
        let _ = self.tx.send(ProxyMessage { kind: Some(ack) }).await;
    }
}

/// Replaces entries of `into` by name with `upserts`, drops `removed`, and
/// keeps them ordered by name as the controller does.
fn merge<T>(into: &mut Vec<T>, upserts: Vec<T>, removed: &[String], name: fn(&T) -> &String) {
    into.retain(|e| !removed.contains(name(e)));
    for new in upserts {
        match into.iter_mut().find(|e| name(e) == name(&new)) {
            Some(old) => *old = new,
            None => into.push(new),
        }
    }
    into.sort_by(|a, b| name(a).cmp(name(b)));
}
