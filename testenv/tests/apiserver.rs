//! The control plane against its real processes: the API server answers
//! through the kubeconfig, the controller-manager runs the controllers Sluice
//! relies on, and RBAC is enforced. All tests share one environment and each
//! works in a namespace of its own.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice_testenv::TestEnv;

/// Retries `check` until it returns `Some`, for what controllers do
/// asynchronously.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(60) {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!("{what} did not happen in 60s (last error: {last:?})")
}

#[tokio::test]
async fn kubectl_get_namespaces_lists_system_namespaces() -> anyhow::Result<()> {
    let env = TestEnv::shared().await?;
    assert!(env.server.starts_with("https://127.0.0.1:"));
    // The plain Command from `kubectl()` works as well as the async helpers.
    let out = env
        .kubectl()
        .args(["get", "namespaces", "-o", "name"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8(out.stdout)?;
    for ns in [
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
    ] {
        assert!(
            names.lines().any(|line| line == ns),
            "{ns} missing in {names}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn namespace_created_gets_default_service_account() -> anyhow::Result<()> {
    let env = TestEnv::shared().await?;
    env.kubectl_run(&["create", "namespace", "sa-check"])
        .await?;
    let uid = eventually("default ServiceAccount in sa-check", || async {
        Ok(env
            .kubectl_run(&[
                "get",
                "serviceaccount",
                "default",
                "-n",
                "sa-check",
                "-o",
                "jsonpath={.metadata.uid}",
            ])
            .await
            .ok()
            .filter(|uid| !uid.is_empty()))
    })
    .await?;
    assert!(!uid.is_empty());
    // The root CA the controller-manager was given is published per namespace.
    let ca = eventually("kube-root-ca.crt in sa-check", || async {
        Ok(env
            .kubectl_run(&[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-n",
                "sa-check",
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ])
            .await
            .ok())
    })
    .await?;
    assert_eq!(ca.trim(), env.ca_pem.trim());
    Ok(())
}

#[tokio::test]
async fn service_with_ready_pod_gets_endpointslice_address() -> anyhow::Result<()> {
    let env = TestEnv::shared().await?;
    let ns = "slices";
    env.create_namespace(ns).await?;
    env.ensure_node("testenv-node-a").await?;
    env.apply(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: web-0, namespace: {ns}, labels: {{app: web}}}}
spec:
  nodeName: testenv-node-a
  containers: [{{name: app, image: example.invalid/web:1}}]
"#
    ))
    .await?;
    env.set_pod_ready(ns, "web-0", "10.244.0.10").await?;

    let slice = eventually("an EndpointSlice with the pod's address", || async {
        let out = env
            .kubectl_run(&[
                "get",
                "endpointslices",
                "-n",
                ns,
                "-l",
                "kubernetes.io/service-name=web",
                "-o",
                "json",
            ])
            .await?;
        let list: serde_json::Value = serde_json::from_str(&out)?;
        let items = list["items"].as_array().context("items")?;
        Ok(items
            .iter()
            .find(|slice| {
                slice["endpoints"]
                    .as_array()
                    .is_some_and(|eps| eps.iter().any(|ep| ep["addresses"][0] == "10.244.0.10"))
            })
            .cloned())
    })
    .await?;
    let endpoint = &slice["endpoints"][0];
    assert_eq!(endpoint["conditions"]["ready"], true, "{slice}");
    assert_eq!(endpoint["targetRef"]["name"], "web-0");
    assert_eq!(endpoint["nodeName"], "testenv-node-a");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["ports"][0]["name"], "http");
    assert_eq!(slice["addressType"], "IPv4");
    Ok(())
}

#[tokio::test]
async fn rbac_refuses_anonymous_and_unprivileged_requests() -> anyhow::Result<()> {
    let env = TestEnv::shared().await?;
    let path = "/api/v1/namespaces";

    let admin = env.get(path, Some(&env.admin_token)).await?;
    assert_eq!(admin.status, 200, "{}", admin.body);
    assert!(admin.body.contains("\"kube-system\""));

    let anonymous = env.get(path, None).await?;
    assert!(
        anonymous.status == 401 || anonymous.status == 403,
        "anonymous got {}: {}",
        anonymous.status,
        anonymous.body
    );

    let unprivileged = env.get(path, Some(&env.unprivileged_token)).await?;
    assert_eq!(unprivileged.status, 403, "{}", unprivileged.body);
    assert!(
        unprivileged
            .body
            .contains(sluice_testenv::UNPRIVILEGED_USER)
    );

    let forged = env.get(path, Some("not-a-token")).await?;
    assert_eq!(forged.status, 401, "{}", forged.body);

    let err = env
        .kubectl_run(&["get", "pods", "-A", "--token", &env.unprivileged_token])
        .await
        .expect_err("an unprivileged user may not list pods");
    assert!(err.to_string().contains("Forbidden"), "{err}");
    Ok(())
}

/// Why `set_pod_ready` documents that pod IPs cannot be loopback: the API
/// server refuses such EndpointSlices, so the controller cannot publish them.
#[tokio::test]
async fn endpointslice_with_loopback_address_is_refused() -> anyhow::Result<()> {
    let env = TestEnv::shared().await?;
    let err = env
        .apply(
            r#"{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
"metadata":{"name":"loopback","namespace":"default"},"addressType":"IPv4",
"endpoints":[{"addresses":["127.0.50.1"]}],"ports":[{"port":80}]}"#,
        )
        .await
        .expect_err("loopback endpoint addresses are invalid");
    assert!(err.to_string().contains("loopback"), "{err}");
    Ok(())
}
