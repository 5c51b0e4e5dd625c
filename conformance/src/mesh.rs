//! A local mesh on loopback: a controller in `--config-dir` mode and, per workload instance, an
//! echo app plus its sidecar on the instance's own loopback address (as a pod has its own IP).
use crate::scenario::{Protocol, Workload};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod addr;
pub mod bins;
mod controller;
pub mod faults;
pub mod kube;
pub mod process;
pub mod security;
pub mod store;
pub mod sync;

#[cfg(test)]
mod tests;

use addr::AddrBlock;
use process::Proc;
use store::{ConfigStore, InstanceDoc};
use sync::Syncz;

/// Port of the echo's control listener on each instance address.
pub const ECHO_CONTROL_PORT: u16 = 15999;
/// Controller plaintext config stream port.
pub const CONTROLLER_PORT: u16 = 15010;
/// Controller TLS port: certificates and the authenticated config stream.
pub const CONTROLLER_SECURE_PORT: u16 = 15012;
/// Controller metrics/debug port.
pub const CONTROLLER_METRICS_PORT: u16 = 15014;

/// Why the mesh could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// A binary is not built.
    #[error(
        "binary {name} not found (searched {searched}); build them: cargo build --workspace --bins"
    )]
    MissingBinary {
        /// Binary name.
        name: String,
        /// Directories searched.
        searched: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Config YAML is unusable, or the mesh description is.
    #[error("{0}")]
    Config(String),
    /// Something did not happen in time.
    #[error("{0}")]
    Timeout(String),
    /// A child process died.
    #[error("{0}")]
    Died(String),
    /// An echo's control listener refused a behaviour change.
    #[error("behave {instance}: {why}")]
    Behave {
        /// The instance.
        instance: String,
        /// What went wrong.
        why: String,
    },
}

/// How to start a mesh.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Where binaries are (else `$SLUICE_BIN_DIR` or next to the current executable).
    pub bin_dir: Option<PathBuf>,
    /// Directory for the config dir (`config/`) and the processes' logs; must exist.
    pub work_dir: PathBuf,
    /// How long startup (readiness + first sync) may take.
    pub start_timeout: Duration,
    /// How long a config change may take to be acked by every proxy.
    pub converge_timeout: Duration,
    /// After a change, how long to wait for the controller's revision to grow before assuming
    /// the change had no effect.
    pub change_grace: Duration,
    /// Whether sidecars get workload certificates from the controller's CA
    /// (and so talk mTLS to each other).
    pub mtls: bool,
    /// Extra flags for every sidecar (e.g. `--cert-ttl-s 4` to force rotations).
    pub sidecar_args: Vec<String>,
    /// Extra flags for the controller (e.g. `--mesh-config FILE`).
    pub controller_args: Vec<String>,
    /// Register the workloads in this Kubernetes API server and run the controller against
    /// it (`--kubeconfig`), instead of a config folder.
    pub kube: Option<kube::Kube>,
}

impl MeshOptions {
    /// Defaults for a work dir: 20 s start, 10 s convergence, 3 s grace.
    pub fn new(work_dir: PathBuf) -> Self {
        Self {
            bin_dir: None,
            work_dir,
            start_timeout: Duration::from_secs(20),
            converge_timeout: Duration::from_secs(10),
            change_grace: Duration::from_secs(3),
            mtls: true,
            sidecar_args: Vec::new(),
            controller_args: Vec::new(),
            kube: None,
        }
    }
}

/// One workload instance: echo app + sidecar on `ip`.
#[derive(Debug)]
pub struct Instance {
    /// Service name.
    pub service: String,
    /// Namespace.
    pub namespace: String,
    /// Version label.
    pub version: String,
    /// Index within the version.
    pub index: u32,
    /// Service port (= the app's port).
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// The instance's loopback address.
    pub ip: Ipv4Addr,
    echo_args: Vec<String>,
    echo: Option<Proc>,
    sidecar_args: Vec<String>,
    sidecar: Proc,
}

