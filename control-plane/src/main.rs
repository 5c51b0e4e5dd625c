//! `sluice-controller`: reads Istio configuration and serves proxies.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;

/// mimalloc instead of glibc's malloc: the controller's large, short-lived
/// buffers (a revision's encoded configs, deltas to thousands of streams)
/// left glibc's arenas holding several times the live heap (heaptrack: 235
/// MB live, 740 MB resident at the full-size bench); mimalloc returns freed
/// pages to the system.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sluice_control_plane::admin::{self, AdminState};
use sluice_control_plane::ca::{
    Authenticator, BootstrapTokens, CertificateAuthority, CertificateServer,
};
use sluice_control_plane::config_dir::ConfigDir;
use sluice_control_plane::index::{Intake, MeshIndex};
use sluice_control_plane::inject::InjectConfig;
use sluice_control_plane::kube_source::{self, KubeSource};
use sluice_control_plane::leader::{self, LeaderConfig, LeaderElector};
use sluice_control_plane::mesh_config::{MeshConfig, RetryBudget, parse_mesh_config};
use sluice_control_plane::metrics::ControllerMetrics;
use sluice_control_plane::server::ConfigServer;
use sluice_control_plane::sync::SyncRegistry;
use sluice_control_plane::webhook::{self, WebhookOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Command line of the controller.
#[derive(Parser, Debug)]
#[command(name = "sluice-controller", version, about = "Sluice control plane")]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config_dir", "kubeconfig", "kubernetes"])))]
struct Args {
    /// Read configuration from this folder of YAML (local mode).
    #[arg(long, env = "SLUICE_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Read configuration from the Kubernetes API server this kubeconfig names.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Read configuration from Kubernetes, configured as kubectl or an
    /// in-cluster pod would be ($KUBECONFIG, ~/.kube/config, service account).
    #[arg(long)]
    kubernetes: bool,
    /// Address of the plaintext, unauthenticated config stream. Default
    /// 127.0.0.1:15010 with --config-dir; off in Kubernetes mode unless given,
    /// where proxies use the TLS listener with their token.
    #[arg(long, env = "SLUICE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address of /metrics and /debug endpoints.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = "127.0.0.1:15014")]
    metrics_listen: SocketAddr,
    /// How long the folder (or API server) must be quiet before a change is published.
    #[arg(long, env = "SLUICE_DEBOUNCE_MS", default_value_t = 100)]
    debounce_ms: u64,
    /// Namespace whose policies (EnvoyFilter, PeerAuthentication, ...) apply mesh-wide.
    #[arg(long, env = "SLUICE_ROOT_NAMESPACE", default_value = "istio-system")]
    root_namespace: String,
    /// Istio MeshConfig YAML (the `mesh` key of Istio's `istio` ConfigMap):
    /// tracing, access logging and extension providers; its rootNamespace
    /// overrides --root-namespace.
    #[arg(long, env = "SLUICE_MESH_CONFIG")]
    mesh_config: Option<PathBuf>,
    /// Mesh-wide retry budget: retries allowed as a share (%) of recent
    /// requests (default: no budget, as Istio; with this flag, 20 %).
    #[arg(long, env = "SLUICE_RETRY_BUDGET_PERCENT")]
    retry_budget_percent: Option<f64>,
    /// Mesh-wide retry budget: retries always allowed per second on top of
    /// the share (setting it alone sets a budget of 20 % plus this).
    #[arg(long, env = "SLUICE_RETRY_BUDGET_MIN_PER_SECOND")]
    retry_budget_min_per_second: Option<u32>,
    /// Address of the TLS listener: config stream and certificate signing
    /// (default: the --listen address with port 15012).
    #[arg(long, env = "SLUICE_SECURE_LISTEN")]
    secure_listen: Option<SocketAddr>,
    /// Where the controller keeps its CA root and bootstrap secret
    /// (default: `.sluice` inside --config-dir, which is never read as config;
    /// in Kubernetes mode `.sluice` in the working folder).
    #[arg(long, env = "SLUICE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// A plug-in CA in Istio's layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem).
    #[arg(long, env = "SLUICE_CA_DIR")]
    ca_dir: Option<PathBuf>,
    /// Kubernetes mode: keep the mesh root in this Secret (`NAMESPACE/NAME`),
    /// so every replica signs with the same root; created on first start.
    #[arg(
        long,
        env = "SLUICE_CA_SECRET",
        value_name = "NAMESPACE/NAME",
        conflicts_with = "ca_dir"
    )]
    ca_secret: Option<String>,
    /// Trust domain of workload identities.
    #[arg(long, env = "SLUICE_TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// Address of the HTTPS admission webhooks (/validate, /inject); `:PORT`
    /// means every interface. Default `:15017` in Kubernetes mode; `off` disables.
    #[arg(long, env = "SLUICE_WEBHOOK_LISTEN")]
    webhook_listen: Option<String>,
    /// DNS names of the controller's Service: in the serving certificates of
    /// the webhooks and of the TLS listener (config stream, certificates).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sluice-controller.sluice-system.svc,sluice-controller.sluice-system,sluice-controller"
    )]
    webhook_dns_names: Vec<String>,
    /// ValidatingWebhookConfiguration whose webhooks get the mesh root as caBundle.
    #[arg(long, default_value = "sluice-validator")]
    validating_webhook_config: String,
    /// MutatingWebhookConfiguration whose webhooks get the mesh root as caBundle.
    #[arg(long, default_value = "sluice-sidecar-injector")]
    mutating_webhook_config: String,
    /// Kubernetes mode: only the holder of a Lease writes statuses
    /// (`--leader-election=false`: this replica always writes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader election Lease.
    #[arg(long, env = "SLUICE_LEADER_ELECTION_NAMESPACE", default_value = leader::DEFAULT_NAMESPACE)]
    leader_election_namespace: String,
    /// Name of the leader election Lease.
    #[arg(long, default_value = leader::DEFAULT_LEASE_NAME)]
    leader_election_id: String,
    /// How long a leader's claim lasts without renewal (renewed every third of it).
    #[arg(long, default_value_t = leader::DEFAULT_LEASE_SECONDS)]
    leader_election_lease_seconds: u32,
    /// Image of the injected sidecar (and its init container).
    #[arg(long, env = "SLUICE_PROXY_IMAGE")]
    proxy_image: Option<String>,
    /// Config stream address injected sidecars connect to.
    #[arg(long)]
    injected_controller_address: Option<String>,
    /// Certificate service address injected sidecars use (empty: no mTLS).
    #[arg(long)]
    injected_ca_address: Option<String>,
    /// Resources of injected sidecars as JSON, e.g.
    /// `{"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {}}` (Helm's `proxy.resources`).
    #[arg(long, value_name = "JSON")]
    proxy_resources: Option<String>,
    /// Print the bootstrap token of NAMESPACE/SERVICE_ACCOUNT and exit (local mode).
    #[arg(long, value_name = "NAMESPACE/SERVICE_ACCOUNT")]
    print_token: Option<String>,
    /// Kubernetes mode: audiences a ServiceAccount token must carry for the
    /// certificate service (checked with TokenReview).
    #[arg(
        long,
        env = "SLUICE_TOKEN_AUDIENCES",
        value_delimiter = ',',
        default_value = "sluice"
    )]
    token_audiences: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut args = Args::parse();
    // Local mode keeps its plaintext default; in a cluster an unauthenticated
    // port would hand any pod every proxy's config, so it must be asked for.
    let listen = match (args.listen, &args.config_dir) {
        (Some(addr), _) => Some(addr),
        (None, Some(_)) => Some(SocketAddr::from(([127, 0, 0, 1], 15010))),
        (None, None) => None,
    };
    let listen_ip = listen.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |l| l.ip());
    let secure_listen = *args
        .secure_listen
        .get_or_insert_with(|| SocketAddr::new(listen_ip, 15012));
    if let Some(dir) = &args.config_dir {
        anyhow::ensure!(dir.is_dir(), "--config-dir {}: not a folder", dir.display());
        anyhow::ensure!(
            args.webhook_listen.as_deref().is_none_or(|l| l == "off"),
            "--webhook-listen needs Kubernetes mode (--kubeconfig or --kubernetes)"
        );
    }

    let state_dir = args.state_dir.clone().unwrap_or_else(|| {
        args.config_dir
            .as_deref()
            .unwrap_or(std::path::Path::new("."))
            .join(".sluice")
    });
    let tokens =
        Arc::new(BootstrapTokens::load_or_create(&state_dir).context("bootstrap token secret")?);
    if let Some(who) = &args.print_token {
        let (ns, sa) = who
            .split_once('/')
            .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty())
            .with_context(|| format!("--print-token {who}: expected NAMESPACE/SERVICE_ACCOUNT"))?;
        println!("{}", tokens.issue(ns, sa));
        return Ok(());
    }
    // Bootstrap tokens work in both modes; Kubernetes mode adds TokenReview below.
    let mut authn = Authenticator::bootstrap(tokens);
    if let Some(secret) = &args.ca_secret {
        anyhow::ensure!(
            args.config_dir.is_none(),
            "--ca-secret needs Kubernetes mode (--kubeconfig or --kubernetes)"
        );
        let client = kube_source::connect(args.kubeconfig.as_deref())
            .await
            .context("connecting to the Kubernetes API server")?;
        sluice_control_plane::ca::secret::sync_root(client, secret, &state_dir, &args.trust_domain)
            .await
            .context("mesh root Secret")?;
    }
    let ca = Arc::new(
        CertificateAuthority::load_or_create(
            &state_dir,
            args.ca_dir.as_deref(),
            &args.trust_domain,
        )
        .context("certificate authority")?,
    );

    let metrics = Arc::new(ControllerMetrics::new());
    let registry = Arc::new(SyncRegistry::default());
    if let Some(p) = args.retry_budget_percent {
        anyhow::ensure!(
            (0.0..=100.0).contains(&p),
            "--retry-budget-percent {p}: must be from 0 to 100"
        );
    }
    let retry_budget = (args.retry_budget_percent.is_some()
        || args.retry_budget_min_per_second.is_some())
    .then(|| RetryBudget {
        percent: args
            .retry_budget_percent
            .unwrap_or(RetryBudget::DEFAULT.percent),
        min_per_second: args
            .retry_budget_min_per_second
            .unwrap_or(RetryBudget::DEFAULT.min_per_second),
    });
    let mut mesh = MeshConfig {
        root_namespace: args.root_namespace.clone(),
        retry_budget,
        ..MeshConfig::default()
    };
    if let Some(path) = &args.mesh_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading --mesh-config {}", path.display()))?;
        let (parsed, ignored) = parse_mesh_config(&text, mesh)
            .with_context(|| format!("--mesh-config {}", path.display()))?;
        mesh = parsed;
        if !ignored.is_empty() {
            tracing::info!(
                file = %path.display(),
                fields = %ignored.join(", "),
                "mesh config fields Sluice does not read are ignored"
            );
        }
    }
    let proxy_concurrency = mesh.proxy_concurrency;
    let key_sets = sluice_control_plane::jwks::JwksStore::new(Some(metrics.clone()));
    let mut intake = Intake::with_mesh(mesh).with_jwks(key_sets);
    let debounce = Duration::from_millis(args.debounce_ms);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut elector_task = None;
    let rx = match &args.config_dir {
        Some(config_dir) => {
            let dir = ConfigDir::new(config_dir.clone(), debounce, metrics.clone());
            let mut first = dir.load(&mut intake);
            // Proxies' first config carries fetched keys, not refusals.
            if intake.first_key_sets().await {
                first = dir.load(&mut intake);
            }
            log_first(&first, &config_dir.display().to_string());
            let (tx, rx) = tokio::sync::watch::channel(Arc::new(first));
            tokio::spawn(dir.run(intake, tx));
            rx
        }
        None => {
            let client = kube_source::connect(args.kubeconfig.as_deref())
                .await
                .context("connecting to the Kubernetes API server")?;
            start_webhooks(&args, client.clone(), &ca, &metrics, proxy_concurrency).await?;
            authn = authn.with_token_review(client.clone(), args.token_audiences.clone());
            let leader = if args.leader_election {
                let config = LeaderConfig::new(
                    args.leader_election_namespace.clone(),
                    args.leader_election_id.clone(),
                    args.leader_election_lease_seconds,
                );
                let (elector, leader) =
                    LeaderElector::new(client.clone(), config, metrics.leader.clone());
                elector_task = Some(tokio::spawn(elector.run(stop_rx.clone())));
                leader
            } else {
                leader::always_leader(&metrics.leader)
            };
            let mut source = KubeSource::start(client, debounce, metrics.clone(), leader)
                .with_sync(registry.clone());
            let mut first = source.load(&mut intake).await;
            if intake.first_key_sets().await {
                first = source.load(&mut intake).await;
            }
            log_first(&first, "the Kubernetes API server");
            let (tx, rx) = tokio::sync::watch::channel(Arc::new(first));
            tokio::spawn(source.run(intake, tx));
            rx
        }
    };

    let admin_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding --metrics-listen {}", args.metrics_listen))?;
    tokio::spawn(admin::serve(
        admin_listener,
        AdminState {
            index: rx.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
        },
    ));

    let grpc = match listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --listen {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(plaintext = ?listen, secure = %secure_listen, metrics = %args.metrics_listen, "serving");
    let config_server = ConfigServer::new(rx, registry, metrics.clone());
    let mut dns_names = args.webhook_dns_names.clone();
    // The Service name of earlier releases, kept so their proxies still verify.
    dns_names.push("sluice-controller.istio-system.svc".into());
    let secure = secure_server(
        secure_listen,
        &dns_names,
        &ca,
        authn.clone(),
        config_server.authenticated(authn),
        &metrics,
    )
    .await?;
    tokio::spawn(async move {
        if let Err(e) = secure.await {
            tracing::error!("secure listener stopped: {e}");
        }
    });
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
        }
        let _ = stop_tx.send(true);
    });
    let mut stopping = stop_rx.clone();
    let serve = async move {
        let Some(grpc) = grpc else {
            // No plaintext listener: run until stopped.
            let _ = stopping.wait_for(|s| *s).await;
            return Ok(());
        };
        config_transport()
            .add_service(config_server)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc),
                async move {
                    let _ = stopping.wait_for(|s| *s).await;
                },
            )
            .await
    };
    // Config streams never end on their own: a graceful shutdown would wait
    // for every proxy to hang up. Give them a moment, then exit; proxies
    // keep their config and reconnect to the next controller.
    let mut stopped = stop_rx;
    tokio::select! {
        r = serve => r.context("config server")?,
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => tracing::info!("config streams still open 2 s after the stop signal; exiting"),
    }
    // Releasing the Lease lets the other replica write statuses at once.
    if let Some(task) = elector_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    Ok(())
}

