//! Test harness: a fake controller (real tonic server), backend HTTP servers,
//! the real `sluice-proxy` binary, and small HTTP clients — all on loopback.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_api::config::config_discovery_server::{ConfigDiscovery, ConfigDiscoveryServer};
use sluice_api::config::{self as pb, ProxyMessage, Snapshot, proxy_message};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{TcpListenerStream, WatchStream};

/// What the proxy answered to a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Ack,
    Nack(String),
}

struct Service {
    snapshots: watch::Receiver<Option<Snapshot>>,
    messages: Arc<Mutex<Vec<ProxyMessage>>>,
    notify: Arc<Notify>,
}

#[tonic::async_trait]
impl ConfigDiscovery for Service {
    type StreamStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<Snapshot, tonic::Status>> + Send>>;

    async fn stream(
        &self,
        request: tonic::Request<tonic::Streaming<ProxyMessage>>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        let mut incoming = request.into_inner();
        let messages = Arc::clone(&self.messages);
        let notify = Arc::clone(&self.notify);
        tokio::spawn(async move {
            while let Ok(Some(m)) = incoming.message().await {
                messages.lock().unwrap().push(m);
                notify.notify_waiters();
            }
        });
        let out = WatchStream::new(self.snapshots.clone()).filter_map(|s| s.map(Ok));
        Ok(tonic::Response::new(Box::pin(out)))
    }
}

/// An in-test controller serving hand-written snapshots.
pub struct Controller {
    pub addr: SocketAddr,
    snapshots: watch::Sender<Option<Snapshot>>,
    messages: Arc<Mutex<Vec<ProxyMessage>>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    /// Starts a controller on `addr`.
    pub async fn start(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind controller");
        let (tx, rx) = watch::channel(None);
        let messages = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(Notify::new());
        let svc = Service {
            snapshots: rx,
            messages: Arc::clone(&messages),
            notify: Arc::clone(&notify),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(ConfigDiscoveryServer::new(svc))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        Controller {
            addr,
            snapshots: tx,
            messages,
            notify,
            task,
        }
    }

    /// Stops serving (the proxy loses its stream).
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Publishes a snapshot to every connected proxy.
    pub fn publish(&self, version: &str, config: pb::ProxyConfig) {
        self.snapshots.send_replace(Some(Snapshot {
            version: version.to_owned(),
            delta: None,
            config: Some(config),
        }));
    }

    /// Waits for the proxy's ACK/NACK of `version`.
    pub async fn reply(&self, version: &str) -> Reply {
        let wait = async {
            loop {
                let notified = self.notify.notified();
                if let Some(r) = self.find_reply(version) {
                    return r;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), wait)
            .await
            .expect("proxy replied to snapshot")
    }

    fn find_reply(&self, version: &str) -> Option<Reply> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .find_map(|m| match &m.kind {
                Some(proxy_message::Kind::Ack(a)) if a.version == version => Some(Reply::Ack),
                Some(proxy_message::Kind::Nack(n)) if n.version == version => {
                    Some(Reply::Nack(n.error.clone()))
                }
                _ => None,
            })
    }

    /// The `Node` of the first hello received.
    pub fn hello(&self) -> Option<pb::Node> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .find_map(|m| match &m.kind {
                Some(proxy_message::Kind::Hello(n)) => Some(n.clone()),
                _ => None,
            })
    }
}

/// A running `sluice-proxy` process (killed on drop).
pub struct Proxy {
    pub ip: IpAddr,
    child: Child,
}

/// The `sluice-proxy` command of workload `workload` on `ip` (stderr inherited).
pub fn proxy_command(ip: &str, controller: SocketAddr, workload: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice-proxy"));
    cmd.args(["--controller", &format!("http://{controller}"), "--ip", ip])
        .args(["--id", &format!("{workload}-0.default")])
        .args(["--workload", workload, "--namespace", "default"])
        .args(["--service-account", workload])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    cmd
}

impl Proxy {
    /// Starts the proxy binary on `ip` against `controller`, waiting until its admin port is up.
    pub async fn start(ip: &str, controller: SocketAddr, workload: &str, labels: &[&str]) -> Self {
        Self::start_with(ip, controller, workload, labels, &[]).await
    }

