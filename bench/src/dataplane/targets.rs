//! Starts the backend (fortio server) and each target in front of it: nothing (direct), a
//! Sluice sidecar pair with its controller, an HAProxy pair, an nginx pair. Every child is
//! pinned with `taskset` and killed when dropped.
use anyhow::{Context as _, bail};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Where the benchmark's loopback addresses are.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    /// `127.A.B.0/24` base octets.
    pub a: u8,
    /// Second octet pair.
    pub b: u8,
}

impl Addrs {
    /// `127.A.B.host`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.a, self.b, host)
    }
    /// The controller.
    pub fn controller(&self) -> Ipv4Addr {
        self.ip(1)
    }
    /// The Sluice client sidecar.
    pub fn sluice_client(&self) -> Ipv4Addr {
        self.ip(2)
    }
    /// The backend workload: fortio server and the Sluice server sidecar.
    pub fn server(&self) -> Ipv4Addr {
        self.ip(3)
    }
}

/// Service name of the backend in the mesh.
pub const SERVICE_HOST: &str = "fortio.bench.svc.cluster.local";
/// fortio server's HTTP port.
pub const HTTP_PORT: u16 = 8080;
/// fortio server's gRPC port.
pub const GRPC_PORT: u16 = 8079;
/// Peers' h2c front port.
pub const H2_PORT: u16 = 8082;

/// A child process pinned to a core.
pub struct Pinned {
    /// What it is.
    pub label: String,
    /// Its pid (taskset execs the program, so this is the program's).
    pub pid: u32,
    child: Child,
}

impl Pinned {
    /// Starts `taskset -c core bin args`, output to `log`.
    pub fn spawn(
        label: &str,
        core: u32,
        bin: &Path,
        args: &[String],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let file =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let pid = child.id().context("child has no pid")?;
        Ok(Self {
            label: label.into(),
            pid,
            child,
        })
    }

    /// Fails when the process has exited.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status}", self.label);
        }
        Ok(())
    }

    /// Kills and reaps.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Waits until `addr` accepts TCP connections.
pub async fn wait_listening(addr: SocketAddr, procs: &mut [Pinned]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for p in procs.iter_mut() {
            p.check()?;
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} not listening within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fortio echo server on the backend address.
pub async fn fortio_server(
    fortio: &Path,
    addrs: Addrs,
    core: u32,
    dir: &Path,
) -> anyhow::Result<Pinned> {
    let s = addrs.server();
    let args: Vec<String> = [
        "server",
        "-http-port",
        &format!("{s}:{HTTP_PORT}"),
        "-grpc-port",
        &format!("{s}:{GRPC_PORT}"),
        "-redirect-port",
        "disabled",
        "-h2",
        "-loglevel",
        "warning",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    let mut p = vec![Pinned::spawn(
        "fortio server",
        core,
        fortio,
        &args,
        &dir.join("fortio-server.log"),
    )?];
    wait_listening(SocketAddr::new(s.into(), HTTP_PORT), &mut p).await?;
    wait_listening(SocketAddr::new(s.into(), GRPC_PORT), &mut p).await?;
    p.pop().context("fortio server")
}

/// The mesh config: the backend as a ServiceEntry with one WorkloadEntry (mesh mTLS label, as
/// the conformance mesh writes it), with HTTP and gRPC ports.
pub fn mesh_yaml(addrs: Addrs) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: fortio, namespace: bench}}\nspec:\n  hosts: [{SERVICE_HOST}]\n  \
         location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  \
         - {{number: {HTTP_PORT}, name: http-{HTTP_PORT}, protocol: HTTP, targetPort: {HTTP_PORT}}}\n  \
         - {{number: {GRPC_PORT}, name: grpc-{GRPC_PORT}, protocol: GRPC, targetPort: {GRPC_PORT}}}\n  \
         workloadSelector: {{labels: {{app: fortio}}}}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
         metadata: {{name: fortio-v1-0, namespace: bench}}\nspec:\n  address: \"{ip}\"\n  \
         labels: {{app: fortio, version: v1, security.istio.io/tlsMode: istio, \
         service.istio.io/workload-name: fortio-v1}}\n  serviceAccount: fortio\n",
        ip = addrs.server()
    )
}