impl Instance {
    fn at(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ip), port)
    }
    /// The proxy id (`<svc>-<version>-<i>.<ns>`).
    pub fn id(&self) -> String {
        format!("{}.{}", self.workload_name(), self.namespace)
    }
    /// `<svc>-<version>-<i>`.
    pub fn workload_name(&self) -> String {
        format!("{}-{}-{}", self.service, self.version, self.index)
    }
    /// The echo app's listener.
    pub fn app_addr(&self) -> SocketAddr {
        self.at(self.port)
    }
    /// The sidecar's outbound listener (explicit HTTP proxy).
    pub fn outbound_addr(&self) -> SocketAddr {
        self.at(15001)
    }
    /// The sidecar's inbound listener.
    pub fn inbound_addr(&self) -> SocketAddr {
        self.at(15006)
    }
    /// The sidecar's admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.at(15000)
    }
    /// The sidecar's readiness listener.
    pub fn ready_addr(&self) -> SocketAddr {
        self.at(15021)
    }
    /// The sidecar's Prometheus listener.
    pub fn stats_addr(&self) -> SocketAddr {
        self.at(15090)
    }
    /// The echo's control listener.
    pub fn control_addr(&self) -> SocketAddr {
        self.at(ECHO_CONTROL_PORT)
    }
    /// Whether the echo app is running (not killed by a `kill` step).
    pub fn echo_running(&self) -> bool {
        self.echo.is_some()
    }
}

/// A running local mesh. Dropping it kills every process.
pub struct LocalMesh {
    block: AddrBlock,
    /// `None` while stopped on purpose (`kill_controller`).
    controller: Option<Proc>,
    controller_bin: PathBuf,
    controller_args: Vec<String>,
    instances: Vec<Instance>,
    store: ConfigStore,
    config_dir: PathBuf,
    log_dir: PathBuf,
    echo_bin: PathBuf,
    proxy_bin: PathBuf,
    opts: MeshOptions,
}

