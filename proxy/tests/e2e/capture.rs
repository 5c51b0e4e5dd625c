//! Transparent capture in real network namespaces: `sluice-proxy init`
//! programs iptables in a client and a server namespace, each runs the real
//! sidecar as uid 1337, and an unmodified client (root, plain HTTP to the
//! server's address) is carried client sidecar → server sidecar → app.
//!
//! Needs root and iproute2 + iptables; without them the test FAILS (CI runs
//! as root). The app and the client run as this test binary in helper mode
//! (`helper_*` below, ignored unless started by the test with their env var).

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sluice_api::config as pb;
use tokio::net::TcpStream;

use crate::harness::{Controller, Reply, cluster, endpoint, forward, get, send, vhost};

/// Env var that makes `helper_app` serve HTTP on its value.
const APP_ENV: &str = "SLUICE_CAPTURE_APP";
/// Env var that makes `helper_get` send one GET to its value.
const GET_ENV: &str = "SLUICE_CAPTURE_GET";
/// Env var that makes `helper_tcp` send a line of non-HTTP bytes to its value.
const TCP_ENV: &str = "SLUICE_CAPTURE_TCP";
/// Marker of `helper_get`'s result line.
const RESULT: &str = "CAPTURE-RESULT";
const APP_PORT: u16 = 8080;
const PROXY_UID: &str = "1337";

/// Two namespaces (client `c`, server `s`) joined by a veth pair on
/// 10.<o>.1.0/24, each with a veth to the root namespace (10.<o>.2.0/24 for
/// the client, 10.<o>.3.0/24 for the server) where the test's controllers
/// listen. Dropping it kills the processes it started and deletes everything.
struct Topology {
    tag: String,
    octet: u32,
    children: Vec<Child>,
    namespaces: Vec<String>,
    root_links: Vec<String>,
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Topology {
    /// No namespaces yet; the tag is unique per test in this process.
    fn empty() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Topology {
            tag: format!("{}{n}", pid % 10_000),
            octet: 100 + (pid * 7 + n) % 150,
            children: Vec::new(),
            namespaces: Vec::new(),
            root_links: Vec::new(),
        }
    }

    /// A namespace named after `side`, with lo up.
    fn add_ns(&mut self, side: &str) {
        let ns = self.ns(side);
        let out = run(&["ip", "netns", "add", &ns]);
        assert!(
            out.status.success(),
            "capture tests need root and `ip netns` (apt-get install -y iproute2 iptables); \
             `ip netns add {ns}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        self.namespaces.push(ns.clone());
        must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    }

    fn create() -> Self {
        let mut t = Topology::empty();
        t.add_ns("c");
        t.add_ns("s");
        let (c, s) = (t.ns("c"), t.ns("s"));
        t.veth(("cs", &c, &t.ip(1, 1)), ("sc", &s, &t.ip(1, 2)));
        t.veth(("rc", "", &t.ip(2, 1)), ("kc", &c, &t.ip(2, 2)));
        t.veth(("rs", "", &t.ip(3, 1)), ("ks", &s, &t.ip(3, 2)));
        t
    }

    fn ns(&self, side: &str) -> String {
        format!("sluice-cap-{}-{side}", self.tag)
    }

    fn ip(&self, subnet: u32, host: u32) -> String {
        format!("10.{}.{subnet}.{host}", self.octet)
    }

    /// A veth pair; an empty namespace name keeps that end in the root namespace.
    fn veth(&mut self, a: (&str, &str, &str), b: (&str, &str, &str)) {
        let name = |suffix: &str| format!("slc{}{suffix}", self.tag);
        let (an, bn) = (name(a.0), name(b.0));
        must(&[
            "ip", "link", "add", &an, "type", "veth", "peer", "name", &bn,
        ]);
        for (dev, (_, ns, addr)) in [(&an, a), (&bn, b)] {
            if ns.is_empty() {
                self.root_links.push(dev.clone());
                must(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev]);
                must(&["ip", "link", "set", dev, "up"]);
            } else {
                must(&["ip", "link", "set", dev, "netns", ns]);
                must(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    dev,
                ]);
                must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
        }
    }