fn log_first(first: &MeshIndex, from: &str) {
    tracing::info!(
        revision = first.revision,
        objects = first.resources.len(),
        rejected = first.rejected.len(),
        "configuration loaded from {from}"
    );
}

/// Starts the admission webhooks (Kubernetes mode). A failure to bind the
/// default address is logged and skipped, so a second controller on one host
/// (tests, a local run beside a cluster one) still starts; an address given
/// explicitly must work.
async fn start_webhooks(
    args: &Args,
    client: kube::Client,
    ca: &Arc<CertificateAuthority>,
    metrics: &Arc<ControllerMetrics>,
    proxy_concurrency: Option<u32>,
) -> anyhow::Result<()> {
    let explicit = args.webhook_listen.is_some();
    let listen = args.webhook_listen.as_deref().unwrap_or(":15017");
    if listen == "off" {
        return Ok(());
    }
    let addr: SocketAddr = match listen.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}").parse(),
        None => listen.parse(),
    }
    .with_context(|| format!("--webhook-listen {listen}: expected HOST:PORT, :PORT or off"))?;
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if !explicit => {
            tracing::error!("admission webhooks off: binding {addr}: {e}");
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("binding --webhook-listen {addr}")),
    };
    let mut inject = InjectConfig {
        trust_domain: args.trust_domain.clone(),
        concurrency: proxy_concurrency,
        ..InjectConfig::default()
    };
    if let Some(json) = &args.proxy_resources {
        let (requests, limits) = sluice_control_plane::inject::parse_resources(json)
            .map_err(|e| anyhow::anyhow!("--proxy-resources: {e}"))?;
        inject.requests = requests;
        inject.limits = limits;
    }
    if let Some(image) = &args.proxy_image {
        inject.proxy_image.clone_from(image);
    }
    if let Some(controller) = &args.injected_controller_address {
        inject.controller.clone_from(controller);
    }
    if let Some(ca_address) = &args.injected_ca_address {
        inject.ca_address.clone_from(ca_address);
    }
    let mut dns = args.webhook_dns_names.clone();
    dns.push("localhost".into());
    let mut ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    if !addr.ip().is_unspecified() && !ips.contains(&addr.ip()) {
        ips.push(addr.ip());
    }
    let options = WebhookOptions {
        names: webhook::tls::Names { dns, ips },
        validating_config: args.validating_webhook_config.clone(),
        mutating_config: args.mutating_webhook_config.clone(),
        inject,
    };
    webhook::start(listener, client, ca.clone(), metrics.clone(), options)
        .context("admission webhooks")?;
    tracing::info!(%addr, "serving admission webhooks");
    Ok(())
}

