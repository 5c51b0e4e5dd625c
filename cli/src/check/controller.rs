//! The `sluice-controller` category: the chart's Deployment exists, its pods
//! are Ready, and they answer `/ready` and `/metrics` through the API
//! server's pod proxy (the path webhooks and `proxy-status` depend on too).

use super::report::Category;
use super::{CONTROLLER, Context, METRICS_PORT, pod_get};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// Label of the controller pods when the Deployment has no `matchLabels`.
const DEFAULT_SELECTOR: &str = "app.kubernetes.io/name=sluice-controller";

/// Whether the kubelet reports the pod Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The label selector of `deployment`'s pods as `k=v,k=v`.
pub fn selector(deployment: &Deployment) -> String {
    let labels = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .filter(|l| !l.is_empty());
    match labels {
        Some(labels) => labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        None => DEFAULT_SELECTOR.to_owned(),
    }
}

/// The category, and the controller pods that answered through the pod
/// proxy (asked again for their proxies' sync state).
pub async fn check(ctx: &Context) -> (Category, Vec<String>) {
    let mut out = Category::new("sluice-controller");
    let ns = &ctx.namespace;
    let install = format!(
        "helm install sluice charts/sluice -n {ns} --create-namespace, or pass -n NAMESPACE \
         if Sluice runs elsewhere"
    );
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let what = format!("controller Deployment {ns}/{CONTROLLER} exists");
    let deployment = match deployments.get_opt(CONTROLLER).await {
        Ok(Some(d)) => {
            out.pass(what);
            d
        }
        Ok(None) => {
            out.fail(
                what,
                format!("no Deployment {CONTROLLER} in namespace {ns}"),
                &install,
            );
            return (out, Vec::new());
        }
        Err(e) => {
            out.fail(what, format!("cannot read it: {e}"), &install);
            return (out, Vec::new());
        }
    };

    let selector = selector(&deployment);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let what = "controller pods are Ready";
    let describe = format!(
        "kubectl -n {ns} describe pods -l {selector}; kubectl -n {ns} logs deploy/{CONTROLLER}"
    );
    let list = match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(l) => l.items,
        Err(e) => {
            out.fail(
                what,
                format!("cannot list pods ({selector}): {e}"),
                &describe,
            );
            return (out, Vec::new());
        }
    };
    let (ready, not_ready): (Vec<&Pod>, Vec<&Pod>) = list.iter().partition(|p| is_ready(p));
    let name = |p: &&Pod| p.metadata.name.clone().unwrap_or_default();
    if list.is_empty() {
        out.fail(
            what,
            format!("no pod matches {selector} in namespace {ns}"),
            &describe,
        );
    } else if ready.is_empty() {
        out.fail(
            what,
            format!(
                "no controller pod is Ready: {}",
                not_ready.iter().map(name).collect::<Vec<_>>().join(", ")
            ),
            &describe,
        );
    } else if !not_ready.is_empty() {
        out.warn(
            format!("{what} ({}/{})", ready.len(), list.len()),
            format!(
                "not Ready: {}",
                not_ready.iter().map(name).collect::<Vec<_>>().join(", ")
            ),
            &describe,
        );
    } else {
        out.pass(format!("{what} ({}/{})", ready.len(), list.len()));
    }
    if ready.is_empty() {
        return (out, Vec::new());
    }

    let what = format!("controller pods answer /ready and /metrics on port {METRICS_PORT}");
    let mut answered = Vec::new();
    let mut silent = Vec::new();
    for pod in ready.iter().map(name) {
        match ask(ctx, &pod).await {
            Ok(()) => answered.push(pod),
            Err(why) => silent.push(format!("{pod}: {why}")),
        }
    }
    let hint = format!(
        "the API server must reach controller pods on {METRICS_PORT} (pod proxy) and 15017 \
         (webhooks): check firewalls and NetworkPolicies; kubectl -n {ns} logs POD"
    );
    if silent.is_empty() {
        out.pass(format!("{what} ({}/{})", answered.len(), ready.len()));
    } else {
        out.warn(
            format!("{what} ({}/{})", answered.len(), ready.len()),
            format!("through the API server's pod proxy:\n{}", silent.join("\n")),
            &hint,
        );
    }
    (out, answered)
}

/// Asks one controller pod for `/ready` and `/metrics`.
async fn ask(ctx: &Context, pod: &str) -> Result<(), String> {
    let ready = pod_get(&ctx.client, &ctx.namespace, pod, METRICS_PORT, "/ready").await?;
    if ready.trim() != "ready" {
        return Err(format!("/ready answered {:?}", ready.trim()));
    }
    let metrics = pod_get(&ctx.client, &ctx.namespace, pod, METRICS_PORT, "/metrics").await?;
    if !metrics.lines().any(|l| l.starts_with("sluice_")) {
        return Err("/metrics has no sluice_ series: is this the Sluice controller?".into());
    }
    Ok(())
}