impl LocalMesh {
    /// Starts controller, echoes and sidecars, applies `config_yaml` and waits until every
    /// sidecar is ready and has acked the controller's current revision.
    pub async fn start(
        workloads: &[Workload],
        config_yaml: &str,
        opts: MeshOptions,
    ) -> Result<Self, MeshError> {
        let controller_bin = bins::find("sluice-controller", opts.bin_dir.as_deref())?;
        let proxy_bin = bins::find("sluice-proxy", opts.bin_dir.as_deref())?;
        let echo_bin = bins::find("sluice-echo", opts.bin_dir.as_deref())?;
        let config_dir = opts.work_dir.join("config");
        let log_dir = opts.work_dir.clone();
        std::fs::create_dir_all(&config_dir).map_err(|source| MeshError::Io {
            what: format!("create {}", config_dir.display()),
            source,
        })?;
        let block = match &opts.kube {
            Some(_) => AddrBlock::reserve_routable()?,
            None => AddrBlock::reserve()?,
        };
        let docs = instance_docs(workloads, &block)?;
        let mut store = ConfigStore::default();
        store.apply(config_yaml)?;
        let cip = block.ip(1);
        let mut controller_args: Vec<String> = vec![
            "--listen".into(),
            format!("{cip}:{CONTROLLER_PORT}"),
            "--metrics-listen".into(),
            format!("{cip}:{CONTROLLER_METRICS_PORT}"),
            "--secure-listen".into(),
            format!("{cip}:{CONTROLLER_SECURE_PORT}"),
            "--debounce-ms".into(),
            "50".into(),
        ];
        let (state_dir, tokens) = match &opts.kube {
            None => {
                store::write_atomic(
                    &config_dir,
                    "00-workloads.yaml",
                    &store::workloads_yaml(workloads, &docs),
                )?;
                store::write_atomic(&config_dir, "10-config.yaml", &store.render()?)?;
                let tokens = if opts.mtls {
                    security::issue_tokens(&controller_bin, &config_dir, &opts.work_dir, workloads)
                        .await?
                } else {
                    security::TokenFiles::new()
                };
                controller_args.extend(["--config-dir".into(), config_dir.display().to_string()]);
                (config_dir.join(".sluice"), tokens)
            }
            Some(k) => {
                k.clean().await?;
                k.register(workloads, &docs, config_yaml).await?;
                let tokens = if opts.mtls {
                    k.tokens(workloads, &opts.work_dir.join("tokens")).await?
                } else {
                    security::TokenFiles::new()
                };
                let state_dir = opts.work_dir.join("state");
                controller_args.extend([
                    "--kubeconfig".into(),
                    k.kubeconfig().display().to_string(),
                    "--state-dir".into(),
                    state_dir.display().to_string(),
                    "--webhook-listen".into(),
                    "off".into(),
                    // Each mesh its own Lease, so it never waits for the previous scenario's
                    // (killed) controller's claim to expire before writing statuses.
                    "--leader-election-namespace".into(),
                    "default".into(),
                    "--leader-election-id".into(),
                    format!("sluice-conformance-{}", cip.to_string().replace('.', "-")),
                ]);
                (state_dir, tokens)
            }
        };
        controller_args.extend(opts.controller_args.iter().cloned());
        let controller = Proc::spawn(
            "sluice-controller".into(),
            &controller_bin,
            &controller_args,
            &log_dir.join("controller.log"),
        )?;
        let root = state_dir.join("ca").join("root-cert.pem");
        if opts.mtls {
            security::wait_for_root(&root, opts.start_timeout).await?;
        }
        let mut instances = Vec::new();
        for d in &docs {
            let w = d.workload;
            let name = format!("{}-{}-{}", w.service, d.version, d.index);
            let echo_args = vec![
                "--addr".into(),
                format!("{}:{}", d.ip, w.port),
                "--service".into(),
                w.service.clone(),
                "--version".into(),
                d.version.to_string(),
                "--instance".into(),
                d.index.to_string(),
                "--namespace".into(),
                w.namespace.clone(),
                "--protocol".into(),
                w.protocol.as_str().into(),
                "--control-addr".into(),
                format!("{}:{ECHO_CONTROL_PORT}", d.ip),
            ];
            let echo = Proc::spawn(
                format!("sluice-echo {name}"),
                &echo_bin,
                &echo_args,
                &log_dir.join(format!("echo-{name}.{}.log", w.namespace)),
            )?;
            let mut sidecar_args: Vec<String> = Vec::new();
            // With a token the sidecar uses the TLS port for both certificates and config,
            // proving its identity on each, as in a cluster; without one, plaintext config.
            let controller_url =
                match tokens.get(&(w.namespace.clone(), w.service_account().to_owned())) {
                    Some(token) => {
                        sidecar_args.extend([
                            "--ca-address".into(),
                            format!("https://{cip}:{CONTROLLER_SECURE_PORT}"),
                            "--ca-root".into(),
                            root.display().to_string(),
                            "--token-file".into(),
                            token.display().to_string(),
                        ]);
                        format!("https://{cip}:{CONTROLLER_SECURE_PORT}")
                    }
                    None => format!("http://{cip}:{CONTROLLER_PORT}"),
                };
            sidecar_args.extend([
                "--controller".into(),
                controller_url,
                "--ip".into(),
                d.ip.to_string(),
                "--id".into(),
                format!("{name}.{}", w.namespace),
                "--workload".into(),
                format!("{}-{}", w.service, d.version),
                "--namespace".into(),
                w.namespace.clone(),
                "--service-account".into(),
                w.service_account().into(),
                "--label".into(),
                format!("app={}", w.service),
                "--label".into(),
                format!("version={}", d.version),
            ]);
            if opts.kube.is_some() {
                // With a non-loopback address the admin listener binds 127.0.0.1 (as in a pod's
                // own network namespace); here every sidecar shares one host.
                sidecar_args.extend(["--admin-port".into(), "0".into()]);
            }
            sidecar_args.extend(opts.sidecar_args.iter().cloned());
            let sidecar = Proc::spawn(
                format!("sluice-proxy {name}"),
                &proxy_bin,
                &sidecar_args,
                &log_dir.join(format!("proxy-{name}.{}.log", w.namespace)),
            )?;
            instances.push(Instance {
                service: w.service.clone(),
                namespace: w.namespace.clone(),
                version: d.version.to_string(),
                index: d.index,
                port: w.port,
                protocol: w.protocol,
                ip: d.ip,
                echo_args,
                echo: Some(echo),
                sidecar_args,
                sidecar,
            });
        }
        let mut mesh = Self {
            block,
            controller: Some(controller),
            controller_bin: controller_bin.clone(),
            controller_args,
            instances,
            store,
            config_dir,
            log_dir,
            echo_bin,
            proxy_bin,
            opts,
        };
        mesh.wait_started().await?;
        Ok(mesh)
    }

