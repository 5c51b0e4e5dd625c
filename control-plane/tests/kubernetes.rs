//! The real controller binary in Kubernetes mode against a real API server
//! (etcd + kube-apiserver + kube-controller-manager from `sluice-testenv`):
//! statuses written back, rejections listed, Services and Pods turned into
//! endpoints a proxy receives over the real gRPC stream.

use serde_json::Value;
use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{Ack, Node, ProxyMessage, Snapshot, proxy_message};
use sluice_testenv::TestEnv;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Controller, kubectl, workspace};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const ISTIO_KINDS: &str = "virtualservices.networking.istio.io,destinationrules.networking.istio.io,\
serviceentries.networking.istio.io,workloadentries.networking.istio.io,\
sidecars.networking.istio.io,gateways.networking.istio.io,\
envoyfilters.networking.istio.io,peerauthentications.security.istio.io,\
authorizationpolicies.security.istio.io,ratelimitpolicies.sluice.io";

const BROKEN: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: -1}]
"#;

/// Istio's samples/bookinfo/networking/bookinfo-gateway.yaml.
const BOOKINFO_GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo, namespace: default}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {exact: /productpage}}]
    route: [{destination: {host: productpage, port: {number: 9080}}}]
"#;

/// Namespace of the Service/Pod part; the Node exists only so the
/// EndpointSlice controller accepts the Pod scheduled on it.
const WORKLOAD: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: k8s-endpoints}
---
apiVersion: v1
kind: Node
metadata: {name: sluice-test-node}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: ratings, namespace: k8s-endpoints}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: k8s-endpoints}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: ratings-1
  namespace: k8s-endpoints
  labels: {app: ratings, version: v1}
spec:
  nodeName: sluice-test-node
  serviceAccountName: ratings
  containers:
  - {name: app, image: example.invalid/ratings}
  - {name: sluice-proxy, image: example.invalid/sluice-proxy}
"#;

/// Not loopback: EndpointSlice validation refuses 127.0.0.0/8, so the
/// EndpointSlice controller would leave the Pod out.
const POD_STATUS: &str = r#"{"status": {"phase": "Running", "podIP": "10.250.0.7",
 "podIPs": [{"ip": "10.250.0.7"}],
 "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}}"#;

#[path = "support.rs"]
mod support;

async fn start_controller(kubeconfig: &Path) -> Controller {
    Controller::start(kubeconfig, &[]).await
}

/// Polls `check` (which returns why it is not satisfied yet) for up to 30 s.
async fn eventually<F, Fut>(c: &Controller, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    support::eventually(&[c], what, Duration::from_secs(30), check).await
}

fn accepted_condition(item: &Value) -> Option<&Value> {
    item["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted")
}

