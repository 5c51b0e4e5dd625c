//! The outbound listener (:15001): detects HTTP vs TCP on each connection and
//! routes it by authority (explicit proxy) or original destination (transparent).

mod attempts;
mod fault;
mod http;
pub(crate) use http::identity_value;
mod mirror;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::detect::{self, Detected};
use crate::listener;
use crate::state::Shared;

/// How long a redirected (transparent) client may stay silent before it is TCP.
const TRANSPARENT_DETECT_TIMEOUT: Duration = Duration::from_millis(300);
/// An explicit-proxy client must speak HTTP; give it time to send the request.
const EXPLICIT_DETECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the outbound path knows about a client connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnCtx {
    pub peer: SocketAddr,
    /// Set when iptables redirected the connection here.
    pub orig_dst: Option<SocketAddr>,
}

/// Runs the outbound listener until shutdown.
pub async fn run(shared: Arc<Shared>, listener: TcpListener) {
    let metrics = Arc::clone(&shared.metrics);
    let shutdown = shared.shutdown.clone();
    listener::accept_loop(
        listener,
        "outbound",
        metrics,
        shutdown,
        move |stream, peer| handle_conn(Arc::clone(&shared), stream, peer),
    )
    .await;
}

async fn handle_conn(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let orig_dst = detect::original_dst(&stream);
    let timeout = if orig_dst.is_some() {
        TRANSPARENT_DETECT_TIMEOUT
    } else {
        EXPLICIT_DETECT_TIMEOUT
    };
    let ctx = ConnCtx { peer, orig_dst };
    // A TCP service at the address the app dialled (declared TCP, or made
    // TCP by a Sidecar egress listener) has a TCP listener in Istio: its
    // bytes are proxied as they are, HTTP or not, without sniffing.
    if let Some(dst) = orig_dst
        && let Some(running) = shared.current()
        && crate::tcp::service_at_address(&running.config, dst).is_some()
    {
        return transparent_tcp(shared, stream, ctx).await;
    }
    match detect::sniff(&stream, timeout).await {
        Detected::Http1 | Detected::Http2 => {
            let shutdown = shared.shutdown.clone();
            listener::serve_http(stream, shutdown, move |req| {
                http::handle(Arc::clone(&shared), ctx, req)
            })
            .await;
        }
        // TLS from the app is opaque bytes to the proxy.
        Detected::Other | Detected::ProxyV2 | Detected::Tls => {
            transparent_tcp(shared, stream, ctx).await
        }
    }
}

/// A captured connection to a destination no service covers: relayed as it
/// is to that destination (Istio's `ALLOW_ANY`, Envoy's PassthroughCluster),
/// or closed under `REGISTRY_ONLY` (BlackHoleCluster). Counted either way
/// with `destination_service_name` naming which.
async fn passthrough_tcp(
    shared: &Arc<Shared>,
    running: &crate::model::Running,
    stream: TcpStream,
    client: SocketAddr,
    dst: SocketAddr,
) {
    let m = &shared.metrics;
    let registry_only = running.config.registry_only;
    let service = crate::metrics::ServiceLabels {
        service: Default::default(),
        name: if registry_only {
            m.words.black_hole.clone()
        } else {
            m.words.passthrough.clone()
        },
        namespace: Default::default(),
    };
    let me = shared.self_meta(Some(running));
    let labels = m.tcp_labels(
        &m.words.source,
        me,
        &crate::model::WorkloadMeta::default(),
        &service,
        &m.words.unknown,
        None,
    );
    m.passthrough(registry_only, "tcp");
    if registry_only {
        tracing::debug!(%dst, "no service for original destination; closed (REGISTRY_ONLY)");
        if m.records(&labels.reporter, crate::metrics::standard::TCP_OPENED) {
            m.tcp_opened.get_or_create(&labels).inc();
        }
        if m.records(&labels.reporter, crate::metrics::standard::TCP_CLOSED) {
            m.tcp_closed.get_or_create(&labels).inc();
        }
        return;
    }
    let target = crate::upstream::Target::plain(dst);
    let timeout = shared.settings.connect_timeout;
    match crate::upstream::connect(&target, client, timeout, None).await {
        Ok(upstream) => {
            crate::tcp::relay(
                &shared.metrics,
                &labels,
                stream,
                upstream,
                crate::tcp::RelayLimits::INBOUND,
            )
            .await
        }
        Err(e) => tracing::debug!(%dst, error = %e, "passthrough connection failed"),
    }
}

async fn transparent_tcp(shared: Arc<Shared>, stream: TcpStream, ctx: ConnCtx) {
    let Some(dst) = ctx.orig_dst else {
        tracing::debug!(peer = %ctx.peer, "non-HTTP connection without an original destination; closing");
        return;
    };
    let Some(running) = shared.current() else {
        return;
    };
    let Some(svc) = crate::tcp::service_for_dst(&running.config, dst) else {
        passthrough_tcp(&shared, &running, stream, ctx.peer, dst).await;
        return;
    };
    match crate::tcp::connect_service(&shared, &running, svc, ctx.peer).await {
        Ok(up) => {
            let _slot = up.slot;
            crate::tcp::relay(&shared.metrics, &up.labels, stream, up.stream, up.limits).await
        }
        Err(e) => tracing::debug!(%dst, error = %e, "tcp connection not proxied"),
    }
}
