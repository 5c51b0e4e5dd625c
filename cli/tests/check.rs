//! `sluicectl check` against a real API server (etcd, kube-apiserver and
//! kube-controller-manager from `sluice-testenv`): before and after the CRDs,
//! with the chart installed and a real controller playing its pod (reached
//! through the pod proxy on a routable address), with a CRD missing a served
//! version, an injected pod whose sidecar is not connected, and a garbage
//! caBundle. Needs root for the local route of the pods' addresses.

use sluice_conformance::mesh::addr::AddrBlock;
use sluice_testenv::TestEnv;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NS: &str = "sluice-system";
const NODE: &str = "sluice-check";
const VS_CRD: &str = "virtualservices.networking.istio.io";
/// A pod as the injector leaves it: annotated, with the native sidecar.
const WEB_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  namespace: shop
  annotations: {sidecar.sluice.io/status: injected}
spec:
  initContainers: [{name: sluice-proxy, image: example.invalid/proxy, restartPolicy: Always}]
  containers: [{name: app, image: example.invalid/web}]
"#;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// `sluicectl check --kubeconfig K args...`: exit code and stdout.
fn check(kubeconfig: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .arg("check")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run sluicectl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "sluicectl check {args:?} -> {:?}\n{stdout}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), stdout)
}

async fn kubectl(env: &TestEnv, args: &[&str]) -> String {
    env.kubectl_run(args)
        .await
        .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
}

