//! TCP proxying: choosing an outbound `TcpService` (by original destination or
//! `CONNECT` name), its endpoint, and relaying bytes with Istio TCP metrics.

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::balance::{HashInput, pick_endpoint, pick_weighted};
use crate::matching::domains_match;
use crate::metrics::{Metrics, Principals, ServiceLabels, TcpLabels};
use crate::model::{ProxyConfig, Running, TcpRoute, TcpService};
use crate::state::Shared;
use crate::tls::Alpn;
use crate::upstream::{self, Target};

/// The TCP service for an original destination: the entry whose address or
/// CIDR range holds it most specifically (the first on a tie), else the
/// first without addresses whose port is not sniffed.
pub fn service_for_dst(cfg: &ProxyConfig, dst: SocketAddr) -> Option<&TcpService> {
    let on_port = || {
        cfg.tcp_services
            .iter()
            .filter(move |s| s.port == dst.port())
    };
    on_port()
        .filter_map(|s| {
            let best = s
                .addresses
                .iter()
                .filter(|a| a.contains(dst.ip()))
                .map(|a| a.prefix_len())
                .max()?;
            Some((best, s))
        })
        .min_by_key(|(len, _)| std::cmp::Reverse(*len))
        .map(|(_, s)| s)
        // A sniffed port's service without addresses (a headless Service,
        // a ServiceEntry without `addresses`) does not claim every other
        // destination on its port: those bytes pass through, as Istio sends
        // them to the address dialled.
        .or_else(|| on_port().find(|s| s.addresses.is_empty() && !s.sniffed))
}

/// The TCP service with `dst`'s IP as one of its addresses (not a range)
/// and its port, if any, unless its port is sniffed: that address and port
/// are the service's alone, so its bytes need no sniffing.
pub fn service_at_address(cfg: &ProxyConfig, dst: SocketAddr) -> Option<&TcpService> {
    cfg.tcp_at_address
        .get(&(dst.ip().to_canonical(), dst.port()))
        .and_then(|i| cfg.tcp_services.get(*i))
}

/// The TCP service an explicit `CONNECT host:port` names.
pub fn service_for_name<'c>(cfg: &'c ProxyConfig, host: &str, port: u16) -> Option<&'c TcpService> {
    cfg.tcp_services
        .iter()
        .find(|s| s.port == port && domains_match(&s.domains, host))
}

/// Why an outbound TCP connection could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum TcpRouteError {
    #[error("tcp service {0} has no route")]
    NoRoute(String),
    #[error("cluster {0} is not configured")]
    NoCluster(String),
    #[error("cluster {0} has no healthy endpoint")]
    NoEndpoint(String),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error("cluster {0} is at its max_connections")]
    Overflow(String),
}

/// A connected upstream of a TCP service.
pub struct TcpUpstream {
    pub stream: crate::tls::Stream,
    pub labels: TcpLabels,
    /// The cluster's connection slot, held while the connection lives.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The route's idle timeout and maximum duration of relayed connections.
    pub limits: RelayLimits,
}

/// Connects to an endpoint of the service's first route; returns the stream and
/// the labels to report the connection with.
pub async fn connect_service(
    shared: &Shared,
    running: &Running,
    svc: &TcpService,
    client: SocketAddr,
) -> Result<TcpUpstream, TcpRouteError> {
    let began = Instant::now();
    let cfg = &running.config;
    let route = svc
        .routes
        .first()
        .ok_or_else(|| TcpRouteError::NoRoute(svc.name.clone()))?;
    let dest =
        pick_weighted(&route.forward).ok_or_else(|| TcpRouteError::NoRoute(svc.name.clone()))?;
    let cluster = cfg
        .cluster(&dest.cluster)
        .ok_or_else(|| TcpRouteError::NoCluster(dest.cluster.clone()))?;
    let slot = cluster.circuit.try_connection().map_err(|o| {
        let m = &shared.metrics.resilience;
        m.overflow(&cluster.name, o.kind());
        TcpRouteError::Overflow(cluster.name.clone())
    })?;
    let empty = http::HeaderMap::new();
    let input = HashInput {
        headers: &empty,
        source_ip: client.ip(),
        query: None,
    };
    let ep = pick_endpoint(cluster, &input)
        .and_then(|c| cluster.endpoints.get(c.index))
        .ok_or_else(|| TcpRouteError::NoEndpoint(cluster.name.clone()))?;
    let target = Target::endpoint(cluster, ep, shared.tls.has_credentials(), Alpn::Tcp);
    let timeout = match cluster.pool.connect_timeout_ms {
        0 => shared.settings.connect_timeout,
        ms => std::time::Duration::from_millis(ms),
    };
    let mut stream = upstream::connect(&target, client, timeout, Some(&shared.tls)).await?;
    let me = shared.self_meta(Some(running));
    if stream.alpn() == Some(crate::tls::ALPN_TCP_META) {
        // The peer sidecar reads who is calling before relaying (its
        // metrics' source_* labels), as Istio's sidecars exchange metadata.
        // The frame is always sent (empty without metadata): the peer waits for it.
        use tokio::io::AsyncWriteExt;
        let frame = crate::outbound::identity_value(me)
            .map_or_else(|| vec![0, 0], |v| crate::source_meta::frame(&v));
        if let Err(e) = stream.write_all(&frame).await {
            tracing::debug!(error = %e, "sending caller metadata to the peer sidecar failed");
        }
    }
    let m = &shared.metrics;
    let service = ServiceLabels {
        service: cluster.service.clone(),
        name: cluster.service_name.clone(),
        namespace: cluster.service_namespace.clone(),
    };
    // Istio takes both principals from the upstream connection's certificates.
    let principals = target.is_mesh_tls().then_some(Principals {
        source: &me.principal,
        destination: &ep.workload.principal,
    });
    let labels = m.tcp_labels(
        &m.words.source,
        me,
        &ep.workload,
        &service,
        &m.words.unknown,
        principals,
    );
    Ok(TcpUpstream {
        stream,
        labels,
        slot,
        limits: RelayLimits::of(route).since(began),
    })
}

