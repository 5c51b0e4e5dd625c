//! TCP proxying: choosing an outbound `TcpService` (by original destination or
//! `CONNECT` name), its endpoint, and relaying bytes with Istio TCP metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::balance::{HashInput, pick_endpoint, pick_weighted};
use crate::matching::domains_match;
use crate::metrics::{Metrics, ServiceLabels, TcpLabels};
use crate::model::{ProxyConfig, Running, TcpService};
use crate::state::Shared;
use crate::tls::Alpn;
use crate::upstream::{self, Target};

/// The TCP service for an original destination: address-specific entries first.
pub fn service_for_dst(cfg: &ProxyConfig, dst: SocketAddr) -> Option<&TcpService> {
    let on_port = || {
        cfg.tcp_services
            .iter()
            .filter(move |s| s.port == dst.port())
    };
    on_port()
        .find(|s| s.addresses.contains(&dst.ip()))
        .or_else(|| on_port().find(|s| s.addresses.is_empty()))
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
}

/// Connects to an endpoint of the service's first route; returns the stream and
/// the labels to report the connection with.
pub async fn connect_service(
    shared: &Shared,
    running: &Running,
    svc: &TcpService,
    client: SocketAddr,
) -> Result<TcpUpstream, TcpRouteError> {
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
    let stream = upstream::connect(&target, client, timeout, Some(&shared.tls)).await?;
    let m = &shared.metrics;
    let service = ServiceLabels {
        service: cluster.service.clone(),
        name: cluster.service_name.clone(),
        namespace: cluster.service_namespace.clone(),
    };
    let labels = m.tcp_labels(
        &m.words.source,
        shared.self_meta(Some(running)),
        &ep.workload,
        &service,
        &m.words.unknown,
    );
    Ok(TcpUpstream {
        stream,
        labels,
        slot,
    })
}

/// Relays bytes both ways until both sides close, reporting Istio TCP metrics.
pub async fn relay<A, B>(metrics: &Arc<Metrics>, labels: &TcpLabels, client: A, upstream: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    relay_until(metrics, labels, client, upstream, std::future::pending()).await;
}

/// [`relay`], cut short when `stop` completes (the connection is closed; the
/// bytes relayed so far are not counted, the close is).
pub async fn relay_until<A, B>(
    metrics: &Arc<Metrics>,
    labels: &TcpLabels,
    mut client: A,
    mut upstream: B,
    stop: impl std::future::Future<Output = ()>,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    metrics.tcp_opened.get_or_create(labels).inc();
    let start_wall = std::time::SystemTime::now();
    let start = std::time::Instant::now();
    let copied = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => r,
        () = stop => Ok((0, 0)),
    };
    let (received, sent) = match copied {
        Ok(counts) => counts,
        Err(e) => {
            tracing::debug!(error = %e, "tcp relay ended with an error");
            (0, 0)
        }
    };
    metrics.tcp_received.get_or_create(labels).inc_by(received);
    metrics.tcp_sent.get_or_create(labels).inc_by(sent);
    metrics.tcp_closed.get_or_create(labels).inc();
    metrics
        .telemetry
        .tcp_closed(labels, start_wall, start.elapsed(), received, sent);
}
