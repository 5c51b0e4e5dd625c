//! Command-line flags (with `SLUICE_*` environment fallbacks), parsed once into
//! the plain settings the rest of the proxy reads.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;

/// Flags of `sluice-proxy`.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-proxy",
    about = "Sluice sidecar proxy",
    version,
    after_help = "Transparent capture: `sluice-proxy init --help` (programs iptables, then exits)."
)]
pub struct Flags {
    /// Controller config-stream address: `http://` (plaintext, local mode)
    /// or `https://` (verified against --ca-root, authenticated with --token-file).
    #[arg(
        long,
        env = "SLUICE_CONTROLLER",
        default_value = "http://127.0.0.1:15010"
    )]
    pub controller: String,
    /// Workload IP: the pod's address, how the controller recognises this
    /// workload; listeners bind here unless `--bind-ip` says otherwise.
    #[arg(long, env = "SLUICE_IP", default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Address the listeners bind; default `--ip`. With iptables capture
    /// (`sluice-proxy init`) it is `0.0.0.0`, since redirected connections
    /// arrive on 127.0.0.1.
    #[arg(long, env = "SLUICE_BIND_IP")]
    pub bind_ip: Option<IpAddr>,
    /// Address the inbound side dials the application on; default `--ip`.
    /// With iptables capture it is `127.0.0.1`, so the proxy's own
    /// connections to the app are not redirected back to it.
    #[arg(long, env = "SLUICE_APP_IP")]
    pub app_ip: Option<IpAddr>,
    /// Unique proxy id, e.g. `reviews-v1-0.default`.
    #[arg(long, env = "SLUICE_ID")]
    pub id: String,
    /// Workload name.
    #[arg(long, env = "SLUICE_WORKLOAD")]
    pub workload: String,
    /// Workload namespace.
    #[arg(long, env = "SLUICE_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Kubernetes service account of the workload.
    #[arg(long, env = "SLUICE_SERVICE_ACCOUNT", default_value = "default")]
    pub service_account: String,
    /// Workload label `key=value`, repeatable.
    #[arg(long = "label", env = "SLUICE_LABELS", value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// SPIFFE trust domain.
    #[arg(long, env = "SLUICE_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// Outbound listener port.
    #[arg(long, env = "SLUICE_OUTBOUND_PORT", default_value_t = 15001)]
    pub outbound_port: u16,
    /// Inbound listener port.
    #[arg(long, env = "SLUICE_INBOUND_PORT", default_value_t = 15006)]
    pub inbound_port: u16,
    /// Admin listener port.
    #[arg(long, env = "SLUICE_ADMIN_PORT", default_value_t = 15000)]
    pub admin_port: u16,
    /// Readiness listener port.
    #[arg(long, env = "SLUICE_HEALTH_PORT", default_value_t = 15021)]
    pub health_port: u16,
    /// Prometheus listener port.
    #[arg(long, env = "SLUICE_STATS_PORT", default_value_t = 15090)]
    pub stats_port: u16,
    /// Upstream connect timeout in milliseconds.
    #[arg(long, env = "SLUICE_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Certificate service (the controller's TLS port), e.g. `https://127.0.0.1:15012`.
    /// Unset: the proxy runs without a workload certificate (no mTLS).
    #[arg(long, env = "SLUICE_CA_ADDRESS")]
    pub ca_address: Option<String>,
    /// PEM root(s) that sign the controller's serving certificate (for the
    /// certificate service and an `https://` --controller).
    #[arg(long, env = "SLUICE_CA_ROOT")]
    pub ca_root: Option<std::path::PathBuf>,
    /// File holding the token that proves the workload's identity to the CA
    /// and an `https://` --controller (a bootstrap token in local mode, a
    /// ServiceAccount token in Kubernetes); re-read at each connection.
    #[arg(long, env = "SLUICE_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,
    /// Folder with mounted credentials instead of a certificate service:
    /// `cert-chain.pem` (leaf first), `key.pem` (PKCS#8) and `root-cert.pem`
    /// (one or more roots); re-read when the files change.
    #[arg(long, env = "SLUICE_CREDENTIALS_DIR", conflicts_with = "ca_address")]
    pub credentials_dir: Option<std::path::PathBuf>,
    /// Requested workload certificate lifetime in seconds (0 = the CA's default).
    #[arg(long, env = "SLUICE_CERT_TTL_S", default_value_t = 0)]
    pub cert_ttl_s: u64,
    /// Worker threads (Istio's `ProxyConfig.concurrency`). Unset: the CPUs the
    /// process may use (affinity and CPU limit), at most 2; 0: every such CPU.
    /// One worker runs the proxy on a single-threaded scheduler.
    #[arg(long, env = "SLUICE_CONCURRENCY")]
    pub concurrency: Option<usize>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("label {s:?} is not key=value"))
}

