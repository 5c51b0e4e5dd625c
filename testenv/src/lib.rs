//! A real Kubernetes control plane for tests, envtest style: etcd,
//! kube-apiserver and kube-controller-manager from pinned official builds
//! (`scripts/k8s-tools`), on loopback with generated PKI, stopped on drop.
//!
//! Needs the binaries from `scripts/k8s-tools` (in `<workspace>/.cache/k8s/bin`
//! or `$SLUICE_K8S_BIN`) and `kubectl` on `PATH`. There is no scheduler and
//! no kubelet: pods stay pending unless a test plays kubelet with
//! [`TestEnv::ensure_node`] and [`TestEnv::set_pod_ready`]. Set
//! `SLUICE_TESTENV_KEEP=1` to keep the working directory and its logs.
//! Fault tests can restart the API server in place with
//! [`TestEnv::restart_apiserver`] (on an environment of their own).
//! A `kube` client can be built from [`TestEnv::kubeconfig`] (a file with a
//! token and inline CA data).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_testenv::Error> {
//! // One environment per test binary; starting one takes seconds.
//! let env = sluice_testenv::TestEnv::shared().await?;
//! let namespaces = env.kubectl_run(&["get", "namespaces", "-o", "name"]).await?;
//! assert!(namespaces.contains("namespace/default"));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod error;
mod fixtures;
mod pki;
mod probe;
mod process;
mod restart;
mod start;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;
use tokio_rustls::TlsConnector;

pub use error::Error;
pub use probe::HttpReply;

use process::{Process, Watchdog};

/// The user name behind [`TestEnv::unprivileged_token`]; no RBAC rule names it.
pub const UNPRIVILEGED_USER: &str = "sluice-test-unprivileged";

/// A running control plane: etcd, kube-apiserver and kube-controller-manager,
/// all killed and reaped when this is dropped.
pub struct TestEnv {
    /// A kubeconfig with cluster-admin rights (token in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// The admin bearer token the kubeconfig carries.
    pub admin_token: String,
    /// A valid token for [`UNPRIVILEGED_USER`], who may do nothing.
    pub unprivileged_token: String,
    /// The PEM CA certificate that signed the API server's certificate.
    pub ca_pem: String,
    addr: SocketAddr,
    tls: TlsConnector,
    // Fields drop in declaration order: processes in reverse start order,
    // then the directory they wrote into.
    controller_manager: Process,
    apiserver: Process,
    etcd: Process,
    _cleanup: Option<Watchdog>,
    dir: tempfile::TempDir,
}

static SHARED: OnceCell<TestEnv> = OnceCell::const_new();

impl TestEnv {
    /// Starts etcd, the API server and the controller-manager and waits until
    /// the API server is ready and the `default` namespace has its `default`
    /// ServiceAccount. On failure the working directory, with each process's
    /// log, is kept and named in the error.
    pub async fn start() -> Result<TestEnv, Error> {
        start::start().await
    }

    /// The environment shared by every test of this test binary, started by
    /// the first caller. Tests sharing it should create their own namespaces.
    /// It is never dropped: its processes are killed and its directory
    /// removed by watchdogs when the test binary exits. A failed start is
    /// retried by the next caller.
    pub async fn shared() -> Result<&'static TestEnv, Error> {
        SHARED.get_or_try_init(TestEnv::start).await
    }

    /// `kubectl` with this environment's kubeconfig.
    pub fn kubectl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// Runs `kubectl <args>` as admin and returns its stdout, or an error
    /// with its stderr when it fails.
    pub async fn kubectl_run(&self, args: &[&str]) -> Result<String, Error> {
        self.kubectl_with_stdin(args, None).await
    }

    /// Runs `kubectl apply -f -` with `manifest` (YAML or JSON) on stdin.
    pub async fn apply(&self, manifest: &str) -> Result<String, Error> {
        self.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest))
            .await
    }

    /// GETs `path` from the API server, with `token` as bearer token if
    /// given (none: an anonymous request).
    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<HttpReply, Error> {
        probe::get(self.addr, Some(&self.tls), path, token).await
    }

    /// The working directory: PKI, kubeconfig, etcd data and `<name>.log`
    /// for each process. Removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fails if any control-plane process has exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        self.etcd.check_running()?;
        self.apiserver.check_running()?;
        self.controller_manager.check_running()
    }

    async fn kubectl_with_stdin(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, Error> {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(Error::io("starting kubectl"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .await
                .map_err(Error::io("writing kubectl's stdin"))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(Error::io("running kubectl"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Kubectl {
                args: args.join(" "),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }
}
