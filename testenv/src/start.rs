//! Bringing a control plane up: binaries, PKI, ports, the three processes
//! in dependency order, and the readiness of each.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio_rustls::TlsConnector;

use crate::pki::{self, Pki};
use crate::process::{self, Process, Watchdog};
use crate::{Error, TestEnv, UNPRIVILEGED_USER, probe};

/// Issuer and audience of service-account tokens, as in a real cluster.
const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How long each component may take to become ready; generous because the
/// machine may be busy compiling.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Set to keep the working directory (logs, etcd data) after the
/// environment is dropped.
pub(crate) const KEEP_VAR: &str = "SLUICE_TESTENV_KEEP";

/// How often to try starting when a picked port was taken meanwhile.
const PORT_ATTEMPTS: u32 = 3;

/// Controllers that need a kubelet heartbeat or cloud would fight the fake
/// nodes tests create: node lifecycle marks their pods not ready after 40s.
const CONTROLLERS: &str = "*,-node-lifecycle-controller,-node-ipam-controller";

/// The pinned binaries `scripts/k8s-tools` builds.
struct Binaries {
    etcd: PathBuf,
    apiserver: PathBuf,
    controller_manager: PathBuf,
}

impl Binaries {
    /// `$SLUICE_K8S_BIN`, else `<workspace>/.cache/k8s/bin`.
    fn locate() -> Result<Binaries, Error> {
        let dir = std::env::var_os("SLUICE_K8S_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/k8s/bin"));
        Binaries::locate_in(&dir)
    }

    fn locate_in(dir: &Path) -> Result<Binaries, Error> {
        let find = |name: &'static str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::MissingBinary {
                    name,
                    dir: dir.to_path_buf(),
                })
            }
        };
        Ok(Binaries {
            etcd: find("etcd")?,
            apiserver: find("kube-apiserver")?,
            controller_manager: find("kube-controller-manager")?,
        })
    }
}

/// Starts a control plane in a fresh temporary directory.
pub(crate) async fn start() -> Result<TestEnv, Error> {
    start_with(Binaries::locate()?).await
}

async fn start_with(bins: Binaries) -> Result<TestEnv, Error> {
    let mut attempt = 1;
    loop {
        let mut dir = tempfile::Builder::new()
            .prefix("sluice-testenv-")
            .tempdir()
            .map_err(Error::io("creating the working directory"))?;
        match start_in(&bins, dir.path()).await {
            Ok(parts) => {
                let keep = std::env::var_os(KEEP_VAR).is_some();
                if keep {
                    eprintln!(
                        "sluice-testenv: {KEEP_VAR} set, keeping {}",
                        dir.path().display()
                    );
                    dir.disable_cleanup(true);
                }
                return Ok(parts.into_env(dir, keep));
            }
            Err(source) if source.is_port_clash() && attempt < PORT_ATTEMPTS => {
                eprintln!("sluice-testenv: {source}; retrying with other ports");
                attempt += 1;
            }
            Err(source) => {
                // The processes were killed when `start_in` returned; their
                // logs are what explains the failure, so the directory stays.
                let dir = dir.keep();
                eprintln!(
                    "sluice-testenv: start failed: {source}; logs in {}",
                    dir.display()
                );
                return Err(Error::Start {
                    dir,
                    source: Box::new(source),
                });
            }
        }
    }
}

/// Everything of a [`TestEnv`] but its directory.
struct Parts {
    kubeconfig: PathBuf,
    server: String,
    admin_token: String,
    unprivileged_token: String,
    ca_pem: String,
    addr: SocketAddr,
    tls: TlsConnector,
    etcd: Process,
    apiserver: Process,
    controller_manager: Process,
}

impl Parts {
    fn into_env(self, dir: tempfile::TempDir, keep: bool) -> TestEnv {
        // Runs only if the env is never dropped (a shared one), after the
        // process watchdogs killed etcd & co.
        let cleanup = if keep {
            None
        } else {
            Watchdog::spawn("sleep 1; rm -rf \"$1\"", dir.path().as_os_str()).ok()
        };
        TestEnv {
            kubeconfig: self.kubeconfig,
            server: self.server,
            admin_token: self.admin_token,
            unprivileged_token: self.unprivileged_token,
            ca_pem: self.ca_pem,
            addr: self.addr,
            tls: self.tls,
            controller_manager: self.controller_manager,
            apiserver: self.apiserver,
            etcd: self.etcd,
            _cleanup: cleanup,
            dir,
        }
    }
}

