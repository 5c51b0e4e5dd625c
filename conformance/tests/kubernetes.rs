//! A mesh registered in a real Kubernetes API server (etcd, kube-apiserver and
//! kube-controller-manager from `scripts/k8s-tools`): the controller reads it with
//! `--kubeconfig`, sidecars prove their identity with ServiceAccount tokens (TokenReview),
//! objects get `Accepted` and `Reconciled` conditions once the proxies applied them, and
//! `sluicectl proxy-status --kubeconfig` asks the controller through the API server's pod proxy.
//! Needs root for the local route pods' addresses use (CI runs as root).
use bytes::Bytes;
use sluice_conformance::client::{self, Call, Via};
use sluice_conformance::mesh::kube::{Kube, NODE};
use sluice_conformance::mesh::{LocalMesh, MeshOptions, bins};
use sluice_conformance::scenario::Workload;
use sluice_testenv::TestEnv;
use std::path::Path;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
"#;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if Instant::now() > deadline => panic!("{what}: still {why}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_registered_in_kubernetes_routes_reports_status_and_proxy_status() {
    let env = TestEnv::start().await.expect("test API server");
    let crds = workspace().join("crds").display().to_string();
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
    let kube = Kube::new(env.kubeconfig.clone());

    let work = tempfile::tempdir().expect("tempdir");
    let workloads: Vec<Workload> = serde_yaml::from_str(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 1, v2: 1}}]",
    )
    .expect("workloads");
    let mut opts = MeshOptions::new(work.path().into());
    opts.start_timeout = Duration::from_secs(40);
    opts.kube = Some(kube.clone());
    let mut mesh = LocalMesh::start(&workloads, CONFIG, opts)
        .await
        .expect("mesh registered in Kubernetes");

    // Routed by the VirtualService, over mTLS with identities the CA issued for
    // ServiceAccount tokens.
    let sleep = mesh.instances()[mesh.select("sleep", None, None)[0]].outbound_addr();
    for _ in 0..10 {
        let out = client::send(&Call {
            via: Via::Outbound(sleep),
            url: "http://reviews:9080/get".into(),
            method: "GET".into(),
            headers: vec![],
            body: Bytes::new(),
            h2: false,
            timeout: Duration::from_secs(5),
        })
        .await;
        assert_eq!(out.status, Some(200), "{out:?}");
        assert_eq!(out.version(), Some("v2"), "{out:?}");
        assert_eq!(
            out.headers
                .get("x-echo-peer-principal")
                .and_then(|v| v.to_str().ok()),
            Some("spiffe://cluster.local/ns/default/sa/sleep"),
            "{out:?}"
        );
    }

    // Both objects Accepted and Reconciled (every connected sidecar applied them).
    let conditions = |kind: &'static str| {
        let kube = kube.clone();
        move || {
            let kube = kube.clone();
            async move {
                let json = kube
                    .kubectl(
                        &["get", kind, "reviews", "-n", "default", "-o", "json"],
                        None,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let obj: serde_json::Value =
                    serde_json::from_str(&json).map_err(|e| e.to_string())?;
                let generation = &obj["metadata"]["generation"];
                let ok = |t: &str| {
                    obj["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c["type"] == t
                                && c["status"] == "True"
                                && c["observedGeneration"] == *generation
                        })
                    })
                };
                (ok("Accepted") && ok("Reconciled"))
                    .then_some(())
                    .ok_or_else(|| obj["status"].to_string())
            }
        }
    };
    eventually(
        "VirtualService Accepted and Reconciled",
        conditions("virtualservice"),
    )
    .await;
    eventually(
        "DestinationRule Accepted and Reconciled",
        conditions("destinationrule"),
    )
    .await;

    // A change through kubectl reaches the sidecars.
    mesh.apply(&CONFIG.replace("subset: v2", "subset: v1"))
        .await
        .expect("apply");
    let out = client::send(&Call {
        via: Via::Outbound(sleep),
        url: "http://reviews:9080/get".into(),
        method: "GET".into(),
        headers: vec![],
        body: Bytes::new(),
        h2: false,
        timeout: Duration::from_secs(5),
    })
    .await;
    assert_eq!(out.version(), Some("v1"), "{out:?}");

    // proxy-status through the API server: the controller stands as a pod of the chart's
    // labels whose address is where this controller listens.
    let ns = "sluice-system";
    kube.kubectl(&["create", "namespace", ns], None)
        .await
        .expect("namespace");
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: sluice-controller-0, namespace: {ns}, \
         labels: {{app.kubernetes.io/name: sluice-controller}}}}\nspec:\n  nodeName: {NODE}\n  \
         containers: [{{name: controller, image: sluice-controller}}]\n"
    );
    kube.kubectl(&["apply", "-f", "-"], Some(&pod))
        .await
        .expect("controller pod");
    let ip = mesh.controller_metrics_addr().ip().to_string();
    let status =
        serde_json::json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
            .to_string();
    kube.kubectl(
        &[
            "patch",
            "pod",
            "sluice-controller-0",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ],
        None,
    )
    .await
    .expect("controller pod status");
    let sluicectl = bins::find("sluicectl", None).expect("sluicectl");
    let out = tokio::process::Command::new(&sluicectl)
        .arg("proxy-status")
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .output()
        .await
        .expect("run sluicectl proxy-status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "proxy-status failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in mesh.instances() {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&i.id()))
            .unwrap_or_else(|| panic!("{} missing from:\n{stdout}", i.id()));
        assert!(
            line.contains("SYNCED") && line.contains("sluice-controller-0"),
            "{line}"
        );
    }

    // The controller gone: proxy-status says so and fails.
    mesh.kill_controller().await;
    let out = tokio::process::Command::new(&sluicectl)
        .args(["proxy-status", "--kubeconfig"])
        .arg(&env.kubeconfig)
        .output()
        .await
        .expect("run sluicectl proxy-status");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sluice-controller-0"),
        "{out:?}"
    );
    mesh.shutdown().await;
}