/// Server settings of both config listeners: keepalive and HTTP/2 windows
/// large enough for a complete config in one flight.
fn config_transport() -> tonic::transport::Server {
    use sluice_control_plane::server::{CONNECTION_WINDOW, KEEPALIVE, STREAM_WINDOW};
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE))
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
}

/// The TLS listener: config stream (token required) and certificate signing,
/// served with a certificate the mesh CA issues to the controller itself.
async fn secure_server(
    addr: SocketAddr,
    dns_names: &[String],
    ca: &Arc<CertificateAuthority>,
    authn: Authenticator,
    config: ConfigServer,
    metrics: &Arc<ControllerMetrics>,
) -> anyhow::Result<impl std::future::Future<Output = Result<(), tonic::transport::Error>> + use<>>
{
    use tonic::transport::{Identity, ServerTlsConfig};
    let mut names = dns_names.to_vec();
    names.extend(["sluice-controller".to_owned(), "localhost".to_owned()]);
    names.sort();
    names.dedup();
    let mut ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    if !addr.ip().is_unspecified() && !ips.contains(&addr.ip()) {
        ips.push(addr.ip());
    }
    let (chain, key) = ca
        .sign_server(&names, &ips)
        .context("controller serving certificate")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --secure-listen {addr}"))?;
    let csr = CertificateServer::new(ca.clone(), authn, metrics.csr_requests.clone());
    let server = config_transport()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(chain.concat(), key)))
        .context("TLS settings")?
        .add_service(config)
        .add_service(sluice_api::ca::certificate_service_server::CertificateServiceServer::new(csr))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    Ok(server)
}
