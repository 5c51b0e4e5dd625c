//! An Istio CRD not installed (e.g. the Gateway CRD after a `helm upgrade`,
//! which installs no new CRDs): the controller starts anyway, serves the
//! other kinds, shows the kind in `sluice_kube_kind_missing`, and watches
//! the kind once its CRD is installed. Runs on an environment of its own,
//! since the other tests expect every CRD.

#[path = "support.rs"]
mod support;

use serde_json::Value;
use sluice_api::config::{Node, ProxyConfig};
use sluice_testenv::TestEnv;
use std::time::Duration;
use support::{Controller, Proxy, eventually, kubectl, wait_crds_established, workspace};

const NS: &str = "missing-crd";
const GATEWAY_CRD: &str = "gateways.networking.istio.io";

const MESH: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: sluice-system}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: missing-crd}
spec:
  hosts: [api.missing-crd.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.250.2.7}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: missing-crd}
spec:
  hosts: [api.missing-crd.svc.cluster.local]
  http:
  - timeout: 7s
    route: [{destination: {host: api.missing-crd.svc.cluster.local}}]
"#;

const GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ingress, namespace: missing-crd}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
"#;

fn routed(config: &ProxyConfig) -> bool {
    config
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .any(|r| r.virtual_service == "missing-crd/api" && r.timeout_ms == 7000)
}

const GATEWAY_MISSING: &str = "sluice_kube_kind_missing{kind=\"Gateway\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_starts_without_a_crd_and_watches_it_once_installed() {
    let env = TestEnv::start().await.expect("test environment");
    let crds = workspace().join("crds");
    for entry in std::fs::read_dir(&crds).expect("crds/") {
        let path = entry.expect("crds/ entry").path();
        if path.file_name().and_then(|n| n.to_str()) == Some(&format!("{GATEWAY_CRD}.yaml")) {
            continue;
        }
        kubectl(&env, &["apply", "-f", path.to_str().expect("utf-8 path")]).await;
    }
    wait_crds_established(&env).await;
    env.create_namespace(NS).await.expect("namespace");
    env.apply(MESH).await.expect("mesh objects");

    // Starts (listens once every kind is listed or known missing).
    let c = Controller::start(&env.kubeconfig, &[]).await;
    assert_eq!(c.metric(GATEWAY_MISSING).await, Some(1.0), "{}", c.log());
    assert_eq!(
        c.metric("sluice_kube_kind_missing{kind=\"VirtualService\"}")
            .await,
        Some(0.0)
    );
    assert!(c.log().contains(GATEWAY_CRD), "{}", c.log());

    // The other kinds reach a proxy.
    let node = Node {
        id: format!("productpage-v1-0.{NS}"),
        workload: "productpage-v1".into(),
        namespace: NS.into(),
        service_account: "productpage".into(),
        ips: vec!["127.0.70.9".into()],
        ..Default::default()
    };
    let mut proxy = Proxy::connect(c.grpc, node).await;
    proxy
        .sync_until(Duration::from_secs(30), routed)
        .await
        .unwrap_or_else(|e| panic!("route without the Gateway CRD: {e}\nlog:\n{}", c.log()));

    // Installed later: the watch (retrying with its backoff, at most 30 s
    // apart) lists the kind, and its objects are judged.
    let gateway_crd = crds.join(format!("{GATEWAY_CRD}.yaml"));
    kubectl(
        &env,
        &["apply", "-f", gateway_crd.to_str().expect("utf-8 path")],
    )
    .await;
    wait_crds_established(&env).await;
    env.apply(GATEWAY).await.expect("Gateway");
    eventually(
        &[&c],
        "Gateway listed and Accepted",
        Duration::from_secs(90),
        || async {
            let gw = env
                .kubectl_run(&["get", "gateway", "ingress", "-n", NS, "-o", "json"])
                .await
                .map_err(|e| e.to_string())?;
            let gw: Value = serde_json::from_str(&gw).map_err(|e| e.to_string())?;
            let accepted = gw["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"))
                .ok_or_else(|| format!("no Accepted condition: {}", gw["status"]))?;
            (accepted["status"] == "True")
                .then_some(())
                .ok_or_else(|| gw["status"].to_string())
        },
    )
    .await;
    assert_eq!(c.metric(GATEWAY_MISSING).await, Some(0.0));
    let configz: Value =
        serde_json::from_str(&c.admin_get("/debug/configz").await).expect("configz json");
    let accepted = configz["accepted"].as_array().expect("accepted list");
    assert!(
        accepted.contains(&Value::from(format!("Gateway {NS}/ingress"))),
        "{configz}"
    );
    // The route stayed.
    assert!(routed(&proxy.config));
}
