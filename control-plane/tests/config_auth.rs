//! The config stream on the TLS listener: a real controller process, real
//! TLS, real bootstrap tokens, and a real `sluice-proxy` syncing over https.

use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{Node, ProxyMessage, Snapshot, proxy_message};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Controller, VS_V1, WORKLOADS, free_addr};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A child process killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[path = "support.rs"]
mod support;

async fn start(dir: &Path) -> Controller {
    let c = Controller::start_config_dir(dir).await;
    c.wait_listening(c.secure).await;
    c
}

fn root(dir: &Path) -> PathBuf {
    dir.join(".sluice/ca/root-cert.pem")
}

async fn secure_client(
    addr: SocketAddr,
    root: &Path,
) -> ConfigDiscoveryClient<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
    let pem = std::fs::read_to_string(root).expect("root kept");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name("sluice-controller.sluice-system.svc"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("TLS connect to the controller");
    ConfigDiscoveryClient::new(channel)
}

fn token(dir: &Path, who: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
        .arg("--config-dir")
        .arg(dir)
        .args(["--print-token", who])
        .output()
        .expect("print token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The proxy's side of a stream (kept open while the sender lives) and the snapshots.
type Stream = (mpsc::Sender<ProxyMessage>, tonic::Streaming<Snapshot>);

/// Opens a stream whose hello names default/productpage, with `token` if any.
async fn open(c: &Controller, dir: &Path, token: Option<&str>) -> Result<Stream, tonic::Status> {
    let mut client = secure_client(c.secure, &root(dir)).await;
    let (tx, rx) = mpsc::channel(4);
    tx.send(ProxyMessage {
        kind: Some(proxy_message::Kind::Hello(Node {
            id: "productpage-v1-0.default".into(),
            namespace: "default".into(),
            service_account: "productpage".into(),
            ..Default::default()
        })),
    })
    .await
    .expect("hello");
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
    }
    Ok((tx, client.stream(request).await?.into_inner()))
}

async fn get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

async fn wait_for(addr: SocketAddr, path: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..200 {
        last = get(addr, path).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} never satisfied the condition; last answer:\n{last}");
}

#[tokio::test]
async fn config_stream_over_tls_requires_a_token_for_the_hello_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("00-workloads.yaml"), WORKLOADS).expect("write");
    let c = start(dir.path()).await;

    let mine = token(dir.path(), "default/productpage");
    let (_tx, mut stream) = open(&c, dir.path(), Some(&mine)).await.expect("accepted");
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("snapshot");
    assert_eq!(first.version, "1");
    assert!(first.config.is_some(), "the first snapshot is complete");

    let anonymous = open(&c, dir.path(), None).await.expect_err("refused");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    assert!(
        anonymous.message().contains("Bearer"),
        "{}",
        anonymous.message()
    );

    let forged = open(&c, dir.path(), Some(&format!("{mine}x")))
        .await
        .expect_err("refused");
    assert_eq!(forged.code(), tonic::Code::Unauthenticated);

    let theirs = token(dir.path(), "default/reviews");
    let denied = open(&c, dir.path(), Some(&theirs))
        .await
        .expect_err("refused");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "hello names default/productpage but the token is for default/reviews"
    );

    let metrics = wait_for(c.admin, "/metrics", |m| {
        m.contains("sluice_config_stream_auth_failures_total{reason=\"denied\"} 1")
    })
    .await;
    assert!(
        metrics.contains("sluice_config_stream_auth_failures_total{reason=\"unauthenticated\"} 2"),
        "{metrics}"
    );
}

