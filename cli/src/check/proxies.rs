//! The `sluice-proxies` category: every running injected pod's sidecar is
//! connected and SYNCED (the controllers' `/debug/syncz`, as `proxy-status`
//! reads it), and its workload certificate is valid for more than an hour
//! (the sidecar's own expiry gauge on :15090, read through the pod proxy).

use super::report::Category;
use super::{Context, METRICS_PORT, STATS_PORT, pod_get};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use sluice_control_plane::inject::STATUS_ANNOTATION;
use sluice_control_plane::inject::sidecar::PROXY_NAME;
use std::collections::HashMap;

/// A certificate closer to expiry than this fails: the sidecar renews at
/// half its lifetime, so one this close has missed its renewals.
pub const MIN_CERT_LIFE_SECONDS: i64 = 3600;
/// The sidecar's gauge of its certificate's `notAfter` (Unix seconds, 0 without one).
pub const EXPIRY_METRIC: &str = "sluice_certificate_expiration_timestamp_seconds";
/// Pods asked at the same time.
const CONCURRENCY: usize = 16;

/// What `/debug/syncz` says about one proxy (the fields used here).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySync {
    /// `<pod>.<namespace>` for injected sidecars.
    pub id: String,
    /// Last version sent.
    pub version_sent: Option<String>,
    /// Last version acknowledged.
    pub version_acked: Option<String>,
    /// Last refusal.
    pub last_nack: Option<Nack>,
}

/// A refused configuration.
#[derive(Clone, Debug, Deserialize)]
pub struct Nack {
    /// Version refused.
    pub version: String,
    /// The proxy's error.
    pub error: String,
}

#[derive(Deserialize)]
struct SyncView {
    proxies: Vec<ProxySync>,
}

/// Why a sidecar is not SYNCED, or `None` when it is (Istio's states:
/// SYNCED acked what was sent, STALE did not, NOT SENT got nothing yet).
pub fn not_synced(p: &ProxySync) -> Option<String> {
    let nack = p
        .last_nack
        .as_ref()
        .map(|n| format!(", refused version {}: {}", n.version, n.error))
        .unwrap_or_default();
    match (&p.version_sent, &p.version_acked) {
        (None, _) => Some("NOT SENT: no configuration sent yet".to_owned()),
        (Some(sent), Some(acked)) if sent == acked => None,
        (Some(sent), acked) => Some(format!(
            "STALE: sent version {sent}, applied {}{nack}",
            acked.as_deref().unwrap_or("none")
        )),
    }
}

/// Whether the pod carries the injected sidecar.
pub fn is_injected(pod: &Pod) -> bool {
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(STATUS_ANNOTATION));
    let has_proxy = pod.spec.as_ref().is_some_and(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .any(|c| c.name == PROXY_NAME)
    });
    annotated || has_proxy
}

/// The value of the expiry gauge in a Prometheus exposition.
pub fn cert_expiry(exposition: &str) -> Option<i64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(EXPIRY_METRIC)?;
        // Labels, if any, come before the value.
        let value = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once('}')?.1,
            None => rest,
        };
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        Some(value as i64)
    })
}

/// The category; `controllers` are the controller pods that answered.
pub async fn check(ctx: &Context, controllers: &[String]) -> Category {
    let mut out = Category::new("sluice-proxies");
    let sync_what = "every injected sidecar is SYNCED";
    let cert_what = format!(
        "every sidecar's workload certificate is valid for more than {} minutes",
        MIN_CERT_LIFE_SECONDS / 60
    );
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let injected: Vec<(String, String)> = match pods.list(&ListParams::default()).await {
        Ok(list) => list
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.status
                    .as_ref()
                    .is_some_and(|s| s.phase.as_deref() == Some("Running"))
            })
            .filter(|p| is_injected(p))
            .filter_map(|p| Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?)))
            .collect(),
        Err(e) => {
            out.fail(
                sync_what,
                format!("cannot list pods: {e}"),
                "kubectl get pods -A",
            );
            return out;
        }
    };
    if injected.is_empty() {
        out.pass(format!("{sync_what} (no running injected pod)"));
        return out;
    }
    sync_states(ctx, controllers, &injected, &mut out, sync_what).await;
    certificates(ctx, &injected, &mut out, &cert_what).await;
    out
}