    /// Where the processes' logs and the config dir are.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The controller's `/debug/syncz` and `/metrics` address.
    pub fn controller_metrics_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.block.ip(1)), CONTROLLER_METRICS_PORT)
    }

    /// The controller's config stream address.
    pub fn controller_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.block.ip(1)), CONTROLLER_PORT)
    }

    /// Every instance, in workload order, versions sorted, indexes ascending.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Indexes into [`Self::instances`] of a service (`name` or `name.namespace`), optionally
    /// one version and some instance indexes.
    pub fn select(
        &self,
        service: &str,
        version: Option<&str>,
        indexes: Option<&[u32]>,
    ) -> Vec<usize> {
        let (name, ns) = match service.split_once('.') {
            Some((n, ns)) => (n, Some(ns)),
            None => (service, None),
        };
        self.instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.service == name && ns.is_none_or(|ns| i.namespace == ns))
            .filter(|(_, i)| version.is_none_or(|v| i.version == v))
            .filter(|(_, i)| indexes.is_none_or(|ix| ix.contains(&i.index)))
            .map(|(n, _)| n)
            .collect()
    }

    /// Applies documents (`kubectl apply` semantics) and waits for convergence.
    pub async fn apply(&mut self, yaml: &str) -> Result<(), MeshError> {
        self.store.apply(yaml)?;
        let before = self.revision().await;
        match &self.opts.kube {
            Some(k) => k.apply(yaml).await?,
            None => self.write_store()?,
        }
        self.wait_converged(before).await
    }

    /// Deletes documents and waits for convergence.
    pub async fn delete(&mut self, yaml: &str) -> Result<(), MeshError> {
        self.store.delete(yaml)?;
        let before = self.revision().await;
        match &self.opts.kube {
            Some(k) => k.delete(yaml).await?,
            None => self.write_store()?,
        }
        self.wait_converged(before).await
    }

    async fn revision(&self) -> Option<u64> {
        sync::fetch(self.controller_metrics_addr())
            .await
            .ok()
            .map(|s| s.revision)
    }

    fn write_store(&self) -> Result<(), MeshError> {
        store::write_atomic(&self.config_dir, "10-config.yaml", &self.store.render()?)
    }

    /// Waits until the controller's revision grew past `before` and every proxy acked it; if the
    /// revision does not grow within the grace period the change is taken as a no-op.
    pub async fn wait_converged(&mut self, before: Option<u64>) -> Result<(), MeshError> {
        let start = Instant::now();
        let ids: Vec<String> = self.instances.iter().map(Instance::id).collect();
        let mut last: Option<Syncz> = None;
        let mut last_err: Option<String>;
        loop {
            self.check_alive()?;
            match sync::fetch(self.controller_metrics_addr()).await {
                Ok(s) => {
                    // A change of several objects can be published in two
                    // revisions (the first object at once, the rest after a
                    // quiet period): not converged while more is pending.
                    let grew = before.is_none_or(|b| s.revision > b);
                    if grew && !s.pending && s.lagging(&ids).is_empty() {
                        return Ok(());
                    }
                    if !grew && !s.pending && start.elapsed() >= self.opts.change_grace {
                        return Ok(());
                    }
                    last = Some(s);
                    last_err = None;
                }
                Err(e) => last_err = Some(e),
            }
            if start.elapsed() >= self.opts.converge_timeout {
                let state = last.map_or_else(
                    || "no answer from the controller".to_string(),
                    |s| {
                        format!(
                            "revision {} (before the change: {}), not acked by: [{}]",
                            s.revision,
                            before.map_or_else(|| "unknown".into(), |b| b.to_string()),
                            s.lagging(&ids).join(", ")
                        )
                    },
                );
                let stopped = last_err
                    .map(|e| format!("; /debug/syncz stopped answering: {e}"))
                    .unwrap_or_default();
                return Err(MeshError::Timeout(format!(
                    "config not converged within {:?}: last seen {state}{stopped}",
                    self.opts.converge_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn check_alive(&mut self) -> Result<(), MeshError> {
        if let Some(why) = self.controller.as_mut().and_then(Proc::exited) {
            return Err(MeshError::Died(why));
        }
        for i in &mut self.instances {
            if let Some(why) = i.sidecar.exited() {
                return Err(MeshError::Died(why));
            }
        }
        Ok(())
    }

    async fn wait_started(&mut self) -> Result<(), MeshError> {
        let deadline = Instant::now() + self.opts.start_timeout;
        for n in 0..self.instances.len() {
            loop {
                self.check_alive()?;
                let i = &mut self.instances[n];
                if let Some(echo) = &mut i.echo
                    && let Some(why) = echo.exited()
                {
                    return Err(MeshError::Died(why));
                }
                let app_up = tokio::net::TcpStream::connect(i.app_addr()).await.is_ok();
                let ready = crate::client::http_get(i.ready_addr(), "/healthz/ready")
                    .await
                    .is_ok_and(|r| r.status == 200);
                if app_up && ready {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(MeshError::Timeout(format!(
                        "{} not ready within {:?} (echo listening: {app_up}, sidecar /healthz/ready 200: {ready}); see {}",
                        i.id(),
                        self.opts.start_timeout,
                        self.log_dir.display()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let saved = self.opts.converge_timeout;
        self.opts.converge_timeout = left.max(Duration::from_secs(1));
        let result = self.wait_converged(None).await;
        self.opts.converge_timeout = saved;
        result
    }

    /// Stops the echo app of instance `n` (its sidecar keeps running).
    pub async fn kill_echo(&mut self, n: usize) {
        if let Some(echo) = self.instances.get_mut(n).and_then(|i| i.echo.take()) {
            echo.kill().await;
        }
    }

    /// Starts the echo app of instance `n` again and waits until it listens.
    pub async fn start_echo(&mut self, n: usize) -> Result<(), MeshError> {
        let Some(i) = self.instances.get_mut(n) else {
            return Ok(());
        };
        if i.echo.is_some() {
            return Ok(());
        }
        let name = i.workload_name();
        let log = self
            .log_dir
            .join(format!("echo-{name}.{}.log", i.namespace));
        i.echo = Some(Proc::spawn(
            format!("sluice-echo {name}"),
            &self.echo_bin,
            &i.echo_args,
            &log,
        )?);
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(i.app_addr()).await.is_err() {
            if Instant::now() >= deadline {
                return Err(MeshError::Timeout(format!(
                    "{name} echo did not listen again within 5 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Kills instance `n`'s sidecar as a crash would (SIGKILL), starts it again with the
    /// same flags and waits until it is ready (certificate and config received) again.
    pub async fn restart_sidecar(&mut self, n: usize) -> Result<(), MeshError> {
        let Some(i) = self.instances.get_mut(n) else {
            return Ok(());
        };
        let name = i.workload_name();
        let log = self
            .log_dir
            .join(format!("proxy-{name}.{}.restarted.log", i.namespace));
        // The old one must be gone first: the new one binds the same addresses.
        i.sidecar.stop().await;
        i.sidecar = Proc::spawn(
            format!("sluice-proxy {name}"),
            &self.proxy_bin,
            &i.sidecar_args,
            &log,
        )?;
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            if let Some(why) = self.instances[n].sidecar.exited() {
                return Err(MeshError::Died(why));
            }
            let ready = crate::client::http_get(self.instances[n].ready_addr(), "/healthz/ready")
                .await
                .is_ok_and(|r| r.status == 200);
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(MeshError::Timeout(format!(
                    "{name} sidecar not ready within {:?} after a restart; see {}",
                    self.opts.start_timeout,
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets how instance `n`'s echo answers: a forced status (`None` = normal) and a delay.
    pub async fn behave(
        &self,
        n: usize,
        status: Option<u16>,
        delay_ms: u64,
    ) -> Result<(), MeshError> {
        self.behave_with(n, status, None, delay_ms).await
    }

    /// Like [`LocalMesh::behave`], also forcing the gRPC status of gRPC answers.
    pub async fn behave_with(
        &self,
        n: usize,
        status: Option<u16>,
        grpc_status: Option<u32>,
        delay_ms: u64,
    ) -> Result<(), MeshError> {
        let Some(i) = self.instances.get(n) else {
            return Ok(());
        };
        let body =
            serde_json::json!({"status": status, "grpcStatus": grpc_status, "delayMs": delay_ms})
                .to_string();
        let err = |why: String| MeshError::Behave {
            instance: i.id(),
            why,
        };
        let resp = crate::client::http_post_json(i.control_addr(), "/behave", body)
            .await
            .map_err(|e| err(e.to_string()))?;
        if resp.status != 200 {
            return Err(err(format!("status {}", resp.status)));
        }
        Ok(())
    }
}

/// Assigns each instance its address: controller `.1`, instances `.2` upwards.
fn instance_docs<'a>(
    workloads: &'a [Workload],
    block: &AddrBlock,
) -> Result<Vec<InstanceDoc<'a>>, MeshError> {
    let mut out = Vec::new();
    for w in workloads {
        for (version, &count) in &w.versions {
            for index in 0..count {
                let host = u8::try_from(out.len() + 2)
                    .ok()
                    .filter(|h| *h < 255)
                    .ok_or_else(|| MeshError::Config("more than 252 instances".into()))?;
                out.push(InstanceDoc {
                    workload: w,
                    version,
                    index,
                    ip: block.ip(host),
                });
            }
        }
    }
    Ok(out)
}