/// `kubectl create -f -` (for kinds `apply` cannot read back, like Binding).
fn create(env: &TestEnv, manifest: &str) {
    use std::io::Write;
    let mut child = env
        .kubectl()
        .args(["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("write");
    assert!(child.wait().expect("kubectl").success(), "{manifest}");
}

async fn install_crds(env: &TestEnv) {
    let crds = workspace().join("crds").display().to_string();
    kubectl(env, &["apply", "-f", &crds]).await;
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

async fn eventually<F, Fut>(what: &str, check: F) -> String
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check().await {
            Ok(v) => return v,
            Err(why) if Instant::now() > deadline => panic!("{what}: {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A kubeconfig for the same API server with another user's token.
fn kubeconfig_with_token(env: &TestEnv, dir: &Path, token: &str) -> PathBuf {
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &env.ca_pem).expect("ca");
    let path = dir.join("user.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: '{}', certificate-authority: '{}'}}\nusers:\n- name: u\n  user: {{token: '{token}'}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: u}}\ncurrent-context: t\n",
            env.server,
            ca.display(),
        ),
    )
    .expect("kubeconfig");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_missing_crds_permissions_and_unserved_versions() {
    let env = TestEnv::start().await.expect("test API server");

    // Before installing: the API checks pass, CRDs the chart will create are named.
    let (code, out) = check(&env.kubeconfig, &["--pre"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("√ can query the Kubernetes API\n"), "{out}");
    assert!(
        out.contains("√ is running Kubernetes 1.29 or newer (v1."),
        "{out}"
    );
    assert!(
        out.contains("√ can create customresourcedefinitions\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("‼ CRD {VS_CRD} is installed")),
        "{out}"
    );
    assert!(
        out.contains(&format!("CRD {VS_CRD} is not installed yet")),
        "{out}"
    );

    // The full check on the empty server fails, naming the CRD and the fix.
    let (code, out) = check(&env.kubeconfig, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "× CRD {VS_CRD} is installed and serves v1, v1beta1, v1alpha3\n    CRD {VS_CRD} is not installed\n    see: kubectl apply -f crds/"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "no Deployment sluice-controller in namespace {NS}"
        )),
        "{out}"
    );
    assert!(
        out.ends_with("failed)\n") && out.contains("Status check results are ×"),
        "{out}"
    );

    // JSON carries the same results.
    let (code, json) = check(&env.kubeconfig, &["-o", "json"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["success"], false);
    let crds = v["categories"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["categoryName"] == "sluice-crds"))
        .expect("sluice-crds category");
    assert_eq!(crds["checks"][0]["result"], "error", "{crds}");

    // A user who may do nothing fails the permission checks with the hint.
    let dir = tempfile::tempdir().expect("tempdir");
    let nobody = kubeconfig_with_token(&env, dir.path(), &env.unprivileged_token);
    let (code, out) = check(&nobody, &["--pre"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("× can create customresourcedefinitions\n    not allowed"),
        "{out}"
    );
    assert!(
        out.contains("see: `kubectl auth can-i create customresourcedefinitions`"),
        "{out}"
    );

    install_crds(&env).await;
    let (code, out) = check(&env.kubeconfig, &["--pre"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "√ CRD {VS_CRD} is installed and serves v1, v1beta1, v1alpha3\n"
        )),
        "{out}"
    );

    // A served version turned off (as an older Istio CRD would be) fails by name.
    let versions = kubectl(
        &env,
        &[
            "get",
            "crd",
            VS_CRD,
            "-o",
            "jsonpath={.spec.versions[*].name}",
        ],
    )
    .await;
    let index = versions
        .split_whitespace()
        .position(|v| v == "v1beta1")
        .expect("v1beta1 installed");
    let patch =
        format!(r#"[{{"op":"replace","path":"/spec/versions/{index}/served","value":false}}]"#);
    kubectl(&env, &["patch", "crd", VS_CRD, "--type=json", "-p", &patch]).await;
    let (code, out) = check(&env.kubeconfig, &["--pre"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "    CRD {VS_CRD} does not serve version v1beta1\n    see: kubectl apply -f crds/"
        )),
        "{out}"
    );
}

/// The real controller, listening on the pod address the test gave its pod.
struct Controller(Child, PathBuf);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Controller {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

/// Starts the controller on the pod's address. Controllers of other test
/// binaries running at the same time bind the wildcard `:15017` by default,
/// which takes the port from every address: the start is retried until free.
async fn start_controller(kubeconfig: &Path, ip: std::net::Ipv4Addr, dir: &Path) -> Controller {
    let bin = sluice_conformance::mesh::bins::find(
        "sluice-controller",
        Path::new(env!("CARGO_BIN_EXE_sluicectl")).parent(),
    )
    .expect("sluice-controller built (cargo build -p sluice-control-plane)");
    let log = dir.join("controller.log");
    let webhook = std::net::SocketAddr::from((ip, 15017));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let child = Command::new(&bin)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-listen", &format!("{ip}:15014")])
            .args(["--webhook-listen", &webhook.to_string()])
            .args(["--secure-listen", &format!("{ip}:15012")])
            .args(["--ca-secret", &format!("{NS}/sluice-ca")])
            .args(["--leader-election-namespace", NS])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn controller");
        let mut controller = Controller(child, log.clone());
        loop {
            if std::net::TcpStream::connect(webhook).is_ok() {
                return controller;
            }
            if let Ok(Some(_)) = controller.0.try_wait() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "controller not listening:\n{}",
                controller.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let why = controller.log();
        assert!(
            why.contains("Address already in use") && Instant::now() < deadline,
            "controller exited:\n{why}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn helm(env: &TestEnv, args: &[&str]) {
    let bin = std::env::var_os("SLUICE_K8S_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".cache/k8s/bin"))
        .join("helm");
    let tmp = std::env::temp_dir();
    let out = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .env("HELM_CACHE_HOME", tmp.join("sluice-helm-cache"))
        .env("HELM_CONFIG_HOME", tmp.join("sluice-helm-config"))
        .env("HELM_DATA_HOME", tmp.join("sluice-helm-data"))
        .output()
        .unwrap_or_else(|e| panic!("{} (run scripts/k8s-tools): {e}", bin.display()));
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Binds `pod` to the test node and marks it running and ready at `ip`, as
/// the scheduler and a kubelet would.
async fn run_pod(env: &TestEnv, ns: &str, pod: &str, ip: &str) {
    create(
        env,
        &format!(
            "apiVersion: v1\nkind: Binding\nmetadata: {{name: {pod}, namespace: {ns}}}\ntarget: {{apiVersion: v1, kind: Node, name: {NODE}}}\n"
        ),
    );
    env.set_pod_ready(ns, pod, ip).await.expect("pod ready");
}

/// A stand-in sidecar's :15090 whose certificate expires in ten minutes.
async fn serve_stats(addr: std::net::SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind 15090");
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let body = format!("sluice_certificate_expiration_timestamp_seconds {expiry}\n");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(reply.as_bytes()).await;
        }
    });
}

/// A reserved block whose ports used here are free (the reservation only
/// probes the ports the conformance mesh uses).
fn free_block() -> AddrBlock {
    for _ in 0..8 {
        let block = AddrBlock::reserve_routable().expect("routable addresses (needs root)");
        let free = [(1, 15012), (1, 15014), (1, 15017), (2, 15090)]
            .iter()
            .all(|(host, port)| std::net::TcpListener::bind((block.ip(*host), *port)).is_ok());
        if free {
            return block;
        }
    }
    panic!("no address block with free ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_on_installed_chart_and_fails_on_broken_parts() {
    let block = free_block();
    let env = TestEnv::start().await.expect("test API server");
    env.ensure_node(NODE).await.expect("node");
    helm(
        &env,
        &[
            "install",
            "sluice",
            &workspace().join("charts/sluice").display().to_string(),
            "-n",
            NS,
            "--create-namespace",
            "--wait=false",
            "--set",
            "replicaCount=1",
        ],
    );
    kubectl(
        &env,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    )
    .await;
    let pod = eventually("the Deployment's pod", || async {
        let out = env
            .kubectl_run(&[
                "get",
                "pods",
                "-n",
                NS,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])
            .await
            .map_err(|e| e.to_string())?;
        out.split_whitespace()
            .next()
            .map(str::to_owned)
            .ok_or_else(|| "no pod yet".to_owned())
    })
    .await;
    let ip = block.ip(1);
    run_pod(&env, NS, &pod, &ip.to_string()).await;
    // No kube-proxy here: the API server would send calls for the Service
    // to its ClusterIP, which routes nowhere. The validating webhook calls
    // the pod's address instead, as a cluster network would deliver them.
    let url = format!(
        r#"[{{"op":"remove","path":"/webhooks/0/clientConfig/service"}},{{"op":"add","path":"/webhooks/0/clientConfig/url","value":"https://{ip}:15017/validate"}}]"#
    );
    kubectl(
        &env,
        &[
            "patch",
            "validatingwebhookconfiguration",
            "sluice-validator",
            "--type=json",
            "-p",
            &url,
        ],
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let controller = start_controller(&env.kubeconfig, ip, dir.path()).await;
    eventually("caBundle patched and endpoints ready", || async {
        let bundle = env
            .kubectl_run(&[
                "get",
                "mutatingwebhookconfiguration/sluice-sidecar-injector",
                "validatingwebhookconfiguration/sluice-validator",
                "-o",
                "jsonpath={.items[*].webhooks[0].clientConfig.caBundle}",
            ])
            .await
            .map_err(|e| e.to_string())?;
        let ready = env
            .kubectl_run(&[
                "get",
                "endpointslices",
                "-n",
                NS,
                "-l",
                "kubernetes.io/service-name=sluice-controller",
                "-o",
                "jsonpath={.items[*].endpoints[*].addresses[*]}",
            ])
            .await
            .map_err(|e| e.to_string())?;
        (bundle.split_whitespace().count() == 2 && ready.contains(&ip.to_string()))
            .then(String::new)
            .ok_or_else(|| {
                format!(
                    "caBundle {bundle:?}, endpoints {ready:?}\n{}",
                    controller.log()
                )
            })
    })
    .await;

    // The API server loads a new caBundle asynchronously: until then its
    // webhook calls fail, and so does the check, rightly.
    let out = eventually("check passes", || async {
        match check(&env.kubeconfig, &[]) {
            (Some(0), out) => Ok(out),
            (_, out) => Err(format!("{out}\n{}", controller.log())),
        }
    })
    .await;
    for line in [
        &format!("√ CRD {VS_CRD} is installed and serves v1, v1beta1, v1alpha3\n"),
        &format!("√ controller Deployment {NS}/sluice-controller exists\n"),
        "√ controller pods are Ready (1/1)\n",
        "√ controller pods answer /ready and /metrics on port 15014 (1/1)\n",
        "√ webhook injection.sluice.io: Service sluice-system/sluice-controller has ready endpoints (1)\n",
        &format!(
            "√ webhook injection.sluice.io: the serving certificate verifies against caBundle for sluice-controller.{NS}.svc (served at {ip}:15017)\n"
        ),
        &format!(
            "√ webhook validation.sluice.io: the serving certificate verifies against caBundle for {ip} (served at {ip}:15017)\n"
        ),
        "√ the API server calls webhook validation.sluice.io (a dry-run invalid VirtualService was refused by it)\n",
        "√ every injected sidecar is SYNCED (no running injected pod)\n",
        "Status check results are √",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }

    // An injected pod whose sidecar never connected, with a certificate about to expire.
    env.create_namespace("shop").await.expect("namespace");
    let sidecar_ip = block.ip(2);
    serve_stats((sidecar_ip, 15090).into()).await;
    env.apply(WEB_POD).await.expect("pod");
    run_pod(&env, "shop", "web-1", &sidecar_ip.to_string()).await;
    let (code, out) = check(&env.kubeconfig, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("× every injected sidecar is SYNCED (0/1)\n    shop/web-1: not connected to any controller\n    see: sluicectl proxy-status"),
        "{out}"
    );
    assert!(
        out.contains("× every sidecar's workload certificate is valid for more than 60 minutes (1/1 read)\n    shop/web-1: expires in "),
        "{out}"
    );
    kubectl(&env, &["delete", "namespace", "shop", "--wait=false"]).await;

    // Without the controller nothing puts caBundle back: garbage stays and fails.
    drop(controller);
    kubectl(
        &env,
        &[
            "patch", "mutatingwebhookconfiguration", "sluice-sidecar-injector", "--type=json", "-p",
            r#"[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"Z2FyYmFnZQ=="}]"#,
        ],
    )
    .await;
    let (code, out) = check(&env.kubeconfig, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "× webhook injection.sluice.io of MutatingWebhookConfiguration sluice-sidecar-injector has a valid, unexpired caBundle\n    webhook injection.sluice.io caBundle holds no PEM certificate\n    see: the controller writes the mesh root into caBundle"
        ),
        "{out}"
    );
    // The validating webhook's server is gone: only the root in the Secret is compared.
    assert!(
        out.contains(
            "verified only that caBundle holds the mesh root of Secret sluice-system/sluice-ca"
        ),
        "{out}"
    );
    assert!(
        out.contains("× the API server calls webhook validation.sluice.io\n    Internal error occurred: failed calling webhook \"validation.sluice.io\""),
        "{out}"
    );
    assert!(
        out.contains("‼ controller pods answer /ready and /metrics on port 15014 (0/1)"),
        "{out}"
    );
}