async fn sync_states(
    ctx: &Context,
    controllers: &[String],
    injected: &[(String, String)],
    out: &mut Category,
    what: &str,
) {
    let hint = format!(
        "sluicectl proxy-status --kubernetes -n {}; a refused version names the error; \
         kubectl logs POD -n NAMESPACE -c {PROXY_NAME}",
        ctx.namespace
    );
    let mut known: HashMap<String, ProxySync> = HashMap::new();
    let mut silent = Vec::new();
    for pod in controllers {
        match pod_get(
            &ctx.client,
            &ctx.namespace,
            pod,
            METRICS_PORT,
            "/debug/syncz",
        )
        .await
        {
            Ok(body) => match serde_json::from_str::<SyncView>(&body) {
                Ok(view) => known.extend(view.proxies.into_iter().map(|p| (p.id.clone(), p))),
                Err(e) => silent.push(format!("{pod}: unexpected /debug/syncz: {e}")),
            },
            Err(why) => silent.push(format!("{pod}: {why}")),
        }
    }
    if known.is_empty() && (controllers.is_empty() || !silent.is_empty()) {
        let why = if controllers.is_empty() {
            "no controller pod answered through the pod proxy".to_owned()
        } else {
            silent.join("\n")
        };
        return out.warn(
            what,
            format!("cannot read the controllers' sync state: {why}"),
            &hint,
        );
    }
    let problems: Vec<String> = injected
        .iter()
        .filter_map(|(ns, name)| {
            let why = match known.get(&format!("{name}.{ns}")) {
                None => Some("not connected to any controller".to_owned()),
                Some(p) => not_synced(p),
            };
            why.map(|w| format!("{ns}/{name}: {w}"))
        })
        .collect();
    let synced = injected.len() - problems.len();
    let what = format!("{what} ({synced}/{})", injected.len());
    if problems.is_empty() && silent.is_empty() {
        out.pass(what);
    } else if problems.is_empty() {
        // Sidecars of a silent replica could be anything.
        out.warn(
            what,
            format!("some controllers did not answer:\n{}", silent.join("\n")),
            &hint,
        );
    } else {
        out.fail(what, problems.join("\n"), &hint);
    }
}

async fn certificates(
    ctx: &Context,
    injected: &[(String, String)],
    out: &mut Category,
    what: &str,
) {
    let hint = format!(
        "the sidecar renews its certificate from the controller (port 15012) at half its \
         life: kubectl logs POD -n NAMESPACE -c {PROXY_NAME}, and the controller's logs"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default();
    let mut answers = Vec::new();
    for chunk in injected.chunks(CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for (ns, name) in chunk {
            let (client, ns, name) = (ctx.client.clone(), ns.clone(), name.clone());
            set.spawn(async move {
                let stats = pod_get(&client, &ns, &name, STATS_PORT, "/stats/prometheus").await;
                (format!("{ns}/{name}"), stats)
            });
        }
        while let Some(joined) = set.join_next().await {
            if let Ok(answer) = joined {
                answers.push(answer);
            }
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    let (mut expiring, mut unknown) = (Vec::new(), Vec::new());
    for (pod, stats) in &answers {
        match stats.as_deref().map(cert_expiry) {
            Ok(Some(0)) => unknown.push(format!("{pod}: has no workload certificate (mTLS off?)")),
            Ok(Some(t)) if t - now < MIN_CERT_LIFE_SECONDS => {
                expiring.push(format!("{pod}: expires in {} s", t - now));
            }
            Ok(Some(_)) => {}
            Ok(None) => unknown.push(format!("{pod}: /stats/prometheus has no {EXPIRY_METRIC}")),
            Err(why) => unknown.push(format!("{pod}: :{STATS_PORT} did not answer: {why}")),
        }
    }
    let checked = answers.len() - unknown.len();
    let what = format!("{what} ({checked}/{} read)", injected.len());
    if !expiring.is_empty() {
        let mut lines = expiring;
        lines.extend(unknown);
        out.fail(what, lines.join("\n"), &hint);
    } else if !unknown.is_empty() {
        out.warn(
            what,
            format!("cannot tell for:\n{}", unknown.join("\n")),
            &hint,
        );
    } else {
        out.pass(what);
    }
}