async fn get_admin(addr: SocketAddr, path: &str) -> String {
    support::admin_get(addr, path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_in_kubernetes_mode_writes_status_and_serves_endpoints() {
    let env = TestEnv::shared().await.expect("test environment");
    let crds = workspace().join("crds");
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
    env.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: production}\n")
        .await
        .expect("namespace production");
    let c = start_controller(&env.kubeconfig).await;

    // The seed mesh: every object is accepted, at its current generation.
    let seed = workspace().join("../shared/seed-mesh.yaml");
    kubectl(env, &["apply", "-f", seed.to_str().expect("utf-8 path")]).await;
    let seed_count = std::fs::read_to_string(&seed)
        .expect("seed mesh")
        .lines()
        .filter(|l| l.starts_with("kind:"))
        .count();
    eventually(&c, "every seed object Accepted=True", || async {
        let list = kubectl(env, &["get", ISTIO_KINDS, "-A", "-o", "json"]).await;
        let list: Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        if items.len() < seed_count {
            return Err(format!("{} of {seed_count} objects", items.len()));
        }
        for item in &items {
            let name = &item["metadata"]["name"];
            let cond = accepted_condition(item).ok_or(format!("{name}: no Accepted"))?;
            let generation = &item["metadata"]["generation"];
            if cond["status"] != "True"
                || cond["reason"] != "Accepted"
                || item["status"]["observedGeneration"] != *generation
                || cond["lastTransitionTime"].as_str().is_none()
            {
                return Err(format!("{name}: {}", item["status"]));
            }
        }
        Ok(())
    })
    .await;
    let managers = kubectl(
        env,
        &[
            "get",
            "virtualservice",
            "reviews",
            "-n",
            "default",
            "--show-managed-fields",
            "-o",
            "json",
        ],
    )
    .await;
    let managers: Value = serde_json::from_str(&managers).expect("json");
    assert!(
        managers["metadata"]["managedFields"]
            .as_array()
            .expect("managedFields")
            .iter()
            .any(|m| m["manager"] == "sluice-controller"
                && m["subresource"] == "status"
                && m["operation"] == "Apply"),
        "{managers}"
    );

    // Istio's bookinfo-gateway.yaml: the Gateway is stored by its CRD,
    // watched and accepted (no proxy serves it), as its VirtualService is.
    env.apply(BOOKINFO_GATEWAY)
        .await
        .expect("apply bookinfo-gateway");
    eventually(
        &c,
        "bookinfo Gateway and VirtualService Accepted=True",
        || async {
            for (kind, name) in [
                ("gateway", "bookinfo-gateway"),
                ("virtualservice", "bookinfo"),
            ] {
                let obj = kubectl(env, &["get", kind, name, "-n", "default", "-o", "json"]).await;
                let obj: Value = serde_json::from_str(&obj).map_err(|e| e.to_string())?;
                let cond = accepted_condition(&obj).ok_or(format!("{kind} {name}: no Accepted"))?;
                if cond["status"] != "True" {
                    return Err(format!("{kind} {name}: {}", obj["status"]));
                }
            }
            Ok(())
        },
    )
    .await;
    let configz: Value =
        serde_json::from_str(&get_admin(c.admin, "/debug/configz").await).expect("configz json");
    let accepted = configz["accepted"].as_array().expect("accepted list");
    assert!(
        accepted.contains(&Value::from("Gateway default/bookinfo-gateway")),
        "{configz}"
    );
    let metrics = get_admin(c.admin, "/metrics").await;
    assert!(
        metrics.contains("sluice_config_objects{kind=\"Gateway\"} 1"),
        "{metrics}"
    );

    // A VirtualService the schema admits but Sluice refuses.
    env.apply(BROKEN)
        .await
        .expect("apply broken VirtualService");
    eventually(&c, "broken VirtualService Accepted=False", || async {
        let vs = kubectl(
            env,
            &[
                "get",
                "virtualservice",
                "broken",
                "-n",
                "default",
                "-o",
                "json",
            ],
        )
        .await;
        let vs: Value = serde_json::from_str(&vs).map_err(|e| e.to_string())?;
        let cond = accepted_condition(&vs).ok_or("no Accepted condition")?;
        let message = cond["message"].as_str().unwrap_or_default();
        (cond["status"] == "False"
            && cond["reason"] == "Invalid"
            && message.contains("spec.http[0].route[0].weight"))
        .then_some(())
        .ok_or_else(|| vs["status"].to_string())
    })
    .await;
    let configz: Value =
        serde_json::from_str(&get_admin(c.admin, "/debug/configz").await).expect("configz json");
    let rejected = configz["rejected"].as_array().expect("rejected list");
    assert!(
        rejected
            .iter()
            .any(|r| r["object"] == "VirtualService default/broken"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("spec.http[0].route[0].weight"))),
        "{configz}"
    );
    let accepted = configz["accepted"].as_array().expect("accepted list");
    assert!(
        accepted.contains(&Value::from("PeerAuthentication production/default")),
        "{configz}"
    );

    // Fixed: the condition flips back, for the new generation.
    env.apply(&BROKEN.replace("weight: -1", "weight: 100"))
        .await
        .expect("apply fixed VirtualService");
    eventually(&c, "fixed VirtualService Accepted=True", || async {
        let vs = kubectl(
            env,
            &[
                "get",
                "virtualservice",
                "broken",
                "-n",
                "default",
                "-o",
                "json",
            ],
        )
        .await;
        let vs: Value = serde_json::from_str(&vs).map_err(|e| e.to_string())?;
        let cond = accepted_condition(&vs).ok_or("no Accepted condition")?;
        (cond["status"] == "True"
            && cond.get("message").is_none()
            && vs["status"]["observedGeneration"] == 2)
            .then_some(())
            .ok_or_else(|| vs["status"].to_string())
    })
    .await;

    // A Service and a ready Pod behind it reach a proxy as an endpoint.
    env.apply(WORKLOAD).await.expect("apply Service and Pod");
    kubectl(
        env,
        &[
            "patch",
            "pod",
            "ratings-1",
            "-n",
            "k8s-endpoints",
            "--subresource=status",
            "--type=merge",
            "-p",
            POD_STATUS,
        ],
    )
    .await;
    let mut proxy = connect_proxy(c.grpc).await;
    let cluster_name = "outbound|9080||ratings.k8s-endpoints.svc.cluster.local";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Ok(snapshot) = tokio::time::timeout_at(deadline.into(), proxy.next()).await else {
            let state = env
                .kubectl_run(&[
                    "get",
                    "pods,endpointslices",
                    "-n",
                    "k8s-endpoints",
                    "-o",
                    "yaml",
                ])
                .await;
            panic!(
                "no snapshot with the ratings endpoint; cluster state:\n{state:?}\nlog:\n{}",
                c.log()
            );
        };
        proxy.ack(&snapshot.version).await;
        // After an ACK, changes come as deltas: either way the cluster is listed.
        let clusters = match (snapshot.config, snapshot.delta) {
            (Some(config), _) => config.clusters,
            (None, Some(delta)) => delta.clusters,
            (None, None) => panic!("snapshot {} without config or delta", snapshot.version),
        };
        let Some(cluster) = clusters.iter().find(|cl| cl.name == cluster_name) else {
            continue;
        };
        let Some(ep) = cluster.endpoints.first() else {
            continue;
        };
        assert_eq!(ep.address, "10.250.0.7");
        assert_eq!(ep.port, 8080);
        assert!(ep.sidecar, "sluice-proxy container means a sidecar");
        let workload = ep.workload.as_ref().expect("workload");
        assert_eq!(
            workload.principal,
            "spiffe://cluster.local/ns/k8s-endpoints/sa/ratings"
        );
        assert_eq!(ep.labels.get("version").map(String::as_str), Some("v1"));
        break;
    }

    // Reconciled: a change is Pending until the connected proxy applies it,
    // names the proxy when it refuses it, and is True once it applied it.
    let reconciled = |want: &'static str, reason: &'static str| {
        move || async move {
            let vs = kubectl(
                env,
                &[
                    "get",
                    "virtualservice",
                    "reviews",
                    "-n",
                    "default",
                    "-o",
                    "json",
                ],
            )
            .await;
            let vs: Value = serde_json::from_str(&vs).map_err(|e| e.to_string())?;
            let cond = vs["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Reconciled"))
                .ok_or("no Reconciled condition")?;
            (cond["status"] == want
                && cond["reason"] == reason
                && cond["observedGeneration"] == vs["metadata"]["generation"])
                .then_some(())
                .ok_or_else(|| vs["status"].to_string())
        }
    };
    kubectl(
        env,
        &[
            "patch",
            "virtualservice",
            "reviews",
            "-n",
            "default",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/http/0/timeout","value":"7s"}]"#,
        ],
    )
    .await;
    eventually(
        &c,
        "changed VirtualService Reconciled=False Pending",
        || reconciled("False", "Pending")(),
    )
    .await;
    // Pending means the change is published; the newest snapshot carries it.
    let mut pending = None;
    while let Ok(s) = tokio::time::timeout(Duration::from_secs(1), proxy.next()).await {
        pending = Some(s);
    }
    let pending = pending.expect("the change reaches the proxy");
    let nack = proxy_message::Kind::Nack(sluice_api::config::Nack {
        version: pending.version.clone(),
        error: "test: refused on purpose".into(),
    });
    let _ = proxy.tx.send(ProxyMessage { kind: Some(nack) }).await;
    eventually(&c, "refused change Reconciled=False Rejected", || {
        reconciled("False", "Rejected")()
    })
    .await;
    proxy.ack(&pending.version).await;
    eventually(&c, "applied change Reconciled=True", || {
        reconciled("True", "Reconciled")()
    })
    .await;
    // Changes that came after a quiet watch went out without the debounce.
    let metrics = get_admin(c.admin, "/metrics").await;
    let leading = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sluice_config_publishes_total{edge=\"leading\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        leading >= 1,
        "no change published on the leading edge:\n{metrics}"
    );
}