    /// `start` with extra command-line arguments (e.g. `--credentials-dir`).
    pub async fn start_with(
        ip: &str,
        controller: SocketAddr,
        workload: &str,
        labels: &[&str],
        extra: &[&str],
    ) -> Self {
        let mut cmd = proxy_command(ip, controller, workload);
        cmd.stdout(Stdio::null());
        for l in labels {
            cmd.args(["--label", l]);
        }
        cmd.args(extra);
        let child = cmd.spawn().expect("spawn sluice-proxy");
        let proxy = Proxy {
            ip: ip.parse().expect("ip"),
            child,
        };
        for _ in 0..200 {
            if TcpStream::connect(proxy.admin()).await.is_ok() {
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("proxy on {ip} did not start");
    }

    /// Process id of the proxy.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn outbound(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 15001)
    }
    pub fn inbound(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 15006)
    }
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 15000)
    }
    pub fn health(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 15021)
    }
    pub fn stats(&self) -> SocketAddr {
        SocketAddr::new(self.ip, 15090)
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Sums every series of `name` whose labels include all of `labels`.
    /// Waits (up to ~3 s) for the summed series of `name` matching `labels`
    /// to reach `want`; panics with the last value otherwise.
    pub async fn metric_reaches(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let mut last = 0.0;
        for _ in 0..100 {
            last = self.metric(name, labels).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        panic!("{name}{labels:?} is {last}, expected {want}");
    }

    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let resp = send(self.stats(), get("/stats/prometheus", "stats"))
            .await
            .expect("scrape");
        let text = resp.body;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                if metric != name {
                    return None;
                }
                let ok = labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                ok.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds a GET for `path` with Host `host` (origin form, as an explicit-proxy client sends it).
pub fn get(path: &str, host: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("request")
}

/// A collected response.
#[derive(Debug)]
pub struct Got {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    pub trailers: Option<HeaderMap>,
}

impl Got {
    /// A response header as a string ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn collect(resp: Response<Incoming>) -> anyhow::Result<Got> {
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(Got {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        trailers,
    })
}

/// Sends `req` over a fresh HTTP/1.1 connection to `addr`.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> anyhow::Result<Got> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(15), sender.send_request(req)).await??;
    collect(resp).await
}

/// Sends `req` (absolute URI) over a fresh h2c prior-knowledge connection to `addr`.
pub async fn send_h2(addr: SocketAddr, req: Request<Full<Bytes>>) -> anyhow::Result<Got> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = tokio::time::timeout(Duration::from_secs(15), sender.send_request(req)).await??;
    collect(resp).await
}

/// A backend HTTP server (HTTP/1.1 and h2c) describing each request it gets:
/// headers `x-backend` (its name), `x-seen-path`, `x-seen-host`, and a body of
/// `name: value` lines of the request headers. `/grpc` answers with trailers
/// `grpc-status: 0`; `/status/<code>` answers that code; `/delay/<ms>` waits first.
pub async fn backend(addr: SocketAddr, name: &'static str) -> tokio::task::JoinHandle<()> {
    serve_backend(addr, name, None).await
}

/// Requests a recording backend saw: `host path body-bytes` per request.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// A `backend` that also records every request it answers.
pub async fn recording_backend(addr: SocketAddr, name: &'static str) -> Seen {
    let seen = Seen::default();
    serve_backend(addr, name, Some(Arc::clone(&seen))).await;
    seen
}

async fn serve_backend(
    addr: SocketAddr,
    name: &'static str,
    seen: Option<Seen>,
) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.expect("bind backend");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let resp = describe(name, req).await;
                        if let Some(seen) = seen {
                            let h = resp.headers();
                            let get = |k: &str| {
                                h.get(k)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned()
                            };
                            seen.lock().unwrap().push(format!(
                                "{} {} {}",
                                get("x-seen-host"),
                                get("x-seen-path"),
                                get("x-seen-body-bytes")
                            ));
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn describe(name: &'static str, req: Request<Incoming>) -> Response<TestBody> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let mut text = String::new();
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
    }
    let version = format!("{:?}", req.version());
    let req_body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("body-bytes: {}\n", req_body.len()));
    if let Some(ms) = path
        .strip_prefix("/delay/")
        .and_then(|d| d.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let body: TestBody = if path.starts_with("/grpc") {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("grpc-message", "fine".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from(text))),
            Ok(Frame::trailers(trailers)),
        ];
        BodyExt::boxed(StreamBody::new(tokio_stream::iter(frames)))
    } else {
        BodyExt::boxed(Full::new(Bytes::from(text)))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("x-backend", name.parse().unwrap());
    h.insert("x-seen-path", path.parse().unwrap());
    h.insert(
        "x-seen-host",
        host.parse().unwrap_or_else(|_| "?".parse().unwrap()),
    );
    h.insert("x-seen-version", version.parse().unwrap());
    h.insert("x-seen-body-bytes", req_body.len().into());
    if path.starts_with("/grpc") {
        h.insert("content-type", "application/grpc".parse().unwrap());
    }
    resp
}