    /// Runs `args` inside namespace `side`, asserting success; its stdout.
    fn exec(&self, side: &str, args: &[&str]) -> String {
        let ns = self.ns(side);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend(args);
        must(&full)
    }

    /// Starts `args` inside namespace `side` (stopped when the topology drops).
    fn spawn(&mut self, side: &str, args: &[&str], env: &[(&str, &str)]) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(side)])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn in namespace");
        self.children.push(child);
    }

    /// Starts the sidecar in `side` as the proxy uid, against `controller`.
    fn start_proxy(&mut self, side: &str, pod_ip: &str, controller: SocketAddr, workload: &str) {
        let id = format!("{workload}-0.default");
        let ctl = format!("http://{controller}");
        let app = format!("app={workload}");
        self.spawn(
            side,
            &[
                "setpriv",
                "--reuid",
                PROXY_UID,
                "--regid",
                PROXY_UID,
                "--clear-groups",
                env!("CARGO_BIN_EXE_sluice-proxy"),
                "--controller",
                &ctl,
                // As injection runs it: the pod's address is its identity; REDIRECT
                // from OUTPUT targets 127.0.0.1 and from PREROUTING the interface
                // address, so the listeners bind every address (as Envoy does);
                // the app is dialled over loopback, which capture leaves alone.
                "--ip",
                pod_ip,
                "--bind-ip",
                "0.0.0.0",
                "--app-ip",
                "127.0.0.1",
                "--id",
                &id,
                "--workload",
                workload,
                "--service-account",
                workload,
                "--label",
                &app,
                "--label",
                "version=v1",
            ],
            &[("RUST_LOG", "warn")],
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        // Deleting a namespace deletes its veth ends and so their root peers;
        // this catches a pair whose far end never moved.
        for link in &self.root_links {
            let _ = Command::new("ip")
                .args(["link", "del", link])
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn wait_listening(addr: SocketAddr, what: &str) {
    for _ in 0..400 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} at {addr} did not come up");
}

/// Sums every series of `name` whose labels include all of `labels`.
async fn metric(stats: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let resp = send(stats, get("/stats/prometheus", "stats"))
        .await
        .expect("scrape");
    resp.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let ok = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// `sluice-proxy init` with the injector's default argv.
fn init_args() -> [&'static str; 18] {
    [
        env!("CARGO_BIN_EXE_sluice-proxy"),
        "init",
        "--proxy-uid",
        PROXY_UID,
        "--outbound-port",
        "15001",
        "--inbound-port",
        "15006",
        "--include-outbound-cidrs",
        "*",
        "--exclude-outbound-cidrs",
        "",
        "--include-inbound-ports",
        "*",
        "--exclude-inbound-ports",
        "15021,15090",
        "--exclude-outbound-ports",
        "",
    ]
}

fn nat_rules(t: &Topology, side: &str) -> String {
    t.exec(side, &["iptables", "-t", "nat", "-S"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_plain_client_reaches_app_through_both_sidecars() {
    let mut t = Topology::create();
    let server_ip = t.ip(1, 2);
    let app_addr: SocketAddr = format!("{server_ip}:{APP_PORT}").parse().unwrap();
    let exe = std::env::current_exe().expect("test binary path");
    let exe = exe.to_str().expect("utf-8 path");

    // The app, in the server namespace, on every address.
    let bind_all = format!("0.0.0.0:{APP_PORT}");
    t.spawn(
        "s",
        &[exe, "capture::helper_app", "--exact", "--ignored"],
        &[(APP_ENV, &bind_all)],
    );
    let app_via_root: SocketAddr = format!("{}:{APP_PORT}", t.ip(3, 2)).parse().unwrap();
    wait_listening(app_via_root, "app").await;

    let init = init_args();
    for side in ["c", "s"] {
        t.exec(side, &init);
    }
    // Init containers are retried: a second run replaces, not duplicates.
    t.exec("c", &init);
    let rules = nat_rules(&t, "c");
    assert_eq!(
        rules.matches("-A OUTPUT -p tcp -j SLUICE_OUTPUT").count(),
        1,
        "{rules}"
    );
    assert_eq!(
        rules.matches("-j REDIRECT --to-ports 15001").count(),
        1,
        "{rules}"
    );
    assert!(nat_rules(&t, "s").contains("-A PREROUTING -p tcp -j SLUICE_INBOUND"));

    // Controllers in the root namespace; the sidecars' own connections to
    // them (uid 1337) must bypass capture, or no config would arrive.
    let client_ctl = Controller::start(format!("{}:15010", t.ip(2, 1)).parse().unwrap()).await;
    let server_ctl = Controller::start(format!("{}:15010", t.ip(3, 1)).parse().unwrap()).await;
    let (client_ip, server_pod_ip) = (t.ip(1, 1), t.ip(1, 2));
    t.start_proxy("c", &client_ip, client_ctl.addr, "client");
    t.start_proxy("s", &server_pod_ip, server_ctl.addr, "server");
    let client_stats: SocketAddr = format!("{}:15090", t.ip(2, 2)).parse().unwrap();
    let server_stats: SocketAddr = format!("{}:15090", t.ip(3, 2)).parse().unwrap();
    wait_listening(client_stats, "client sidecar").await;
    wait_listening(server_stats, "server sidecar").await;

    let mut vh = vhost(
        "server",
        u32::from(APP_PORT),
        vec![forward(vec![], &[(&server_cluster(), 100)])],
    );
    vh.domains.push(server_ip.clone());
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vh],
        clusters: vec![cluster(
            "server",
            u32::from(APP_PORT),
            "",
            vec![endpoint(app_addr, "server-v1", "v1")],
        )],
        ..Default::default()
    };
    client_ctl.publish("1", config);
    server_ctl.publish("1", pb::ProxyConfig::default());
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);

    // An unmodified client (root, not the proxy uid) in the client namespace.
    let target = app_addr.to_string();
    assert_eq!(client_get(&t, exe, &target).await, "200 capture-app");

    // The request passed through both sidecars exactly once: captured
    // outbound on the client, captured inbound on the server, no loop.
    let source = [("reporter", "source"), ("response_code", "200")];
    let destination = [("reporter", "destination"), ("response_code", "200")];
    assert_eq!(
        metric(client_stats, "istio_requests_total", &source).await,
        1.0
    );
    assert_eq!(
        metric(server_stats, "istio_requests_total", &destination).await,
        1.0
    );
    assert_eq!(
        metric(client_stats, "istio_requests_total", &destination).await,
        0.0
    );

    // `traffic.sidecar.istio.io/excludeInterfaces`: the client's init runs
    // again excluding the pod's interface, so the next request leaves
    // through it uncaptured, straight to the server (whose sidecar still
    // captures it inbound, as plaintext is permitted there).
    let pod_link = format!("slc{}cs", t.tag);
    let mut excluding = init.to_vec();
    excluding.extend(["--exclude-interfaces", pod_link.as_str()]);
    t.exec("c", &excluding);
    let rules = nat_rules(&t, "c");
    assert!(
        rules.contains(&format!("-A SLUICE_OUTPUT -o {pod_link} -j RETURN")),
        "{rules}"
    );
    assert_eq!(client_get(&t, exe, &target).await, "200 capture-app");
    assert_eq!(
        metric(client_stats, "istio_requests_total", &source).await,
        1.0,
        "the client's sidecar saw the request on the excluded interface"
    );
    assert_eq!(
        metric(server_stats, "istio_requests_total", &destination).await,
        2.0
    );
}

/// Runs `helper_get` against `target` as an unmodified client (root, not the
/// proxy uid) in the client namespace; its result (`<status> <x-backend>`).
async fn client_get(t: &Topology, exe: &str, target: &str) -> String {
    client_run(t, exe, ("capture::helper_get", GET_ENV), target).await
}

/// Runs a helper (`(test name, env var)`) against `target` in the client
/// namespace as an unmodified client; its result line.
async fn client_run(t: &Topology, exe: &str, helper: (&str, &str), target: &str) -> String {
    let exe = exe.to_owned();
    let ns = t.ns("c");
    let target = target.to_owned();
    let (name, env) = (helper.0.to_owned(), helper.1.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ip")
            .args(["netns", "exec", &ns, &exe])
            .args([name.as_str(), "--exact", "--ignored", "--nocapture"])
            .env(env, &target)
            .output()
            .expect("run client helper")
    })
    .await
    .expect("client helper task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .unwrap_or_else(|| {
            panic!(
                "client helper printed no result: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .trim()
        .to_owned()
}

/// Istio's `outboundTrafficPolicy`: a captured request or connection to an
/// address no service covers (here an app without a sidecar, absent from the
/// client's config) goes to that address as it is under `ALLOW_ANY` (the
/// default), and gets a 502 / a closed connection under `REGISTRY_ONLY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_unknown_destinations_pass_through_unless_registry_only() {
    let mut t = Topology::create();
    let server_ip = t.ip(1, 2);
    let exe = std::env::current_exe().expect("test binary path");
    let exe = exe.to_str().expect("utf-8 path");
    let bind_all = format!("0.0.0.0:{APP_PORT}");
    t.spawn(
        "s",
        &[exe, "capture::helper_app", "--exact", "--ignored"],
        &[(APP_ENV, &bind_all)],
    );
    let app_via_root: SocketAddr = format!("{}:{APP_PORT}", t.ip(3, 2)).parse().unwrap();
    wait_listening(app_via_root, "app").await;
    // Only the client has a sidecar.
    t.exec("c", &init_args());
    let ctl = Controller::start(format!("{}:15010", t.ip(2, 1)).parse().unwrap()).await;
    t.start_proxy("c", &t.ip(1, 1), ctl.addr, "client");
    let stats: SocketAddr = format!("{}:15090", t.ip(2, 2)).parse().unwrap();
    wait_listening(stats, "client sidecar").await;
    ctl.publish("1", pb::ProxyConfig::default());
    assert_eq!(ctl.reply("1").await, Reply::Ack);

    let target = format!("{server_ip}:{APP_PORT}");
    let tcp = ("capture::helper_tcp", TCP_ENV);
    assert_eq!(client_get(&t, exe, &target).await, "200 capture-app");
    // Non-HTTP bytes are relayed too: the app's HTTP server answers them.
    assert_eq!(
        client_run(&t, exe, tcp, &target).await,
        "HTTP/1.1 400 Bad Request"
    );
    let passed = [
        ("reporter", "source"),
        ("destination_service_name", "PassthroughCluster"),
    ];
    assert_eq!(metric(stats, "istio_requests_total", &passed).await, 1.0);
    assert_eq!(
        metric(stats, "istio_tcp_connections_opened_total", &passed).await,
        1.0
    );
    let outcome = |o| [("outcome", o)];
    assert_eq!(
        metric(
            stats,
            "sluice_outbound_passthrough_total",
            &outcome("passed")
        )
        .await,
        2.0
    );

    let registry_only = pb::ProxyConfig {
        outbound: Some(pb::Outbound {
            traffic_policy: pb::OutboundTrafficPolicy::RegistryOnly as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    ctl.publish("2", registry_only);
    assert_eq!(ctl.reply("2").await, Reply::Ack);
    let got = client_get(&t, exe, &target).await;
    assert!(got.starts_with("502"), "{got}");
    assert_eq!(client_run(&t, exe, tcp, &target).await, "closed");
    let refused = [("destination_service_name", "BlackHoleCluster")];
    assert_eq!(metric(stats, "istio_requests_total", &refused).await, 1.0);
    assert_eq!(
        metric(stats, "istio_tcp_connections_closed_total", &refused).await,
        1.0
    );
    assert_eq!(
        metric(
            stats,
            "sluice_outbound_passthrough_total",
            &outcome("refused")
        )
        .await,
        2.0
    );
}

#[test]
fn capture_without_iptables_restore_installs_same_rules_one_by_one() {
    let mut t = Topology::empty();
    t.add_ns("restore");
    t.add_ns("plain");
    let init = init_args();
    t.exec("restore", &init);
    // A PATH holding only `iptables`: no restore tool, no ip6tables.
    let iptables = must(&["sh", "-c", "command -v iptables"]);
    let dir = std::env::temp_dir().join(format!("sluice-cap-path-{}", t.tag));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("iptables");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(iptables.trim(), &link).unwrap();
    let path = format!("PATH={}", dir.display());
    let mut plain = vec!["env", &path];
    plain.extend(init);
    // Twice: the one-by-one path must be idempotent too.
    t.exec("plain", &plain);
    t.exec("plain", &plain);
    let _ = std::fs::remove_dir_all(&dir);
    let (want, got) = (nat_rules(&t, "restore"), nat_rules(&t, "plain"));
    assert!(want.contains("-j REDIRECT --to-ports 15001"), "{want}");
    assert_eq!(got, want);
}

fn server_cluster() -> String {
    crate::harness::cname("server", u32::from(APP_PORT), "")
}

/// Helper process: the app of the server namespace (does nothing unless
/// started by the capture test).
#[tokio::test]
#[ignore = "helper process started by the capture test"]
async fn helper_app() {
    let Ok(addr) = std::env::var(APP_ENV) else {
        return;
    };
    crate::harness::backend(addr.parse().expect("app address"), "capture-app").await;
    std::future::pending::<()>().await;
}

/// Helper process: a client of non-HTTP bytes in the client namespace; prints
/// `CAPTURE-RESULT` and the first line it got back, or `closed`.
#[tokio::test]
#[ignore = "helper process started by the capture test"]
async fn helper_tcp() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(addr) = std::env::var(TCP_ENV) else {
        return;
    };
    let addr: SocketAddr = addr.parse().expect("target address");
    let talk = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"\x16not http at all\r\n\r\n").await?;
        let mut got = Vec::new();
        s.read_to_end(&mut got).await?;
        Ok::<_, std::io::Error>(got)
    };
    match tokio::time::timeout(Duration::from_secs(20), talk).await {
        Ok(Ok(got)) if got.is_empty() => println!("{RESULT} closed"),
        Ok(Ok(got)) => {
            let text = String::from_utf8_lossy(&got);
            println!("{RESULT} {}", text.lines().next().unwrap_or(""));
        }
        // A reset is a refusal too.
        Ok(Err(_)) => println!("{RESULT} closed"),
        Err(_) => println!("{RESULT} timeout"),
    }
}

/// Helper process: a plain HTTP client in the client namespace; prints
/// `CAPTURE-RESULT <status> <x-backend>`.
#[tokio::test]
#[ignore = "helper process started by the capture test"]
async fn helper_get() {
    let Ok(addr) = std::env::var(GET_ENV) else {
        return;
    };
    let addr: SocketAddr = addr.parse().expect("target address");
    let req = get("/hello", &addr.to_string());
    match tokio::time::timeout(Duration::from_secs(20), send(addr, req)).await {
        Ok(Ok(got)) => println!(
            "{RESULT} {} {}",
            got.status.as_u16(),
            got.header("x-backend")
        ),
        Ok(Err(e)) => println!("{RESULT} error {e:#}"),
        Err(_) => println!("{RESULT} timeout"),
    }
}