/// Identity of this proxy's workload.
#[derive(Clone, Debug)]
pub struct Identity {
    pub id: String,
    pub workload: String,
    pub namespace: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub trust_domain: String,
    pub ip: IpAddr,
}

impl Identity {
    /// `spiffe://<td>/ns/<ns>/sa/<sa>`.
    pub fn principal(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

/// Everything the proxy needs to start.
#[derive(Clone, Debug)]
pub struct Settings {
    pub controller: String,
    pub identity: Identity,
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    pub health: SocketAddr,
    pub stats: SocketAddr,
    pub connect_timeout: Duration,
    /// Where the local application is dialled.
    pub app_ip: IpAddr,
    /// Where the workload certificate comes from; `None` (and no
    /// `credentials_dir`) = no mTLS.
    pub ca: Option<CaSettings>,
    /// Mounted credentials, used instead of a certificate service.
    pub credentials_dir: Option<std::path::PathBuf>,
    /// How an `https://` controller is verified and told who we are.
    pub controller_auth: ControllerAuth,
}

/// Credentials for the config stream over TLS.
#[derive(Clone, Debug, Default)]
pub struct ControllerAuth {
    /// PEM roots that sign the controller's serving certificate.
    pub root: Option<std::path::PathBuf>,
    /// Bearer token file, sent as `authorization: Bearer <token>`.
    pub token_file: Option<std::path::PathBuf>,
}

/// How to reach the certificate service.
#[derive(Clone, Debug)]
pub struct CaSettings {
    pub address: String,
    pub root: Option<std::path::PathBuf>,
    pub token_file: Option<std::path::PathBuf>,
    /// Requested lifetime; zero = the CA's default.
    pub ttl: Duration,
}

impl From<Flags> for Settings {
    fn from(f: Flags) -> Self {
        let bind = f.bind_ip.unwrap_or(f.ip);
        // Admin must stay local: bind the listen address only when that is loopback.
        let admin_ip = if bind.is_loopback() {
            bind
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        };
        Settings {
            controller: f.controller,
            outbound: SocketAddr::new(bind, f.outbound_port),
            inbound: SocketAddr::new(bind, f.inbound_port),
            admin: SocketAddr::new(admin_ip, f.admin_port),
            health: SocketAddr::new(bind, f.health_port),
            stats: SocketAddr::new(bind, f.stats_port),
            app_ip: f.app_ip.unwrap_or(f.ip),
            connect_timeout: Duration::from_millis(f.connect_timeout_ms),
            controller_auth: ControllerAuth {
                root: f.ca_root.clone(),
                token_file: f.token_file.clone(),
            },
            ca: f.ca_address.map(|address| CaSettings {
                address,
                root: f.ca_root,
                token_file: f.token_file,
                ttl: Duration::from_secs(f.cert_ttl_s),
            }),
            credentials_dir: f.credentials_dir,
            identity: Identity {
                id: f.id,
                workload: f.workload,
                namespace: f.namespace,
                service_account: f.service_account,
                labels: f.labels.into_iter().collect(),
                trust_domain: f.trust_domain,
                ip: f.ip,
            },
        }
    }
}
