//! The real controller's admission webhooks called by a real API server
//! (etcd + kube-apiserver + kube-controller-manager from `sluice-testenv`):
//! the controller patches the mesh root into the webhook configurations,
//! then `kubectl apply` of an invalid VirtualService is refused with the
//! field-named message and pods in an opted-in namespace go through `/inject`.

use base64::Engine;
use serde_json::Value;
use sluice_control_plane::inject::{InjectConfig, inject};
use sluice_testenv::TestEnv;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{Controller, eventually, free_addr, install_crds, kubectl, workspace};

#[path = "support.rs"]
mod support;

/// How long the controller and the API server may take to react.
const LIMIT: Duration = Duration::from_secs(30);

const PROXY_IMAGE: &str = "example.invalid/sluice-proxy:webhook-test";

const INVALID_VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-bad, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: -1}]
"#;

const DEPRECATED_DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-lb, namespace: default}
spec:
  host: ratings
  trafficPolicy: {loadBalancer: {simple: LEAST_CONN}}
"#;

/// Istio's samples/bookinfo/networking/bookinfo-gateway.yaml: a Gateway and
/// the VirtualService bound to it.
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

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ratings-1, labels: {app: ratings}}
spec:
  containers:
  - name: app
    image: example.invalid/ratings
    ports: [{containerPort: 8080}]
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: details, namespace: inject-demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: details}}
  template:
    metadata: {labels: {app: details, version: v1}}
    spec:
      containers:
      - name: app
        image: example.invalid/details
        ports: [{containerPort: 9080}]
        readinessProbe: {httpGet: {path: /health, port: 9080}}
"#;

/// `kubectl apply -f -`: whether it succeeded, and its stderr (warnings, errors).
async fn apply(env: &TestEnv, manifest: &str) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(manifest.as_bytes()).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether every webhook of `kind` (`<resource>/<name>`) has `expected`
/// (base64 PEM) as its caBundle.
async fn ca_bundle_is(env: &TestEnv, kind: &str, expected: &str) -> Result<(), String> {
    let out = kubectl(
        env,
        &[
            "get",
            kind,
            "-o",
            "jsonpath={.webhooks[*].clientConfig.caBundle}",
        ],
    )
    .await;
    (out.trim() == expected)
        .then_some(())
        .ok_or_else(|| format!("caBundle is `{}`", out.trim()))
}