async fn start_in(bins: &Binaries, dir: &Path) -> Result<Parts, Error> {
    let started = Instant::now();
    let pki = Pki::generate()?;
    let files = pki.write(dir)?;
    let tls = probe::tls_connector(&pki.ca_der)?;
    let admin_token = pki::token();
    let unprivileged_token = pki::token();
    let tokens = dir.join("tokens.csv");
    write(
        &tokens,
        &format!(
            "{admin_token},sluice-test-admin,sluice-test-admin,\"system:masters\"\n\
             {unprivileged_token},{UNPRIVILEGED_USER},{UNPRIVILEGED_USER}\n"
        ),
    )?;

    let [etcd_port, peer_port, port] = process::free_ports()?;
    let etcd_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, etcd_port));
    let etcd_url = format!("http://{etcd_addr}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    eprintln!(
        "sluice-testenv: starting etcd on {etcd_url} (dir {})",
        dir.display()
    );
    let mut etcd = Process::spawn(
        "etcd",
        &bins.etcd,
        [
            "--name=testenv".to_owned(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=testenv={peer_url}"),
            "--initial-cluster-state=new".to_owned(),
        ],
        dir,
    )?;
    let took = wait_for("etcd /health", &mut [&mut etcd], || async {
        matches!(probe::get(etcd_addr, None, "/health", None).await, Ok(r) if r.status == 200)
    })
    .await?;
    eprintln!("sluice-testenv: etcd ready in {took:.1?}");

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let server = format!("https://{addr}");
    eprintln!("sluice-testenv: starting kube-apiserver on {server}");
    let mut apiserver = Process::spawn(
        "kube-apiserver",
        &bins.apiserver,
        apiserver_args(dir, port, &etcd_url, &tokens, &files),
        dir,
    )?;
    let took = wait_for(
        "kube-apiserver /readyz",
        &mut [&mut etcd, &mut apiserver],
        || async {
            matches!(probe::get(addr, Some(&tls), "/readyz", Some(&admin_token)).await,
            Ok(r) if r.status == 200)
        },
    )
    .await?;
    eprintln!("sluice-testenv: kube-apiserver ready in {took:.1?}");

    let kubeconfig = dir.join("kubeconfig");
    write(
        &kubeconfig,
        &kubeconfig_yaml(&server, &pki.ca_pem, &admin_token),
    )?;

    eprintln!("sluice-testenv: starting kube-controller-manager");
    let mut controller_manager = Process::spawn(
        "kube-controller-manager",
        &bins.controller_manager,
        [
            format!("--kubeconfig={}", kubeconfig.display()),
            format!(
                "--service-account-private-key-file={}",
                files.sa_key.display()
            ),
            format!("--root-ca-file={}", files.ca.display()),
            "--use-service-account-credentials=false".to_owned(),
            format!("--controllers={CONTROLLERS}"),
            "--leader-elect=false".to_owned(),
            "--bind-address=127.0.0.1".to_owned(),
            "--secure-port=0".to_owned(),
        ],
        dir,
    )?;
    let took = wait_for(
        "the default ServiceAccount",
        &mut [&mut etcd, &mut apiserver, &mut controller_manager],
        || async {
            let path = "/api/v1/namespaces/default/serviceaccounts/default";
            matches!(probe::get(addr, Some(&tls), path, Some(&admin_token)).await,
                Ok(r) if r.status == 200)
        },
    )
    .await?;
    eprintln!(
        "sluice-testenv: kube-controller-manager ready in {took:.1?}; control plane up in {:.1?}",
        started.elapsed()
    );

    Ok(Parts {
        kubeconfig,
        server,
        admin_token,
        unprivileged_token,
        ca_pem: pki.ca_pem,
        addr,
        tls,
        etcd,
        apiserver,
        controller_manager,
    })
}

fn apiserver_args(
    dir: &Path,
    port: u16,
    etcd_url: &str,
    tokens: &Path,
    files: &pki::PkiFiles,
) -> Vec<String> {
    vec![
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("apiserver-certs").display()),
        format!("--etcd-servers={etcd_url}"),
        format!("--token-auth-file={}", tokens.display()),
        "--authorization-mode=RBAC".to_owned(),
        format!("--client-ca-file={}", files.ca.display()),
        format!("--tls-cert-file={}", files.serving_cert.display()),
        format!("--tls-private-key-file={}", files.serving_key.display()),
        format!("--service-account-issuer={SA_ISSUER}"),
        format!("--service-account-key-file={}", files.sa_public.display()),
        format!(
            "--service-account-signing-key-file={}",
            files.sa_key.display()
        ),
        format!("--api-audiences={SA_ISSUER}"),
        "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
        "--allow-privileged=true".to_owned(),
    ]
}

fn kubeconfig_yaml(server: &str, ca_pem: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sluice-testenv
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: sluice-test-admin
  user:
    token: {token}
contexts:
- name: sluice-testenv
  context:
    cluster: sluice-testenv
    user: sluice-test-admin
    namespace: default
current-context: sluice-testenv
"
    )
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(Error::io(format!("writing {}", path.display())))
}

/// Polls `ready` until it holds, failing early when a process exits.
pub(crate) async fn wait_for<F, Fut>(
    what: &str,
    processes: &mut [&mut Process],
    mut ready: F,
) -> Result<Duration, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if ready().await {
            return Ok(started.elapsed());
        }
        for process in processes.iter_mut() {
            process.check_running()?;
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(Error::NotReady {
                what: what.to_owned(),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests;