/// Envoy's idle timeout of proxied TCP connections when none is configured
/// (`tcp_proxy.idle_timeout`), which Istio keeps.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(3600);

/// When a relayed connection is closed whatever its peers do (Envoy's
/// `tcp_proxy` `idle_timeout` and `max_downstream_connection_duration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// No byte from either side for this long; `None` = never.
    pub idle: Option<Duration>,
    /// Since the relay began (see [`RelayLimits::since`]); `None` = unlimited.
    pub max_duration: Option<Duration>,
}

impl RelayLimits {
    /// Neither limit.
    pub const NONE: RelayLimits = RelayLimits {
        idle: None,
        max_duration: None,
    };

    /// Inbound relays: Envoy's defaults, as Istio programs its inbound listeners.
    pub const INBOUND: RelayLimits = RelayLimits {
        idle: Some(DEFAULT_IDLE),
        max_duration: None,
    };

    /// Counts the maximum duration from `began` (when proxying the connection
    /// started, before the upstream connect) rather than from the relay's start,
    /// as Envoy counts it from the downstream connection.
    pub fn since(mut self, began: Instant) -> Self {
        self.max_duration = self
            .max_duration
            .map(|max| max.saturating_sub(began.elapsed()));
        self
    }

    /// A TCP route's DestinationRule `connectionPool.tcp` `idleTimeout`
    /// (unset = 1 h, `0s` = never) and `maxConnectionDuration`.
    pub fn of(route: &TcpRoute) -> Self {
        RelayLimits {
            idle: match route.idle_timeout_ms {
                None => Some(DEFAULT_IDLE),
                Some(0) => None,
                Some(ms) => Some(Duration::from_millis(ms)),
            },
            max_duration: (route.max_connection_duration_ms > 0)
                .then(|| Duration::from_millis(route.max_connection_duration_ms)),
        }
    }
}

/// How a [`splice`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Both directions ended, or one failed.
    Closed,
    /// The caller's stop signal.
    Stopped,
    /// Nothing crossed for the idle limit.
    Idle,
    /// The maximum duration passed.
    MaxDuration,
}

impl End {
    /// The timeout that cut the connection, as `sluice_tcp_timeouts_total` names it.
    fn timeout(self) -> Option<&'static str> {
        match self {
            End::Idle => Some("idle"),
            End::MaxDuration => Some("max_duration"),
            End::Closed | End::Stopped => None,
        }
    }
}

/// What a [`splice`] carried and how it ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spliced {
    /// Bytes read from the first side (and passed to the second), and the other way.
    pub from_a: u64,
    pub from_b: u64,
    pub end: End,
}

/// Bytes read from each side of a splice, and when bytes last moved.
struct Tally {
    start: Instant,
    /// Whether reads and writes note the time (only an idle limit needs it).
    timed: bool,
    /// Nanoseconds after `start` of the last byte read or written.
    last_ns: AtomicU64,
    from_a: AtomicU64,
    from_b: AtomicU64,
}

impl Tally {
    fn new(timed: bool) -> Self {
        Tally {
            start: Instant::now(),
            timed,
            last_ns: AtomicU64::new(0),
            from_a: AtomicU64::new(0),
            from_b: AtomicU64::new(0),
        }
    }