/// A TCP echo server that prefixes the stream once with `<name>\n`.
pub async fn tcp_echo(addr: SocketAddr, name: &'static str) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind(addr).await.expect("bind tcp echo");
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

// ---- snapshot builders ----

pub fn exact(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Exact(s.to_owned())),
    }
}
pub fn prefix(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Prefix(s.to_owned())),
    }
}
pub fn regex(s: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Regex(s.to_owned())),
    }
}

/// A route forwarding to weighted clusters.
pub fn forward(matches: Vec<pb::RouteMatch>, dests: &[(&str, u32)]) -> pb::Route {
    pb::Route {
        virtual_service: "default/test".to_owned(),
        matches,
        action: Some(pb::route::Action::Forward(pb::WeightedClusters {
            clusters: dests
                .iter()
                .map(|(c, w)| pb::WeightedCluster {
                    cluster: (*c).to_owned(),
                    weight: *w,
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

/// A virtual host for `service` (short name) on `port`.
pub fn vhost(service: &str, port: u32, routes: Vec<pb::Route>) -> pb::VirtualHost {
    let fqdn = format!("{service}.default.svc.cluster.local");
    pb::VirtualHost {
        name: format!("{fqdn}:{port}"),
        port,
        domains: vec![
            service.to_owned(),
            format!("{service}.default"),
            fqdn.clone(),
        ],
        routes,
        service: fqdn,
        protocol: pb::Protocol::Http as i32,
    }
}

/// An endpoint of a plain (sidecar-less) backend.
pub fn endpoint(addr: SocketAddr, workload: &str, version: &str) -> pb::Endpoint {
    pb::Endpoint {
        address: addr.ip().to_string(),
        port: u32::from(addr.port()),
        sidecar: false,
        inbound_port: 15006,
        workload: Some(pb::WorkloadMeta {
            workload: workload.to_owned(),
            namespace: "default".to_owned(),
            app: workload.split('-').next().unwrap_or(workload).to_owned(),
            version: version.to_owned(),
            principal: format!("spiffe://cluster.local/ns/default/sa/{workload}"),
            cluster: "Kubernetes".to_owned(),
        }),
        labels: BTreeMap::from([("version".to_owned(), version.to_owned())]),
        weight: 1,
        mtls_disabled: false,
    }
}

/// A cluster of `service`'s `port`, `subset`.
pub fn cluster(
    service: &str,
    port: u32,
    subset: &str,
    endpoints: Vec<pb::Endpoint>,
) -> pb::Cluster {
    let fqdn = format!("{service}.default.svc.cluster.local");
    pb::Cluster {
        name: format!("outbound|{port}|{subset}|{fqdn}"),
        service: fqdn,
        subset: subset.to_owned(),
        port,
        protocol: pb::Protocol::Http as i32,
        endpoints,
        service_namespace: "default".to_owned(),
        service_name: service.to_owned(),
        ..Default::default()
    }
}

/// Cluster name helper matching `cluster`.
pub fn cname(service: &str, port: u32, subset: &str) -> String {
    format!("outbound|{port}|{subset}|{service}.default.svc.cluster.local")
}

/// Starts a controller and a proxy on `127.0.<net>.1` (controller on .250), publishes
/// `config` as version "1" and waits for the ACK.
pub async fn mesh_of_one(net: u8, config: pb::ProxyConfig) -> (Controller, Proxy) {
    let ctl = Controller::start(format!("127.0.{net}.250:15010").parse().unwrap()).await;
    let proxy = Proxy::start(
        &format!("127.0.{net}.1"),
        ctl.addr,
        "client",
        &["app=client", "version=v1"],
    )
    .await;
    ctl.publish("1", config);
    assert_eq!(ctl.reply("1").await, Reply::Ack);
    (ctl, proxy)
}