fn counter(metrics: &str, webhook: &str, outcome: &str) -> u64 {
    let series =
        format!("sluice_webhook_requests_total{{webhook=\"{webhook}\",outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn webhook_configs(port: u16) -> String {
    format!(
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: sluice-validator}}
webhooks:
- name: validation.sluice.io
  clientConfig: {{url: "https://127.0.0.1:{port}/validate"}}
  rules:
  - apiGroups: [networking.istio.io, security.istio.io, sluice.io]
    apiVersions: ["*"]
    operations: [CREATE, UPDATE]
    resources: ["*"]
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: sluice-sidecar-injector}}
webhooks:
- name: sidecar-injector.sluice.io
  clientConfig: {{url: "https://127.0.0.1:{port}/inject"}}
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE]
    resources: [pods]
  namespaceSelector: {{matchLabels: {{sluice-injection: enabled}}}}
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_calls_controller_webhooks_after_ca_bundle_patch() {
    let env = TestEnv::shared().await.expect("test environment");
    install_crds(env).await;
    let webhook = free_addr();
    let listen = webhook.to_string();
    // The sidecar's resources and worker threads as the chart passes them.
    let mesh = std::env::temp_dir().join(format!("webhooks-mesh-{}.yaml", std::process::id()));
    std::fs::write(&mesh, "defaultConfig: {concurrency: 1}\n").expect("mesh config file");
    let mesh = mesh.display().to_string();
    let c = Controller::start(
        &env.kubeconfig,
        &[
            "--webhook-listen",
            &listen,
            "--proxy-image",
            PROXY_IMAGE,
            "--mesh-config",
            &mesh,
            "--proxy-resources",
            r#"{"requests": {"cpu": "20m", "memory": "24Mi"}, "limits": {"memory": "64Mi"}}"#,
        ],
    )
    .await;
    c.wait_listening(webhook).await;

    // Created without caBundle; the controller fills in the mesh root.
    let (ok, stderr) = apply(env, &webhook_configs(webhook.port())).await;
    assert!(ok, "{stderr}");
    let root = std::fs::read_to_string(c.state.join("ca/root-cert.pem"))
        .expect("mesh root written by the controller");
    let expected = base64::engine::general_purpose::STANDARD.encode(&root);
    for kind in [
        "validatingwebhookconfiguration/sluice-validator",
        "mutatingwebhookconfiguration/sluice-sidecar-injector",
    ] {
        eventually(&[&c], &format!("{kind} caBundle patched"), LIMIT, || {
            ca_bundle_is(env, kind, &expected)
        })
        .await;
    }

    // A reset caBundle (an upgrade re-applying the manifest) is put back.
    kubectl(
        env,
        &[
            "patch",
            "validatingwebhookconfiguration",
            "sluice-validator",
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/webhooks/0/clientConfig/caBundle"}]"#,
        ],
    )
    .await;
    eventually(&[&c], "caBundle patched again after removal", LIMIT, || {
        ca_bundle_is(
            env,
            "validatingwebhookconfiguration/sluice-validator",
            &expected,
        )
    })
    .await;

    // The API server reloads webhook configurations asynchronously: until it
    // trusts the new caBundle, calls fail with a TLS error instead.
    eventually(
        &[&c],
        "invalid VirtualService refused by /validate",
        LIMIT,
        || async {
            let (ok, stderr) = apply(env, INVALID_VS).await;
            (!ok && stderr.contains(
                "VirtualService default/reviews-bad: spec.http[0].route[0].weight: must be >= 0",
            ))
            .then_some(())
            .ok_or(stderr)
        },
    )
    .await;
    let missing = env
        .kubectl_run(&["get", "virtualservice", "reviews-bad", "-n", "default"])
        .await;
    assert!(missing.is_err(), "refused object was stored: {missing:?}");

    let (ok, stderr) = apply(env, &INVALID_VS.replace("weight: -1", "weight: 100")).await;
    assert!(ok, "valid VirtualService refused: {stderr}");
    let (ok, stderr) = apply(env, DEPRECATED_DR).await;
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Warning: DestinationRule default/ratings-lb: spec.trafficPolicy.loadBalancer.simple: deprecated"),
        "{stderr}"
    );

    // A Gateway is admitted with the warning that no proxy serves it, and
    // one Istio would refuse is refused naming the field.
    let (ok, stderr) = apply(env, BOOKINFO_GATEWAY).await;
    assert!(ok, "bookinfo-gateway refused: {stderr}");
    assert!(
        stderr.contains(
            "Warning: Gateway default/bookinfo-gateway: spec: accepted and validated, not served"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "Warning: VirtualService default/bookinfo: spec.gateways: applies to no sidecar"
        ),
        "{stderr}"
    );
    let (ok, stderr) = apply(
        env,
        &BOOKINFO_GATEWAY.replace("name: http, protocol: HTTP", "protocol: HTTP"),
    )
    .await;
    assert!(
        !ok && stderr.contains(
            "Gateway default/bookinfo-gateway: spec.servers[0].port.name: port name is required"
        ),
        "{stderr}"
    );

    env.create_namespace("production")
        .await
        .expect("namespace production");
    let seed =
        std::fs::read_to_string(workspace().join("../shared/seed-mesh.yaml")).expect("seed mesh");
    let (ok, stderr) = apply(env, &seed).await;
    assert!(ok, "seed mesh refused: {stderr}");

    // A pod in an opted-in namespace goes through /inject.
    env.create_namespace("inject-demo")
        .await
        .expect("namespace inject-demo");
    kubectl(
        env,
        &[
            "label",
            "namespace",
            "inject-demo",
            "sluice-injection=enabled",
        ],
    )
    .await;
    let before = counter(&c.admin_get("/metrics").await, "inject", "allowed");
    let (ok, stderr) = apply(
        env,
        &POD.replace(
            "{name: ratings-1,",
            "{name: ratings-1, namespace: inject-demo,",
        ),
    )
    .await;
    assert!(ok, "pod refused: {stderr}");
    let after = counter(&c.admin_get("/metrics").await, "inject", "allowed");
    assert_eq!(after, before + 1, "{}", c.admin_get("/metrics").await);
    let stored: Value = serde_json::from_str(
        &kubectl(
            env,
            &["get", "pod", "ratings-1", "-n", "inject-demo", "-o", "json"],
        )
        .await,
    )
    .expect("pod json");

    // What injection adds to this pod decides what the API server must hold.
    let mut sent: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(POD).expect("pod yaml");
    sent.metadata.namespace = Some("inject-demo".into());
    let cfg = InjectConfig {
        proxy_image: PROXY_IMAGE.into(),
        ..InjectConfig::default()
    };
    let injected = inject(&sent, &cfg).expect("inject");
    let names = |p: &k8s_openapi::api::core::v1::Pod| -> Vec<String> {
        p.spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .map(|cs| cs.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    };
    let stored_inits: Vec<String> = stored["spec"]["initContainers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    eprintln!("init containers after admission: {stored_inits:?}");
    assert_eq!(stored_inits, names(&injected), "{stored}");
    if names(&injected).iter().any(|n| n == "sluice-proxy") {
        let proxy = stored["spec"]["initContainers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == "sluice-proxy"))
            .expect("sluice-proxy init container");
        assert_eq!(proxy["image"], PROXY_IMAGE, "{stored}");
        assert_eq!(proxy["resources"]["requests"]["cpu"], "20m", "{proxy}");
        assert_eq!(proxy["resources"]["requests"]["memory"], "24Mi", "{proxy}");
        assert_eq!(proxy["resources"]["limits"]["memory"], "64Mi", "{proxy}");
        let concurrency = proxy["env"]
            .as_array()
            .and_then(|e| e.iter().find(|v| v["name"] == "SLUICE_CONCURRENCY"))
            .map(|v| v["value"].clone());
        assert_eq!(concurrency, Some(Value::from("1")), "{proxy}");
    }
    let _ = std::fs::remove_file(&mesh);

    // The pod's own annotations reach what the API server stores: Istio's
    // proxyImage and proxyCPU for both injected containers, excludeInterfaces
    // for the capture; a malformed one refuses the pod, naming it.
    let annotated = POD.replace(
        "{name: ratings-1, labels: {app: ratings}}",
        "{name: ratings-2, namespace: inject-demo, labels: {app: ratings}, annotations: \
         {sidecar.istio.io/proxyImage: \"example.invalid/sluice-proxy:debug\", \
         sidecar.istio.io/proxyCPU: 150m, traffic.sidecar.istio.io/excludeInterfaces: net1}}",
    );
    let (ok, stderr) = apply(env, &annotated).await;
    assert!(ok, "annotated pod refused: {stderr}");
    let stored: Value = serde_json::from_str(
        &kubectl(
            env,
            &["get", "pod", "ratings-2", "-n", "inject-demo", "-o", "json"],
        )
        .await,
    )
    .expect("pod json");
    for name in ["sluice-init", "sluice-proxy"] {
        let c = stored["spec"]["initContainers"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no {name}: {stored}"));
        assert_eq!(c["image"], "example.invalid/sluice-proxy:debug", "{c}");
        assert_eq!(c["resources"]["requests"]["cpu"], "150m", "{c}");
        assert!(
            c["resources"]["limits"].is_null(),
            "only what the pod set: {c}"
        );
    }
    let init_args: Vec<&str> = stored["spec"]["initContainers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "sluice-init"))
        .and_then(|c| c["args"].as_array())
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let at = init_args.iter().position(|a| *a == "--exclude-interfaces");
    assert_eq!(
        at.and_then(|i| init_args.get(i + 1)).copied(),
        Some("net1"),
        "{init_args:?}"
    );
    let malformed = POD.replace(
        "{name: ratings-1, labels: {app: ratings}}",
        "{name: ratings-3, namespace: inject-demo, labels: {app: ratings}, annotations: \
         {sidecar.istio.io/proxyImage: \"two words\"}}",
    );
    let (ok, stderr) = apply(env, &malformed).await;
    assert!(!ok, "a malformed proxyImage was admitted");
    assert!(
        stderr.contains("sidecar.istio.io/proxyImage") && stderr.contains("ratings-3"),
        "{stderr}"
    );

    // A Deployment's pods, created by kube-controller-manager's ReplicaSet
    // controller, are injected the same way: the native sidecar (an init
    // container that keeps running) after the iptables init container.
    let (ok, stderr) = apply(env, DEPLOYMENT).await;
    assert!(ok, "deployment refused: {stderr}");
    eventually(
        &[&c],
        "a pod of Deployment details injected",
        Duration::from_secs(60),
        || async {
            let pods = kubectl(
                env,
                &[
                    "get",
                    "pods",
                    "-n",
                    "inject-demo",
                    "-l",
                    "app=details",
                    "-o",
                    "json",
                ],
            )
            .await;
            let pods: Value = serde_json::from_str(&pods).map_err(|e| e.to_string())?;
            let pod = pods["items"].get(0).ok_or("no pod yet")?;
            let owner = &pod["metadata"]["ownerReferences"][0]["kind"];
            let inits = pod["spec"]["initContainers"]
                .as_array()
                .ok_or_else(|| format!("no init containers: {pod}"))?;
            let names: Vec<&str> = inits.iter().filter_map(|c| c["name"].as_str()).collect();
            let proxy = inits.iter().find(|c| c["name"] == "sluice-proxy");
            (*owner == "ReplicaSet"
                && names == ["sluice-init", "sluice-proxy"]
                && proxy.is_some_and(|p| {
                    p["restartPolicy"] == "Always" && p["startupProbe"].is_object()
                }))
            .then_some(())
            .ok_or_else(|| format!("{names:?} owner {owner}: {pod}"))
        },
    )
    .await;
    let after = counter(&c.admin_get("/metrics").await, "inject", "allowed");

    // Outside opted-in namespaces the API server never calls /inject.
    let (ok, stderr) = apply(
        env,
        &POD.replace("{name: ratings-1,", "{name: ratings-1, namespace: default,"),
    )
    .await;
    assert!(ok, "{stderr}");
    let plain: Value = serde_json::from_str(
        &kubectl(
            env,
            &["get", "pod", "ratings-1", "-n", "default", "-o", "json"],
        )
        .await,
    )
    .expect("pod json");
    assert!(plain["spec"].get("initContainers").is_none(), "{plain}");
    assert_eq!(
        counter(&c.admin_get("/metrics").await, "inject", "allowed"),
        after
    );
}

#[test]
fn controller_refuses_webhook_listen_in_config_dir_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice-controller"))
        .arg("--config-dir")
        .arg(dir.path())
        .args(["--webhook-listen", "127.0.0.1:0"])
        .args(["--listen", &free_addr().to_string()])
        .args(["--metrics-listen", &free_addr().to_string()])
        .args(["--secure-listen", &free_addr().to_string()])
        .output()
        .expect("run controller");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--webhook-listen needs Kubernetes mode"),
        "{stderr}"
    );
}
