//! Connections to upstreams: TCP connect with a timeout (and an optional PROXY v2
//! header), pooled HTTP/1.1 keep-alive connections and shared, multiplexed h2c
//! connections per (address, announced destination).

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::body::{self, Body};
use crate::fast_hash::FastMap;
use crate::model::{Cluster, Endpoint, TlsMode};
use crate::proxy_protocol;
use crate::tls::{Alpn, MeshTls, Security, Stream, TlsError};

/// Idle HTTP/1.1 connections kept per upstream: with HTTP/1.1 between
/// sidecars (Istio's default) a burst needs one connection per request in
/// flight, and each one dropped costs an mTLS handshake when the next burst
/// comes.
const MAX_IDLE_PER_KEY: usize = 256;

/// Longest wait for a pooled HTTP/1.1 connection to turn to the next request.
const READY_WAIT: Duration = Duration::from_millis(50);

/// Called once a request has its connection, before it is written (Envoy's
/// "pool ready"): what goes wrong after that is the endpoint's doing.
pub type OnConnected<'a> = &'a (dyn Fn() + Sync);

/// An [`OnConnected`] for callers that do not keep track.
pub fn unobserved() {}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("request to {addr}: {source}")]
    Request {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("TLS to {addr}: {source}")]
    Tls { addr: SocketAddr, source: TlsError },
}

impl UpstreamError {
    /// Whether no connection could be made (Envoy's `UF`), as opposed to a reset (`UC`).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::ConnectTimeout(_)
                | UpstreamError::Tls { .. }
        )
    }
}

/// Where a connection goes and how it is secured (the pool key).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Target {
    /// Address to connect to.
    pub connect: SocketAddr,
    /// When set, a PROXY v2 header announcing this destination is written first.
    pub announce: Option<SocketAddr>,
    /// TLS on top of the TCP connection (after the PROXY header).
    pub security: Security,
}

impl Target {
    /// A plaintext connection straight to `addr`.
    pub fn plain(addr: SocketAddr) -> Self {
        Target {
            connect: addr,
            announce: None,
            security: Security::Plain,
        }
    }

    /// The connection to `ep` of `cluster`: through the peer sidecar's inbound
    /// (PROXY header) when it has one, secured as the cluster's TLS mode says.
    pub fn endpoint(cluster: &Cluster, ep: &Endpoint, has_credentials: bool, alpn: Alpn) -> Self {
        let app = SocketAddr::new(ep.address, ep.port);
        let mesh = || Security::Mesh {
            sans: Arc::clone(&cluster.tls.subject_alt_names),
            alpn,
            sni: cluster.tls.mesh_sni.clone(),
        };
        let security = match cluster.tls.mode {
            TlsMode::Auto if ep.sidecar && !ep.mtls_disabled && has_credentials => mesh(),
            TlsMode::Auto | TlsMode::Disable => Security::Plain,
            TlsMode::IstioMutual => mesh(),
            TlsMode::Simple | TlsMode::Mutual => match &cluster.tls.origination {
                Some(o) => Security::Originate(Arc::clone(o)),
                None => Security::Plain,
            },
        };
        if ep.sidecar {
            Target {
                connect: SocketAddr::new(ep.address, ep.inbound_port),
                announce: Some(app),
                security,
            }
        } else {
            Target {
                connect: app,
                announce: None,
                security,
            }
        }
    }

    /// Whether the connection uses the mesh's mutual TLS (both sides' workload
    /// certificates), not plaintext or TLS origination to another server.
    pub fn is_mesh_tls(&self) -> bool {
        matches!(self.security, Security::Mesh { .. })
    }

    /// Whether HTTP on this connection must be HTTP/1.1 (TLS origination offers only that).
    pub fn forces_h1(&self) -> bool {
        matches!(self.security, Security::Originate(_))
    }
}

/// Per-cluster connection settings (DestinationRule `connectionPool`); `None`/0 = defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnSettings {
    pub connect_timeout: Option<Duration>,
    /// Requests a connection carries before it is retired; 0 = unlimited.
    pub max_requests_per_connection: u32,
    /// Idle HTTP/1 connections older than this are not reused (default 1 h).
    pub idle_timeout: Option<Duration>,
    /// Connections older than this take no new requests.
    pub max_connection_duration: Option<Duration>,
    /// TCP keepalive `(probes, time, interval)`.
    pub keepalive: Option<(u32, Duration, Duration)>,
}