/// `sluice-proxy` sits next to this package's binaries once the workspace is built.
fn proxy_binary() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_sluice-controller"))
        .parent()
        .expect("target dir");
    let bin = dir.join("sluice-proxy");
    assert!(
        bin.is_file(),
        "{} missing: run `cargo build -p sluice-proxy` first",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn real_proxy_syncs_over_https_with_its_token_and_applies_deltas() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("00-workloads.yaml"), WORKLOADS).expect("write");
    let c = start(dir.path()).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token(dir.path(), "default/productpage")).expect("token");
    let _proxy = Running(
        Command::new(proxy_binary())
            .args([
                "--controller",
                &format!("https://127.0.0.1:{}", c.secure.port()),
            ])
            .arg("--ca-root")
            .arg(root(dir.path()))
            .arg("--token-file")
            .arg(&token_file)
            .args(["--ip", "127.0.77.1", "--id", "productpage-v1-0.default"])
            .args(["--workload", "productpage-v1", "--namespace", "default"])
            .args(["--service-account", "productpage"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sluice-proxy"),
    );
    wait_for(c.admin, "/debug/syncz", |b| {
        b.contains("productpage-v1-0.default") && b.contains("\"versionAcked\": \"1\"")
    })
    .await;

    // A change reaches the proxy as a delta, which it applies and ACKs.
    std::fs::write(dir.path().join("10-vs.yaml"), VS_V1).expect("write");
    wait_for(c.admin, "/debug/syncz", |b| {
        b.contains("\"versionAcked\": \"2\"")
    })
    .await;
    let metrics = get(c.admin, "/metrics").await;
    assert!(
        metrics.contains("sluice_config_pushes_total{kind=\"delta\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("sluice_config_responses_total{outcome=\"nack\"}"),
        "{metrics}"
    );
}

/// `text` without ANSI colour sequences (the controller's log is coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (false, c) => out.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    out
}

async fn kubectl(env: &sluice_testenv::TestEnv, args: &[&str]) -> String {
    env.kubectl_run(args)
        .await
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_has_no_plaintext_port_and_checks_service_account_tokens() {
    let env = sluice_testenv::TestEnv::shared()
        .await
        .expect("test environment");
    // The controller serves only once it has listed every Istio kind.
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    kubectl(env, &["apply", "-f", crds.to_str().expect("utf-8 path")]).await;
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
    env.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: cfgauth}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web, namespace: cfgauth}\n",
    )
    .await
    .expect("namespace and service account");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("controller.log");
    let (admin, secure) = (free_addr(), free_addr());
    let _controller = Running(
        Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
            .arg("--kubeconfig")
            .arg(&env.kubeconfig)
            .args(["--metrics-listen", &admin.to_string()])
            .args(["--secure-listen", &secure.to_string()])
            .args(["--webhook-listen", "off", "--leader-election=false"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stderr(std::fs::File::create(&log).expect("log file"))
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn controller"),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut up = false;
    for _ in 0..600 {
        if std::net::TcpStream::connect(secure).is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "no TLS listener; log:\n{}", read_log());
    assert!(
        plain(&read_log()).contains("plaintext=None"),
        "{}",
        read_log()
    );

    let token = kubectl(
        env,
        &[
            "create",
            "token",
            "web",
            "-n",
            "cfgauth",
            "--audience",
            "sluice",
        ],
    )
    .await;
    let hello = |sa: &str| Node {
        id: format!("{sa}-0.cfgauth"),
        namespace: "cfgauth".into(),
        service_account: sa.into(),
        ..Default::default()
    };
    for (sa, want) in [("web", None), ("db", Some(tonic::Code::PermissionDenied))] {
        let mut client = secure_client(secure, &dir.path().join("state/ca/root-cert.pem")).await;
        let (tx, rx) = mpsc::channel(4);
        tx.send(ProxyMessage {
            kind: Some(proxy_message::Kind::Hello(hello(sa))),
        })
        .await
        .expect("hello");
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header value"),
        );
        match (client.stream(request).await, want) {
            (Ok(stream), None) => {
                let first =
                    tokio::time::timeout(Duration::from_secs(10), stream.into_inner().message())
                        .await
                        .expect("in time")
                        .expect("ok")
                        .expect("snapshot");
                assert!(first.config.is_some(), "{first:?}");
            }
            (Err(status), Some(code)) => assert_eq!(status.code(), code, "{status:?}"),
            (other, want) => panic!("{sa}: wanted {want:?}, got {other:?}\nlog:\n{}", read_log()),
        }
        drop(tx);
    }
}
