//! `sluicectl check`: checks that a cluster can run Sluice (`--pre`) or that
//! an installed Sluice works (CRDs, controller, webhooks, sidecars), printed
//! as `linkerd check` prints them; exits 1 when any check fails.

mod certs;
mod cluster;
mod controller;
mod crds;
mod proxies;
mod report;
mod webhook;

#[cfg(test)]
mod tests;

use report::{Category, Report};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Name of the controller's Deployment and Service in the chart.
pub const CONTROLLER: &str = "sluice-controller";
/// The chart's MutatingWebhookConfiguration (sidecar injection).
pub const MUTATING_CONFIG: &str = "sluice-sidecar-injector";
/// The chart's ValidatingWebhookConfiguration (object validation).
pub const VALIDATING_CONFIG: &str = "sluice-validator";
/// Secret (in the control-plane namespace) holding the mesh root.
pub const CA_SECRET: &str = "sluice-ca";
/// The controller's metrics and debug port.
pub const METRICS_PORT: u16 = 15014;
/// The sidecar's Prometheus port.
pub const STATS_PORT: u16 = 15090;
/// How long one request (API server, pod proxy, TLS handshake) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `√ description` lines grouped by category.
    Table,
    /// One JSON object: `{"success": bool, "categories": [...]}`.
    Json,
}

/// Flags of `sluicectl check`.
#[derive(clap::Args)]
pub struct Args {
    /// Use this kubeconfig (default: as kubectl, $KUBECONFIG, ~/.kube/config,
    /// or the pod's service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Only the checks to run before installing: API server, version,
    /// permissions, CRDs that Helm would not upgrade, other meshes.
    #[arg(long)]
    pub pre: bool,
    /// Namespace of the Sluice control plane (the Helm release namespace).
    #[arg(long, short = 'n', default_value = "sluice-system")]
    pub namespace: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// What the checks share: the API client and the flags.
pub struct Context {
    /// Client of the cluster's API server.
    pub client: kube::Client,
    /// Control-plane namespace.
    pub namespace: String,
    /// `--pre`: Sluice is not installed yet.
    pub pre: bool,
}

/// Runs the checks, prints the report; exit 1 when a check failed, 2 when
/// the report could not be produced.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("check: {e}");
            return ExitCode::from(2);
        }
    };
    let report = Report::new(runtime.block_on(categories(&args)));
    match args.output {
        Format::Table => print!("{}", report.render()),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("check: {e}");
                return ExitCode::from(2);
            }
        },
    }
    if report.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Runs every check in order; stops after `kubernetes-api` when the API
/// server cannot be reached, since every later check would fail the same way.
async fn categories(args: &Args) -> Vec<Category> {
    let mut api = Category::new("kubernetes-api");
    let Some(client) = cluster::connect(args.kubeconfig.as_deref(), &mut api).await else {
        return vec![api];
    };
    let Some(version) = cluster::query(&client, &mut api).await else {
        return vec![api];
    };
    let ctx = Context {
        client,
        namespace: args.namespace.clone(),
        pre: args.pre,
    };
    let mut out = vec![api, cluster::version(&version)];
    if ctx.pre {
        out.push(cluster::setup(&ctx).await);
        out.push(crds::check(&ctx).await);
        return out;
    }
    out.push(crds::check(&ctx).await);
    let (category, controllers) = controller::check(&ctx).await;
    out.push(category);
    out.push(webhook::check(&ctx).await);
    out.push(proxies::check(&ctx, &controllers).await);
    out
}

/// `GET path` on `port` of pod `namespace/pod` through the API server's pod
/// proxy, within [`REQUEST_TIMEOUT`]; the error says why it did not answer.
pub async fn pod_get(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    port: u16,
    path: &str,
) -> Result<String, String> {
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}");
    let request = http::Request::get(&uri)
        .body(Vec::new())
        .map_err(|e| format!("{uri}: {e}"))?;
    match tokio::time::timeout(REQUEST_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(kube::Error::Api(status))) => Err(status.message.trim().to_owned()),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// `error: cause: cause ...`, since kube's errors hide the useful part
/// (connection refused, certificate unknown) in their sources.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