struct Proxy {
    tx: mpsc::Sender<ProxyMessage>,
    snapshots: tonic::Streaming<Snapshot>,
}

impl Proxy {
    async fn next(&mut self) -> Snapshot {
        self.snapshots
            .message()
            .await
            .expect("stream ok")
            .expect("a snapshot")
    }

    async fn ack(&self, version: &str) {
        let ack = proxy_message::Kind::Ack(Ack {
            version: version.into(),
        });
        let _ = self.tx.send(ProxyMessage { kind: Some(ack) }).await;
    }
}

async fn connect_proxy(addr: SocketAddr) -> Proxy {
    let mut client = ConfigDiscoveryClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(8);
    let hello = proxy_message::Kind::Hello(Node {
        id: "productpage-v1-0.k8s-endpoints".into(),
        workload: "productpage-v1".into(),
        namespace: "k8s-endpoints".into(),
        service_account: "productpage".into(),
        ips: vec!["127.0.50.9".into()],
        ..Default::default()
    });
    tx.send(ProxyMessage { kind: Some(hello) })
        .await
        .expect("hello");
    let snapshots = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    Proxy { tx, snapshots }
}

#[test]
fn controller_refuses_config_dir_and_kubeconfig_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
        .arg("--config-dir")
        .arg(dir.path())
        .arg("--kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .output()
        .expect("run controller");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
