//! `sluicectl proxy-status`: every connected proxy and whether it runs the
//! controller's latest configuration (like `istioctl proxy-status`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The controller's metrics/debug address (its `--metrics-listen`).
    #[arg(long, env = "SLUICE_CONTROLLER", default_value = "127.0.0.1:15014")]
    pub controller: SocketAddr,
    /// Ask every controller replica in a Kubernetes cluster instead, through
    /// the API server's pod proxy, using this kubeconfig.
    #[arg(long, conflicts_with = "controller")]
    pub kubeconfig: Option<PathBuf>,
    /// Like --kubeconfig, configured as kubectl is ($KUBECONFIG,
    /// ~/.kube/config, or the pod's service account).
    #[arg(long, conflicts_with_all = ["controller", "kubeconfig"])]
    pub kubernetes: bool,
    /// Kubernetes mode: namespace of the controller pods.
    #[arg(long, short = 'n', default_value = "sluice-system")]
    pub namespace: String,
    /// Kubernetes mode: label selector of the controller pods.
    #[arg(long, default_value = "app.kubernetes.io/name=sluice-controller")]
    pub selector: String,
    /// Print the controllers' JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize)]
struct SyncView {
    revision: u64,
    proxies: Vec<ProxySync>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxySync {
    id: String,
    namespace: String,
    version_sent: Option<String>,
    version_acked: Option<String>,
    last_nack: Option<Nack>,
}

#[derive(Deserialize)]
struct Nack {
    version: String,
    error: String,
}

/// What one controller (replica) said: its name (a pod in Kubernetes mode,
/// the address otherwise), its raw JSON and the parsed view.
struct Answer {
    controller: String,
    raw: serde_json::Value,
    view: SyncView,
}

/// Istio's sync states: SYNCED (acked what was sent), STALE (sent, not
/// acked, or refused), NOT SENT (nothing sent yet).
fn state(p: &ProxySync) -> &'static str {
    match (&p.version_sent, &p.version_acked) {
        (None, _) => "NOT SENT",
        (Some(sent), Some(acked)) if sent == acked => "SYNCED",
        _ => "STALE",
    }
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy-status: {e}");
            return ExitCode::from(2);
        }
    };
    let kube = args.kubernetes || args.kubeconfig.is_some();
    let answers = runtime.block_on(async {
        if kube {
            ask_replicas(&args).await
        } else {
            ask_one(args.controller).await.map(|a| vec![a])
        }
    });
    let answers = match answers {
        Ok(a) => a,
        Err(why) => {
            eprintln!("proxy-status: {why}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        let out = if kube {
            serde_json::Value::Array(
                answers
                    .iter()
                    .map(|a| serde_json::json!({"controller": a.controller, "status": a.raw}))
                    .collect(),
            )
        } else {
            answers.first().map(|a| a.raw.clone()).unwrap_or_default()
        };
        println!("{out}");
        return ExitCode::SUCCESS;
    }
    print!("{}", render(&answers, kube));
    if answers
        .iter()
        .flat_map(|a| &a.view.proxies)
        .all(|p| state(p) == "SYNCED")
    {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn parse(controller: String, body: &[u8]) -> Result<Answer, String> {
    let raw: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("unexpected answer from {controller}: {e}"))?;
    let view: SyncView = serde_json::from_value(raw.clone())
        .map_err(|e| format!("unexpected answer from {controller}: {e}"))?;
    Ok(Answer {
        controller,
        raw,
        view,
    })
}

async fn ask_one(addr: SocketAddr) -> Result<Answer, String> {
    match sluice_conformance::client::http_get(addr, "/debug/syncz").await {
        Ok(resp) if resp.status == 200 => parse(addr.to_string(), &resp.body),
        Ok(resp) => Err(format!("{addr}/debug/syncz answered {}", resp.status)),
        Err(e) => Err(format!(
            "cannot reach the controller at {addr} ({e}); is it running? set --controller"
        )),
    }
}

/// Every running controller pod, asked through the API server's pod proxy
/// (as `istioctl proxy-status` asks every istiod): each replica knows only
/// the proxies connected to it.
async fn ask_replicas(args: &Args) -> Result<Vec<Answer>, String> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let mut config = sluice_control_plane::kube_source::client_config(args.kubeconfig.as_deref())
        .await
        .map_err(|e| format!("connecting to the Kubernetes API server: {e}"))?;
    // A replica that does not answer is reported at once, not retried for minutes.
    config.default_retry = false;
    let client = kube::Client::try_from(config)
        .map_err(|e| format!("connecting to the Kubernetes API server: {e}"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &args.namespace);
    let list = pods
        .list(&ListParams::default().labels(&args.selector))
        .await
        .map_err(|e| {
            format!(
                "listing controller pods ({}) in namespace {}: {e}",
                args.selector, args.namespace
            )
        })?;
    let running: Vec<String> = list
        .items
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    if running.is_empty() {
        return Err(format!(
            "no running controller pod matches {} in namespace {} (installed with Helm? see docs/install.md)",
            args.selector, args.namespace
        ));
    }
    let mut answers = Vec::new();
    for name in running {
        let path = format!(
            "/api/v1/namespaces/{}/pods/{name}:{METRICS_PORT}/proxy/debug/syncz",
            args.namespace
        );
        let request = http::Request::get(&path)
            .body(Vec::new())
            .map_err(|e| format!("{path}: {e}"))?;
        match tokio::time::timeout(REPLICA_TIMEOUT, client.request_text(request)).await {
            Ok(Ok(body)) => answers.push(parse(name, body.as_bytes())?),
            // One unreachable replica should not hide what the others know.
            Ok(Err(kube::Error::Api(status))) => eprintln!(
                "proxy-status: controller pod {name} did not answer: {}",
                status.message
            ),
            Ok(Err(e)) => eprintln!("proxy-status: controller pod {name} did not answer: {e}"),
            Err(_) => eprintln!(
                "proxy-status: controller pod {name} did not answer within {REPLICA_TIMEOUT:?}"
            ),
        }
    }
    if answers.is_empty() {
        return Err("no controller pod answered".into());
    }
    Ok(answers)
}

/// The controller's metrics/debug port (`--metrics-listen` in the chart).
const METRICS_PORT: u16 = 15014;
/// How long one controller replica may take to answer.
const REPLICA_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn render(answers: &[Answer], kube: bool) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for a in answers {
        let _ = writeln!(
            out,
            "controller {} revision {}",
            a.controller, a.view.revision
        );
    }
    let controller_col = if kube {
        format!(" {:<32}", "CONTROLLER")
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{:<40} {:<16}{controller_col} {:<9} {:>6} {:>6}  LAST NACK",
        "NAME", "NAMESPACE", "CONFIG", "SENT", "ACKED"
    );
    let mut rows: Vec<(&Answer, &ProxySync)> = answers
        .iter()
        .flat_map(|a| a.view.proxies.iter().map(move |p| (a, p)))
        .collect();
    rows.sort_by(|x, y| x.1.id.cmp(&y.1.id));
    for (a, p) in rows {
        let nack = p
            .last_nack
            .as_ref()
            .map(|n| format!("version {}: {}", n.version, n.error))
            .unwrap_or_default();
        let controller = if kube {
            format!(" {:<32}", a.controller)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<40} {:<16}{controller} {:<9} {:>6} {:>6}  {}",
            p.id,
            p.namespace,
            state(p),
            p.version_sent.as_deref().unwrap_or("-"),
            p.version_acked.as_deref().unwrap_or("-"),
            nack
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(sent: Option<&str>, acked: Option<&str>) -> ProxySync {
        ProxySync {
            id: "p".into(),
            namespace: "default".into(),
            version_sent: sent.map(Into::into),
            version_acked: acked.map(Into::into),
            last_nack: None,
        }
    }

    #[test]
    fn state_follows_sent_and_acked_versions() {
        assert_eq!(state(&proxy(None, None)), "NOT SENT");
        assert_eq!(state(&proxy(Some("3"), Some("3"))), "SYNCED");
        assert_eq!(state(&proxy(Some("4"), Some("3"))), "STALE");
        assert_eq!(state(&proxy(Some("4"), None)), "STALE");
    }
}