/// Istio's default idle timeout of upstream connections.
const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

impl ConnSettings {
    fn still_usable(&self, created: Instant, uses: u32) -> bool {
        let young = self
            .max_connection_duration
            .is_none_or(|max| created.elapsed() < max);
        let fresh =
            self.max_requests_per_connection == 0 || uses < self.max_requests_per_connection;
        young && fresh
    }
}

fn set_keepalive(stream: &TcpStream, (probes, time, interval): (u32, Duration, Duration)) {
    let mut ka = socket2::TcpKeepalive::new();
    if !time.is_zero() {
        ka = ka.with_time(time);
    }
    if !interval.is_zero() {
        ka = ka.with_interval(interval);
    }
    if probes > 0 {
        ka = ka.with_retries(probes);
    }
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "setting TCP keepalive failed");
    }
}

/// Opens a connection to `target`: TCP, the PROXY header when asked, then TLS
/// when its security says so (mesh mTLS needs `tls`).
pub async fn connect(
    target: &Target,
    source: SocketAddr,
    timeout: Duration,
    tls: Option<&MeshTls>,
) -> Result<Stream, UpstreamError> {
    connect_with(target, source, timeout, None, tls).await
}

async fn connect_with(
    target: &Target,
    source: SocketAddr,
    timeout: Duration,
    keepalive: Option<(u32, Duration, Duration)>,
    tls: Option<&MeshTls>,
) -> Result<Stream, UpstreamError> {
    let addr = target.connect;
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
        Err(_) => return Err(UpstreamError::ConnectTimeout(addr)),
    };
    let _ = stream.set_nodelay(true);
    if let Some(ka) = keepalive {
        set_keepalive(&stream, ka);
    }
    if let Some(dst) = target.announce {
        let header = proxy_protocol::encode(source, dst);
        stream
            .write_all(&header)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
    }
    match &target.security {
        Security::Plain => Ok(Stream::Plain(stream)),
        Security::Mesh { sans, alpn, sni } => {
            let tls = tls.ok_or(UpstreamError::Tls {
                addr,
                source: TlsError::NoCredentials,
            })?;
            let server = target.announce.unwrap_or(addr).ip();
            tls.connect(stream, server, sans, *alpn, sni.as_deref())
                .await
                .map(|(s, _)| s)
                .map_err(|source| UpstreamError::Tls { addr, source })
        }
        Security::Originate(o) => o.connect(stream).await.map_err(|e| UpstreamError::Tls {
            addr,
            source: e.into(),
        }),
    }
}

/// A shared h2 connection with its age and the streams it has carried.
struct H2Conn {
    sender: http2::SendRequest<Body>,
    created: Instant,
    streams: Arc<AtomicU32>,
}

/// One shared h2 connection per target, and a lock held while (re)connecting.
#[derive(Default)]
struct H2Slot {
    conn: Mutex<Option<H2Conn>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Slot {
    /// The live connection, unless it is closed or retired by `settings`;
    /// a retired one keeps serving its streams and closes when they end.
    fn live(&self, settings: &ConnSettings) -> Option<http2::SendRequest<Body>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let c = conn.as_ref()?;
        let uses = c.streams.fetch_add(1, Ordering::Relaxed);
        (!c.sender.is_closed() && settings.still_usable(c.created, uses)).then(|| c.sender.clone())
    }
}

/// An idle HTTP/1 connection.
struct H1Idle {
    sender: http1::SendRequest<Body>,
    created: Instant,
    since: Instant,
    uses: u32,
}

/// Pool keys come from config (endpoints, TLS settings): a fast non-keyed hash.
type H1Pool = FastMap<Target, Vec<H1Idle>>;

/// Pools of upstream HTTP connections.
pub struct Pools {
    h1: Arc<Mutex<H1Pool>>,
    h2: Mutex<FastMap<Target, Arc<H2Slot>>>,
    connect_timeout: Duration,
    /// Source announced in PROXY headers of pooled connections (they carry many clients).
    source: SocketAddr,
    /// Mesh mTLS of this proxy; `None` for pools that only reach the local app.
    tls: Option<Arc<MeshTls>>,
}