/// Binaries and directories a target needs.
pub struct Env {
    /// Directory with `sluice-controller` and `sluice-proxy`.
    pub bin_dir: PathBuf,
    /// Scratch directory (configs, logs).
    pub dir: PathBuf,
    /// Core the proxies run on.
    pub proxy_core: u32,
    /// Core the controller runs on (off the measured proxy core).
    pub other_core: u32,
}

fn sidecar_args(addrs: Addrs, ip: Ipv4Addr, name: &str, app: &str) -> Vec<String> {
    [
        "--controller".to_string(),
        format!("http://{}:15010", addrs.controller()),
        "--ip".into(),
        ip.to_string(),
        "--id".into(),
        format!("{name}.bench"),
        "--workload".into(),
        app.to_string(),
        "--namespace".into(),
        "bench".into(),
        "--service-account".into(),
        app.to_string(),
        "--label".into(),
        format!("app={app}"),
        "--label".into(),
        "version=v1".into(),
    ]
    .to_vec()
}

/// A bootstrap token for `bench/<account>`, from the controller binary.
fn token(env: &Env, cfg: &std::path::Path, account: &str) -> anyhow::Result<std::path::PathBuf> {
    let out = std::process::Command::new(env.bin_dir.join("sluice-controller"))
        .arg("--config-dir")
        .arg(cfg)
        .arg("--print-token")
        .arg(format!("bench/{account}"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "--print-token bench/{account}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = env.dir.join(format!("{account}.token"));
    std::fs::write(&path, String::from_utf8_lossy(&out.stdout).trim())?;
    Ok(path)
}

/// Controller + client sidecar + server sidecar; returns (controller, [client, server]).
/// With `mtls` the sidecars get workload certificates from the controller and
/// talk mutual TLS (auto mTLS); without, they have no certificate and talk plaintext.
pub async fn sluice(env: &Env, addrs: Addrs, mtls: bool) -> anyhow::Result<(Pinned, Vec<Pinned>)> {
    let cfg = env.dir.join(if mtls {
        "sluice-config"
    } else {
        "sluice-plain-config"
    });
    std::fs::create_dir_all(&cfg)?;
    let tokens = if mtls {
        Some((token(env, &cfg, "loadgen")?, token(env, &cfg, "fortio")?))
    } else {
        None
    };
    std::fs::write(cfg.join("00-mesh.yaml"), mesh_yaml(addrs))?;
    let c = addrs.controller();
    let controller = Pinned::spawn(
        "sluice-controller",
        env.other_core,
        &env.bin_dir.join("sluice-controller"),
        &[
            "--config-dir".into(),
            cfg.display().to_string(),
            "--listen".into(),
            format!("{c}:15010"),
            "--metrics-listen".into(),
            format!("{c}:15014"),
        ],
        &env.dir.join("sluice-controller.log"),
    )?;
    let root = cfg.join(".sluice/ca/root-cert.pem");
    let mut client_args = sidecar_args(addrs, addrs.sluice_client(), "loadgen-v1-0", "loadgen");
    let mut server_args = sidecar_args(addrs, addrs.server(), "fortio-v1-0", "fortio");
    if let Some((client_token, server_token)) = &tokens {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !root.is_file() {
            if Instant::now() > deadline {
                bail!("the controller did not create {}", root.display());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (args, token) in [
            (&mut client_args, client_token),
            (&mut server_args, server_token),
        ] {
            args.extend([
                "--ca-address".into(),
                format!("https://{c}:15012"),
                "--ca-root".into(),
                root.display().to_string(),
                "--token-file".into(),
                token.display().to_string(),
            ]);
        }
    }
    let proxy = env.bin_dir.join("sluice-proxy");
    let client = Pinned::spawn(
        "sluice-proxy client",
        env.proxy_core,
        &proxy,
        &client_args,
        &env.dir.join("sluice-proxy-client.log"),
    )?;
    let server = Pinned::spawn(
        "sluice-proxy server",
        env.proxy_core,
        &proxy,
        &server_args,
        &env.dir.join("sluice-proxy-server.log"),
    )?;
    let mut procs = vec![client, server];
    let deadline = Instant::now() + Duration::from_secs(30);
    for ip in [addrs.sluice_client(), addrs.server()] {
        loop {
            for p in procs.iter_mut() {
                p.check()?;
            }
            let ready = sluice_conformance::client::http_get(
                SocketAddr::new(ip.into(), 15021),
                "/healthz/ready",
            )
            .await
            .is_ok_and(|r| r.status == 200);
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "sidecar on {ip} not ready within 30 s; see {}",
                    env.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((controller, procs))
}

/// A self-signed certificate for the TLS hop of the peer pairs: (cert, key, cert+key PEM).
pub fn self_signed(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let (cert, key, pem) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("both.pem"),
    );
    if !pem.exists() {
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .args(["-subj", "/CN=fortio.bench.svc.cluster.local", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("run openssl")?;
        if !out.status.success() {
            bail!(
                "openssl req failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let both = std::fs::read_to_string(&cert)? + &std::fs::read_to_string(&key)?;
        std::fs::write(&pem, both)?;
    }
    Ok((cert, key, pem))
}

/// A peer pair (`haproxy` or `nginx`): client-side proxy on `client_ip`, server-side on
/// `server_ip`, the latter forwarding to the fortio server; `tls` puts TLS 1.3 on the hop
/// between the two.
pub async fn peer_pair(
    env: &Env,
    addrs: Addrs,
    kind: &str,
    (client_ip, server_ip): (Ipv4Addr, Ipv4Addr),
    template: &str,
    tls: bool,
) -> anyhow::Result<Vec<Pinned>> {
    let (cert, key, pem) = self_signed(&env.dir)?;
    let mut procs = Vec::new();
    let haproxy = kind == "haproxy";
    for (role, listen, upstream, h2_up) in [
        ("server", server_ip, addrs.server(), HTTP_PORT),
        (
            "client",
            client_ip,
            server_ip,
            if haproxy { H2_PORT } else { HTTP_PORT },
        ),
    ] {
        let server_tls = tls && role == "server";
        let client_tls = tls && role == "client";
        let run_dir = env
            .dir
            .join(format!("{kind}{}-{role}", if tls { "-tls" } else { "" }));
        std::fs::create_dir_all(&run_dir)?;
        let text = template
            .replace("{{LISTEN_IP}}", &listen.to_string())
            .replace("{{UPSTREAM_IP}}", &upstream.to_string())
            .replace("{{H2_UPSTREAM_PORT}}", &h2_up.to_string())
            .replace("{{RUN_DIR}}", &run_dir.display().to_string())
            .replace(
                "{{BIND_TLS}}",
                &if server_tls {
                    format!("ssl crt {}", pem.display())
                } else {
                    String::new()
                },
            )
            .replace(
                "{{UP_TLS}}",
                if client_tls { "ssl verify none" } else { "" },
            )
            .replace("{{LISTEN_TLS}}", if server_tls { "ssl" } else { "" })
            .replace("{{UP_SCHEME}}", if client_tls { "https" } else { "http" })
            .replace("{{GRPC_SCHEME}}", if client_tls { "grpcs" } else { "grpc" })
            .replace("{{CERT}}", &cert.display().to_string())
            .replace("{{KEY}}", &key.display().to_string());
        let cfg = run_dir.join(if haproxy { "haproxy.cfg" } else { "nginx.conf" });
        std::fs::write(&cfg, text)?;
        let (bin, args): (&str, Vec<String>) = if haproxy {
            (
                "haproxy",
                vec!["-db".into(), "-f".into(), cfg.display().to_string()],
            )
        } else {
            let err = run_dir.join("error.log").display().to_string();
            (
                "nginx",
                vec!["-c".into(), cfg.display().to_string(), "-e".into(), err],
            )
        };
        let bin = which(bin)?;
        let label = format!("{kind} {role}");
        procs.push(Pinned::spawn(
            &label,
            env.proxy_core,
            &bin,
            &args,
            &run_dir.join("stdout.log"),
        )?);
        wait_listening(SocketAddr::new(listen.into(), HTTP_PORT), &mut procs).await?;
    }
    // Client first, server second, as for Sluice.
    procs.reverse();
    Ok(procs)
}

/// Finds an executable on `$PATH` (and the sbin directories Debian installs servers in).
pub fn which(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} not installed (bench/run installs it with apt-get)"))
}
