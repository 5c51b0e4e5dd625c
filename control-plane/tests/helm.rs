//! The Helm chart (`charts/sluice`) with a real Helm 3 (built by
//! `scripts/k8s-tools`) against a real API server: lint, render, install,
//! then the real controller binary runs with ONLY the chart's RBAC (a token
//! of the chart's ServiceAccount) and does its job: shares the mesh root
//! through a Secret, writes status on the seed mesh, patches its webhook
//! configurations' caBundle. And it is refused what the chart does not grant.

use serde_json::Value;
use sluice_testenv::TestEnv;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use support::{Controller, eventually, free_addr, kubectl, wait_crds_established, workspace};

#[path = "support.rs"]
mod support;

const NS: &str = "sluice-system";
const SA: &str = "system:serviceaccount:sluice-system:sluice-controller";

fn helm_bin() -> PathBuf {
    let bin = std::env::var_os("SLUICE_K8S_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".cache/k8s/bin"))
        .join("helm");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/k8s-tools",
        bin.display()
    );
    bin
}

fn helm(env: Option<&TestEnv>, args: &[&str]) -> String {
    let mut cmd = Command::new(helm_bin());
    if let Some(env) = env {
        cmd.arg("--kubeconfig").arg(&env.kubeconfig);
    }
    let out = cmd
        .args(args)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("sluice-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("sluice-helm-config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("sluice-helm-data"),
        )
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chart() -> String {
    workspace().join("charts/sluice").display().to_string()
}

fn rendered() -> Vec<Value> {
    rendered_with(&[])
}

fn rendered_with(extra: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec![
        "template",
        "sluice",
        &chart,
        "-n",
        NS,
        "--kube-version",
        "1.36.0",
    ];
    args.extend_from_slice(extra);
    let text = helm(None, &args);
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn chart_lints_and_renders_a_hardened_controller() {
    helm(None, &["lint", &chart(), "--kube-version", "1.36.0"]);
    let docs = rendered();
    let deploy = of_kind(&docs, "Deployment");
    assert_eq!(deploy.len(), 1);
    let spec = &deploy[0]["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1);
    assert_eq!(of_kind(&docs, "ValidatingWebhookConfiguration").len(), 1);
    assert_eq!(of_kind(&docs, "MutatingWebhookConfiguration").len(), 1);
    // Least privilege: no wildcards, and no cluster-wide access to Secrets.
    for role in of_kind(&docs, "ClusterRole") {
        for rule in role["rules"].as_array().expect("rules") {
            let text = rule.to_string();
            assert!(!text.contains("\"*\""), "wildcard in {text}");
            assert!(!text.contains("secrets"), "cluster-wide secrets in {text}");
        }
    }
}

/// The mesh config the chart renders for `--mesh-config`.
fn mesh_config(docs: &[Value]) -> String {
    let cm = of_kind(docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "sluice-controller-mesh")
        .expect("mesh ConfigMap");
    cm["data"]["mesh"].as_str().expect("mesh key").to_string()
}

#[test]
fn chart_mesh_config_is_read_by_the_controller_and_rolls_pods_on_change() {
    use sluice_control_plane::mesh_config::{MeshConfig, Provider, parse_mesh_config};
    let docs = rendered();
    let (mesh, ignored) =
        parse_mesh_config(&mesh_config(&docs), MeshConfig::default()).expect("default parses");
    assert!(ignored.is_empty(), "{ignored:?}");
    assert_eq!(
        mesh.telemetry.access_log_file, None,
        "access log off by default"
    );
    let args = of_kind(&docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
        .to_string();
    assert!(
        args.contains("--mesh-config=/etc/sluice/mesh/mesh"),
        "{args}"
    );
    let checksum = |docs: &[Value]| {
        of_kind(docs, "Deployment")[0]["spec"]["template"]["metadata"]["annotations"]
            ["checksum/mesh-config"]
            .clone()
    };

    let tracing = rendered_with(&[
        "--set-json",
        r#"meshConfig.extensionProviders=[{"name":"otel","opentelemetry":{"service":"otel.obs.svc.cluster.local","port":4317}}]"#,
        "--set-json",
        r#"meshConfig.defaultProviders={"tracing":["otel"]}"#,
        "--set",
        "meshConfig.accessLogFile=/dev/stdout",
    ]);
    let (mesh, _) =
        parse_mesh_config(&mesh_config(&tracing), MeshConfig::default()).expect("parses");
    assert_eq!(
        mesh.telemetry.providers.get("otel"),
        Some(&Provider::OpenTelemetry {
            host: "otel.obs.svc.cluster.local".into(),
            port: 4317
        })
    );
    assert_eq!(mesh.telemetry.default_tracing, ["otel"]);
    assert_eq!(
        mesh.telemetry.access_log_file.as_deref(),
        Some("/dev/stdout")
    );
    assert_ne!(
        checksum(&docs),
        checksum(&tracing),
        "a change must roll the pods"
    );
}

/// What the chart's `proxy.resources` and `meshConfig.defaultConfig.concurrency`
/// become in an injected pod, read back the way the controller reads them.
#[test]
fn chart_sidecar_resources_and_concurrency_reach_injection() {
    use sluice_control_plane::inject::parse_resources;
    use sluice_control_plane::mesh_config::{MeshConfig, parse_mesh_config};
    let resources_arg = |docs: &[Value]| -> String {
        let args =
            of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .expect("controller args")
                .iter()
                .filter_map(Value::as_str)
                .find_map(|a| a.strip_prefix("--proxy-resources="))
                .map(str::to_owned);
        args.expect("--proxy-resources is passed")
    };
    let (requests, limits) = parse_resources(&resources_arg(&rendered())).expect("default parses");
    assert_eq!(requests.get("cpu").map(String::as_str), Some("50m"));
    assert_eq!(requests.get("memory").map(String::as_str), Some("32Mi"));
    assert!(limits.is_empty(), "{limits:?}");

    let set = rendered_with(&[
        "--set",
        "proxy.resources.limits.cpu=1",
        "--set",
        "proxy.resources.limits.memory=64Mi",
        "--set",
        "meshConfig.defaultConfig.concurrency=1",
    ]);
    let (_, limits) = parse_resources(&resources_arg(&set)).expect("parses");
    assert_eq!(limits.get("cpu").map(String::as_str), Some("1"));
    assert_eq!(limits.get("memory").map(String::as_str), Some("64Mi"));
    let (mesh, ignored) =
        parse_mesh_config(&mesh_config(&set), MeshConfig::default()).expect("parses");
    assert!(ignored.is_empty(), "{ignored:?}");
    assert_eq!(mesh.proxy_concurrency, Some(1));
    assert_eq!(
        parse_mesh_config(&mesh_config(&rendered()), MeshConfig::default())
            .expect("parses")
            .0
            .proxy_concurrency,
        None,
        "unset by default: each sidecar sizes itself"
    );
}

#[test]
fn chart_crds_are_the_generated_ones() {
    for entry in std::fs::read_dir(workspace().join("crds")).expect("crds/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        let in_chart = workspace().join("charts/sluice/crds").join(name);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            std::fs::read_to_string(&in_chart).unwrap_or_default(),
            "{} differs from crds/ (copy crds/*.yaml into charts/sluice/crds/)",
            in_chart.display()
        );
    }
}

/// How long the chart-installed objects and the controller may take.
const LIMIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_installs_and_controller_works_with_only_its_rbac() {
    let env = TestEnv::start().await.expect("test environment");
    // No pods run here (no kubelet): the webhooks' Service has no endpoints,
    // so the install makes the API server ignore them when unreachable.
    helm(
        Some(&env),
        &[
            "install",
            "sluice",
            &chart(),
            "-n",
            NS,
            "--create-namespace",
            "--wait=false",
            "--set",
            "webhooks.failurePolicy=Ignore",
        ],
    );
    wait_crds_established(&env).await;
    kubectl(&env, &["create", "namespace", "production"]).await;

    // The chart's identity, nothing else.
    let token = kubectl(&env, &["create", "token", "sluice-controller", "-n", NS]).await;
    let state = tempfile::tempdir().expect("tempdir");
    let kubeconfig = state.path().join("sa.kubeconfig");
    let ca = state.path().join("ca.crt");
    std::fs::write(&ca, &env.ca_pem).expect("ca");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: '{}', certificate-authority: '{}'}}\nusers:\n- name: sa\n  user: {{token: '{}'}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: sa}}\ncurrent-context: t\n",
            env.server,
            ca.display(),
            token.trim()
        ),
    )
    .expect("kubeconfig");
    let webhook = free_addr().to_string();
    let ca_secret = format!("{NS}/sluice-ca");
    let c = Controller::spawn(
        &kubeconfig,
        &["--webhook-listen", &webhook, "--ca-secret", &ca_secret],
    );

    // The mesh root is shared through the Secret the chart lets it create.
    eventually(&[&c], "mesh root Secret", LIMIT, || async {
        let out = env
            .kubectl_run(&["get", "secret", "sluice-ca", "-n", NS, "-o", "json"])
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        (v["data"]["root-cert.pem"].is_string() && v["data"]["root-key.pem"].is_string())
            .then_some(())
            .ok_or_else(|| "no root in the Secret yet".to_owned())
    })
    .await;

    // Status on every seed object, written with the chart's RBAC.
    let seed = workspace().join("../shared/seed-mesh.yaml");
    kubectl(&env, &["apply", "-f", seed.to_str().expect("path")]).await;
    eventually(&[&c], "seed objects Accepted", LIMIT, || async {
        let out = env
            .kubectl_run(&[
                "get",
                "virtualservices,destinationrules,peerauthentications,authorizationpolicies,envoyfilters",
                "-A",
                "-o",
                "json",
            ])
            .await
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() < 6 {
            return Err(format!("{} seed objects", items.len()));
        }
        for item in &items {
            let accepted = item["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"))
                .is_some_and(|c| c["status"] == "True");
            if !accepted {
                return Err(format!("{} not Accepted yet", item["metadata"]["name"]));
            }
        }
        Ok(())
    })
    .await;

    // The webhook configurations the chart created get the mesh root as caBundle.
    eventually(&[&c], "caBundle patched", LIMIT, || async {
        for kind in [
            "validatingwebhookconfiguration/sluice-validator",
            "mutatingwebhookconfiguration/sluice-sidecar-injector",
        ] {
            let out = env
                .kubectl_run(&[
                    "get",
                    kind,
                    "-o",
                    "jsonpath={.webhooks[0].clientConfig.caBundle}",
                ])
                .await
                .map_err(|e| e.to_string())?;
            if out.trim().is_empty() {
                return Err(format!("{kind}: no caBundle yet"));
            }
        }
        Ok(())
    })
    .await;

    // ...and nothing more than the chart grants.
    for denied in [
        ["delete", "pods", "-n", "default"],
        ["get", "secrets", "-n", "default"],
        ["create", "clusterroles", "-n", "default"],
        ["patch", "virtualservices", "-n", "default"],
    ] {
        // `can-i` answers on stdout and exits 1 for "no".
        let out = env
            .kubectl()
            .args([
                "auth", "can-i", denied[0], denied[1], "-n", denied[3], "--as", SA,
            ])
            .output()
            .expect("kubectl auth can-i");
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(answer.trim(), "no", "{denied:?} allowed: {answer}");
    }
    helm(Some(&env), &["uninstall", "sluice", "-n", NS]);
}