impl Pools {
    /// Empty pools.
    pub fn new(connect_timeout: Duration, source: SocketAddr, tls: Option<Arc<MeshTls>>) -> Self {
        Pools {
            h1: Arc::default(),
            h2: Mutex::default(),
            connect_timeout,
            source,
            tls,
        }
    }

    /// Sends `req` over HTTP/2 (prior knowledge) on a shared connection to `target`.
    /// The request URI must be absolute (scheme and authority become pseudo-headers).
    pub async fn send_h2(
        &self,
        target: Target,
        req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let settings = ConnSettings::default();
        self.send_h2_with(target, req, &settings, &unobserved).await
    }

    /// `send_h2` with a cluster's connection settings, telling `connected`
    /// once the connection can take the stream.
    pub async fn send_h2_with(
        &self,
        target: Target,
        req: Request<Body>,
        settings: &ConnSettings,
        connected: OnConnected<'_>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let addr = target.connect;
        let mut sender = self.h2_sender(target, settings).await?;
        sender
            .ready()
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        connected();
        sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request { addr, source })
    }

    /// The live shared connection to `target`, connecting once when there is none:
    /// concurrent first requests wait for one handshake instead of racing their own.
    async fn h2_sender(
        &self,
        target: Target,
        settings: &ConnSettings,
    ) -> Result<http2::SendRequest<Body>, UpstreamError> {
        let slot = {
            let mut pool = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            // Look up before `entry`: the key clone (SNI string) is only paid once per target.
            match pool.get(&target) {
                Some(slot) => Arc::clone(slot),
                None => Arc::clone(pool.entry(target.clone()).or_default()),
            }
        };
        if let Some(s) = slot.live(settings) {
            return Ok(s);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(s) = slot.live(settings) {
            return Ok(s);
        }
        let addr = target.connect;
        let timeout = settings.connect_timeout.unwrap_or(self.connect_timeout);
        let tls = self.tls.as_deref();
        let stream = connect_with(&target, self.source, timeout, settings.keepalive, tls).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(30))
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "h2 upstream connection ended");
            }
        });
        *slot.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(H2Conn {
            sender: sender.clone(),
            created: Instant::now(),
            streams: Arc::new(AtomicU32::new(1)),
        });
        Ok(sender)
    }

    /// Sends `req` over HTTP/1.1, reusing an idle keep-alive connection when one is
    /// ready. The connection returns to the pool when the response body ends.
    pub async fn send_h1(
        &self,
        target: Target,
        req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let settings = ConnSettings::default();
        self.send_h1_with(target, req, &settings, &unobserved).await
    }

    /// `send_h1` with a cluster's connection settings, telling `connected`
    /// once a connection is in hand.
    pub async fn send_h1_with(
        &self,
        target: Target,
        req: Request<Body>,
        settings: &ConnSettings,
        connected: OnConnected<'_>,
    ) -> Result<Response<Body>, UpstreamError> {
        let addr = target.connect;
        let idle = self.ready_idle(&target, settings).await;
        let fresh = || async {
            let conn = self.new_h1(&target, settings).await?;
            connected();
            Ok::<_, UpstreamError>(conn)
        };
        let (mut conn, req) = match idle {
            Some(mut conn) => {
                connected();
                match conn.sender.try_send_request(req).await {
                    Ok(resp) => return Ok(self.recycle(target, conn, resp, *settings)),
                    // The idle connection was closed under us before the request went out:
                    // the request is intact, so it can go on a fresh connection.
                    Err(mut e) => match e.take_message() {
                        Some(req) => (fresh().await?, req),
                        None => {
                            return Err(UpstreamError::Request {
                                addr,
                                source: e.into_error(),
                            });
                        }
                    },
                }
            }
            None => (fresh().await?, req),
        };
        let resp = conn
            .sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        Ok(self.recycle(target, conn, resp, *settings))
    }

    /// An idle connection ready for a request, if the pool has one. A
    /// connection whose response just ended may not have turned to the next
    /// request yet (its task runs separately), so each is given
    /// [`READY_WAIT`] rather than replaced at once; one still busy after that
    /// (its request body is still being sent: the server answered early) or
    /// closed is dropped, which lets it finish its exchange and close.
    async fn ready_idle(&self, target: &Target, settings: &ConnSettings) -> Option<H1Idle> {
        while let Some(mut conn) = self.take_idle(target, settings) {
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, conn.sender.ready()).await {
                return Some(conn);
            }
        }
        None
    }

    fn take_idle(&self, target: &Target, settings: &ConnSettings) -> Option<H1Idle> {
        let idle_limit = settings.idle_timeout.unwrap_or(DEFAULT_IDLE);
        let mut pool = self.h1.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.get_mut(target)?;
        while let Some(c) = list.pop() {
            // Dropping a stale connection closes it. Readiness is not checked
            // here: a connection is pooled the moment its response body ends,
            // usually before its task is ready for the next request.
            if !c.sender.is_closed()
                && c.since.elapsed() < idle_limit
                && settings.still_usable(c.created, c.uses)
            {
                return Some(c);
            }
        }
        None
    }

    /// A new HTTP/1.1 connection to `target`: TCP (and TLS), then the handshake;
    /// the caller runs the connection task as it needs (with upgrades or not).
    async fn h1_handshake(
        &self,
        target: &Target,
        settings: &ConnSettings,
    ) -> Result<
        (
            http1::SendRequest<Body>,
            http1::Connection<TokioIo<Stream>, Body>,
        ),
        UpstreamError,
    > {
        let addr = target.connect;
        let timeout = settings.connect_timeout.unwrap_or(self.connect_timeout);
        let tls = self.tls.as_deref();
        let stream = connect_with(target, self.source, timeout, settings.keepalive, tls).await?;
        http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })
    }

    async fn new_h1(
        &self,
        target: &Target,
        settings: &ConnSettings,
    ) -> Result<H1Idle, UpstreamError> {
        let addr = target.connect;
        let (sender, conn) = self.h1_handshake(target, settings).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "http/1 upstream connection ended");
            }
        });
        let now = Instant::now();
        Ok(H1Idle {
            sender,
            created: now,
            since: now,
            uses: 0,
        })
    }

    /// Sends an upgrade request (WebSocket) over HTTP/1.1 on a connection of
    /// its own: after a `101` it carries the upgraded stream (the response's
    /// `OnUpgrade` hands it over), so it never returns to the pool. Any other
    /// answer closes it once its body ends. `connected` is told after the handshake.
    pub async fn send_upgrade(
        &self,
        target: Target,
        req: Request<Body>,
        settings: &ConnSettings,
        connected: OnConnected<'_>,
    ) -> Result<Response<Body>, UpstreamError> {
        let addr = target.connect;
        let mut sender = self.new_h1_with_upgrades(&target, settings).await?;
        connected();
        let resp = sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        // The sender lives until the answer's body ends: dropping it sooner
        // could close the connection under a body still being read.
        Ok(resp.map(move |incoming| {
            body::boxed(crate::body::Finishing::new(
                incoming,
                move |_: crate::body::End| drop(sender),
            ))
        }))
    }

    async fn new_h1_with_upgrades(
        &self,
        target: &Target,
        settings: &ConnSettings,
    ) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let addr = target.connect;
        let (sender, conn) = self.h1_handshake(target, settings).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "upgrade connection ended");
            }
        });
        Ok(sender)
    }

    fn recycle(
        &self,
        target: Target,
        mut conn: H1Idle,
        resp: Response<hyper::body::Incoming>,
        settings: ConnSettings,
    ) -> Response<Body> {
        let pool = Arc::clone(&self.h1);
        conn.uses += 1;
        resp.map(move |incoming| {
            body::boxed(crate::body::Finishing::new(
                incoming,
                move |end: crate::body::End| {
                    // Only a fully read response leaves the connection reusable;
                    // one past its request or age limit is dropped, which closes it.
                    let usable = settings.still_usable(conn.created, conn.uses);
                    if end.complete && !conn.sender.is_closed() && usable {
                        conn.since = Instant::now();
                        let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
                        let list = pool.entry(target).or_default();
                        if list.len() < MAX_IDLE_PER_KEY {
                            list.push(conn);
                        }
                    }
                },
            ))
        })
    }
}