    fn read(&self, side_a: bool, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let side = if side_a { &self.from_a } else { &self.from_b };
        side.fetch_add(n, Ordering::Relaxed);
        self.touch();
    }

    /// Notes that bytes moved (read, or written to a slow reader).
    fn touch(&self) {
        if self.timed {
            let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.last_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// Completes once no byte has moved either way for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_nanos(self.last_ns.load(Ordering::Relaxed));
            let quiet = self.start.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// One side of a splice, counting what is read from it.
struct Metered<'t, S> {
    io: S,
    tally: &'t Tally,
    side_a: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            self.tally.read(self.side_a, n);
        }
        polled
    }
}

impl<S> Metered<'_, S> {
    fn wrote(&self, polled: &Poll<std::io::Result<usize>>) {
        if matches!(polled, Poll::Ready(Ok(n)) if *n > 0) {
            self.tally.touch();
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&polled);
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Copies bytes both ways between `a` and `b` (a side's end of stream is
/// passed on to the other) until both directions have ended, `stop`
/// completes, or `limits` cut the connection; then closes both. The bytes
/// are counted as they are read, so a cut or a reset loses none of them.
pub(crate) async fn splice<A, B>(
    a: A,
    b: B,
    limits: RelayLimits,
    stop: impl std::future::Future<Output = ()>,
) -> Spliced
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let tally = Tally::new(limits.idle.is_some());
    let mut a = Metered {
        io: a,
        tally: &tally,
        side_a: true,
    };
    let mut b = Metered {
        io: b,
        tally: &tally,
        side_a: false,
    };
    let idle = async {
        match limits.idle {
            Some(idle) => tally.idle_for(idle).await,
            None => std::future::pending().await,
        }
    };
    let lifetime = async {
        match limits.max_duration {
            Some(max) => tokio::time::sleep(max).await,
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut a, &mut b) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "relayed connection ended with an error");
            }
            End::Closed
        }
        () = stop => End::Stopped,
        () = idle => End::Idle,
        () = lifetime => End::MaxDuration,
    };
    drop((a, b));
    Spliced {
        from_a: tally.from_a.load(Ordering::Relaxed),
        from_b: tally.from_b.load(Ordering::Relaxed),
        end,
    }
}

/// Relays bytes both ways until both sides close or a limit cuts the
/// connection, reporting Istio TCP metrics.
pub async fn relay<A, B>(
    metrics: &Arc<Metrics>,
    labels: &TcpLabels,
    client: A,
    upstream: B,
    limits: RelayLimits,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    relay_until(
        metrics,
        labels,
        client,
        upstream,
        limits,
        std::future::pending(),
    )
    .await;
}

/// [`relay`], cut short when `stop` completes. However the relay ends, both
/// connections are closed and the bytes read from each side are counted.
pub async fn relay_until<A, B>(
    metrics: &Arc<Metrics>,
    labels: &TcpLabels,
    client: A,
    upstream: B,
    limits: RelayLimits,
    stop: impl std::future::Future<Output = ()>,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    use crate::metrics::standard;
    let records = |metric| metrics.records(&labels.reporter, metric);
    // A Telemetry's label changes: each metric's own labels.
    let tagged = metrics.tcp_tagged(labels);
    let of = |i: usize| tagged.as_ref().map_or(labels, |t| &t[i]);
    if records(standard::TCP_OPENED) {
        metrics.tcp_opened.get_or_create(of(0)).inc();
    }
    let start_wall = std::time::SystemTime::now();
    let start = std::time::Instant::now();
    let done = splice(client, upstream, limits, stop).await;
    if let Some(kind) = done.end.timeout() {
        tracing::debug!(timeout = kind, "tcp connection closed by its timeout");
        metrics.tcp_timeout(&labels.reporter, kind);
    }
    let (received, sent) = (done.from_a, done.from_b);
    if records(standard::TCP_RECEIVED) {
        metrics.tcp_received.get_or_create(of(3)).inc_by(received);
    }
    if records(standard::TCP_SENT) {
        metrics.tcp_sent.get_or_create(of(2)).inc_by(sent);
    }
    if records(standard::TCP_CLOSED) {
        metrics.tcp_closed.get_or_create(of(1)).inc();
    }
    // Envoy flags a connection its maximum duration cut `DT` in the access
    // log; the metrics keep the labels they were opened with, as Istio's.
    let cut;
    let logged = if matches!(done.end, End::MaxDuration) {
        cut = TcpLabels {
            response_flags: metrics.words.dt.clone(),
            ..labels.clone()
        };
        &cut
    } else {
        labels
    };
    metrics
        .telemetry
        .tcp_closed(logged, start_wall, start.elapsed(), received, sent);
}
