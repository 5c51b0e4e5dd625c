//! The inbound listener (:15006): learns the original destination (PROXY v2
//! header, `SO_ORIGINAL_DST`, Host port or the sole port), enforces the port's
//! PeerAuthentication mode (terminating mutual TLS), and forwards to the local
//! application, reporting `reporter="destination"` metrics.

mod http;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::authz::{self, MtlsMode};
use crate::detect::{self, Detected};
use crate::metrics::{ServiceLabels, Side};
use crate::model::{InboundPort, Protocol, ProxyConfig, Text, WorkloadMeta};
use crate::state::Shared;
use crate::tcp::RelayLimits;
use crate::tls::{self, Peer, Stream};
use crate::upstream::Target;
use crate::{listener, proxy_protocol};

/// Time a caller gets to send its first bytes (or PROXY header).
const DETECT_TIMEOUT: Duration = Duration::from_millis(300);
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the inbound path knows about a connection.
#[derive(Clone, Debug)]
struct InboundCtx {
    /// The original destination port, when known at connection level.
    dst_port: Option<u16>,
    /// The caller: PROXY header source, else the TCP peer.
    source_ip: IpAddr,
    /// The TCP peer's port (0 when the caller came in a PROXY header).
    source_port: u16,
    /// The original destination address (this workload).
    destination_ip: IpAddr,
    /// The caller's verified identity, when it came over mutual TLS.
    peer: Option<Arc<Peer>>,
    /// Per-connection values that would otherwise be rebuilt on every request.
    cache: Arc<http::ConnCache>,
    /// True when the connection must end: the proxy drains, or (plaintext
    /// connections) its port turned STRICT. Upgraded streams obey it too.
    drain: watch::Receiver<bool>,
}

impl InboundCtx {
    /// What authorization policies see of the connection.
    fn authz_connection(&self, destination_port: u16) -> authz::Connection<'_> {
        authz::Connection {
            source_ip: self.source_ip,
            remote_ip: self.source_ip,
            destination_ip: self.destination_ip,
            destination_port,
            principal: self.peer.as_deref().map(Peer::principal),
            sni: self.peer.as_deref().and_then(|p| p.sni.as_deref()),
        }
    }

    /// `connection_security_policy` of the destination reporter.
    fn security_label<'m>(&self, words: &'m crate::metrics::Words) -> &'m Text {
        if self.peer.is_some() {
            &words.mutual_tls
        } else {
            &words.none
        }
    }
}

/// Runs the inbound listener until shutdown.
pub async fn run(shared: Arc<Shared>, listener: TcpListener) {
    let metrics = Arc::clone(&shared.metrics);
    let shutdown = shared.shutdown.clone();
    listener::accept_loop(
        listener,
        "inbound",
        metrics,
        shutdown,
        move |stream, peer| handle_conn(Arc::clone(&shared), stream, peer),
    )
    .await;
}

/// The inbound port a destination port names: target port first, then service port.
fn find_port(cfg: &ProxyConfig, port: u16) -> Option<&InboundPort> {
    cfg.inbound
        .iter()
        .find(|p| p.target_port == port)
        .or_else(|| cfg.inbound.iter().find(|p| p.service_port == port))
}

fn sole_port(cfg: &ProxyConfig) -> Option<&InboundPort> {
    match cfg.inbound.as_slice() {
        [only] => Some(only),
        _ => None,
    }
}

async fn handle_conn(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let mut detected = detect::sniff(&stream, DETECT_TIMEOUT).await;
    let mut dst = None;
    let mut source_ip = peer.ip();
    let via_proxy_header = detected == Detected::ProxyV2;
    if via_proxy_header {
        match tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxy_protocol::read(&mut stream)).await {
            Ok(Ok(addrs)) => {
                if let Some(a) = addrs {
                    dst = Some(a.destination);
                    source_ip = a.source.ip();
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "rejecting connection with a bad PROXY header");
                return;
            }
            Err(_) => return,
        }
    } else if let Some(d) = detect::original_dst(&stream) {
        dst = Some(d);
    }
    let dst_port = dst.map(|d| d.port());
    let destination_ip = dst
        .map(|d| d.ip())
        .or_else(|| stream.local_addr().ok().map(|a| a.ip()))
        .unwrap_or(shared.settings.identity.ip);
    let running = shared.current();
    let port = running.as_ref().and_then(|r| {
        let cfg = &r.config;
        dst_port
            .and_then(|p| find_port(cfg, p))
            .or_else(|| sole_port(cfg))
            .map(|p| (p.target_port, p.protocol))
    });
    let target_port = port.map(|(p, _)| p).or(dst_port);
    let mode = running.as_ref().map_or(MtlsMode::Permissive, |r| {
        // An unknown port gets the workload-wide mode.
        r.config.security.mode_for(target_port.unwrap_or(0))
    });
    let is_tcp_port = matches!(port, Some((_, Protocol::Tcp)));
    // A TCP port only needs to look for a ClientHello when TLS could be
    // terminated or must be enforced: silent (server-first) clients otherwise
    // wait out the detection timeout.
    let may_be_tls = match mode {
        MtlsMode::Strict => true,
        MtlsMode::Permissive => shared.tls.has_credentials(),
        MtlsMode::Disable => false,
    };
    if via_proxy_header && (!is_tcp_port || may_be_tls) {
        // What follows the PROXY header decides between TLS, HTTP and raw TCP.
        detected = detect::sniff(&stream, DETECT_TIMEOUT).await;
    }
    let security = &shared.metrics.security;
    let (stream, tls_peer) = match (detected, mode) {
        // DISABLE never terminates TLS: the bytes go on as they are.
        (Detected::Tls, MtlsMode::Disable) => (Stream::Plain(stream), None),
        (Detected::Tls, _) => match shared.tls.accept(stream).await {
            Ok((s, p)) => (s, Some(Arc::new(p))),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "inbound TLS refused");
                return;
            }
        },
        (_, MtlsMode::Strict) => {
            security.handshake(Side::Inbound, "plaintext_refused");
            tracing::debug!(%peer, "plaintext refused by STRICT mTLS");
            return;
        }
        _ => (Stream::Plain(stream), None),
    };
    let http = !is_tcp_port
        && match &tls_peer {
            Some(p) => !matches!(p.alpn.as_deref(), Some(tls::ALPN_TCP | tls::ALPN_TCP_META)),
            None => matches!(detected, Detected::Http1 | Detected::Http2),
        };
    // A plaintext HTTP connection accepted before its port became STRICT
    // must not outlive that change (Envoy drains connections of a replaced
    // filter chain): it is shut down gracefully when the mode flips.
    let drain = if http && tls_peer.is_none() {
        strict_drain(&shared, target_port, true)
    } else {
        shared.shutdown.clone()
    };
    let ctx = InboundCtx {
        dst_port,
        source_ip,
        source_port: if source_ip == peer.ip() {
            peer.port()
        } else {
            0
        },
        destination_ip,
        cache: Arc::new(http::ConnCache::new(tls_peer.as_deref())),
        peer: tls_peer,
        drain,
    };
    if http {
        let shutdown = ctx.drain.clone();
        listener::serve_http(stream, shutdown, move |req| {
            http::handle(Arc::clone(&shared), ctx.clone(), req)
        })
        .await;
        return;
    }
    let Some(target_port) = target_port else {
        tracing::debug!(%peer, "inbound TCP connection with no known destination port; closing");
        return;
    };
    relay_tcp(shared, stream, target_port, ctx).await;
}

/// A stop signal for one plaintext connection: the config making `port`
/// STRICT, or (with `on_shutdown`) the proxy's own shutdown. The watcher ends
/// with the connection.
fn strict_drain(
    shared: &Arc<Shared>,
    port: Option<u16>,
    on_shutdown: bool,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let mut config = shared.config.clone();
    let mut global = shared.shutdown.clone();
    let port = port.unwrap_or(0);
    tokio::spawn(async move {
        loop {
            let strict = config
                .borrow_and_update()
                .as_ref()
                .is_some_and(|r| r.config.security.mode_for(port) == MtlsMode::Strict);
            let shutting_down = *global.borrow_and_update() && on_shutdown;
            if strict || shutting_down {
                let _ = tx.send(true);
                return;
            }
            tokio::select! {
                changed = config.changed() => if changed.is_err() { return },
                changed = global.changed() => if changed.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    rx
}

/// Counts an authorization verdict (only when policies apply) and says whether to go on.
fn authorized(shared: &Shared, has_policies: bool, verdict: &authz::Verdict) -> bool {
    if has_policies {
        let m = &shared.metrics.security;
        let policy = verdict.policy.as_deref().unwrap_or("");
        m.authorization(policy, if verdict.allowed { "allow" } else { "deny" });
        if let Some(audit) = &verdict.audit {
            m.authorization(audit, "audit");
        }
        if let Some(dry) = &verdict.dry_run {
            let policy = dry.policy.as_deref().unwrap_or("");
            m.authorization(
                policy,
                if dry.allowed {
                    "dry_run_allow"
                } else {
                    "dry_run_deny"
                },
            );
        }
    }
    verdict.allowed
}

async fn relay_tcp(shared: Arc<Shared>, mut stream: Stream, target_port: u16, ctx: InboundCtx) {
    // A peer sidecar on `sluice-tcp-meta` first says who is calling.
    let caller = match ctx.peer.as_ref().and_then(|p| p.alpn.as_deref()) {
        Some(tls::ALPN_TCP_META) => {
            let read = crate::source_meta::read_frame(&mut stream);
            match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read).await {
                Ok(Some(value)) => crate::source_meta::decode(&value),
                _ => {
                    tracing::debug!(source = %ctx.source_ip, "peer sidecar sent no caller metadata; closing");
                    return;
                }
            }
        }
        _ => None,
    };
    let running = shared.current();
    if let Some(r) = &running {
        let policy = &r.config.security;
        let verdict = policy.check_tcp(&ctx.authz_connection(target_port));
        if !authorized(&shared, policy.has_policies(), &verdict) {
            tracing::debug!(source = %ctx.source_ip, port = target_port, "tcp connection denied by authorization policy");
            return;
        }
    }
    let app_port = running
        .as_ref()
        .and_then(|r| find_port(&r.config, target_port))
        .map_or(target_port, |p| p.app_port);
    let app = SocketAddr::new(shared.settings.app_ip, app_port);
    let target = Target::plain(app);
    let timeout = shared.settings.connect_timeout;
    let upstream = match crate::upstream::connect(&target, app, timeout, None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "local app unreachable");
            return;
        }
    };
    let service = running
        .as_ref()
        .and_then(|r| find_port(&r.config, target_port))
        .map(port_service)
        .unwrap_or_default();
    let m = &shared.metrics;
    let me = shared.self_meta(running.as_deref());
    let principals = ctx.cache.principals();
    let principal = principals.map(|p| p.source.clone()).unwrap_or_default();
    let source = match caller.filter(|f| !f[0].is_empty()) {
        Some([workload, namespace, app, version]) => WorkloadMeta {
            workload: workload.as_str().into(),
            namespace: namespace.as_str().into(),
            app: app.as_str().into(),
            version: version.as_str().into(),
            principal,
            // Callers with a sidecar are in this mesh's cluster.
            cluster: me.cluster.clone(),
        },
        None => WorkloadMeta {
            principal,
            ..WorkloadMeta::default()
        },
    };
    let security = ctx.security_label(&m.words);
    let labels = m.tcp_labels(
        &m.words.destination,
        &source,
        me,
        &service,
        security,
        principals,
    );
    if ctx.peer.is_some() {
        crate::tcp::relay(
            &shared.metrics,
            &labels,
            stream,
            upstream,
            RelayLimits::INBOUND,
        )
        .await;
        return;
    }
    // A plaintext connection ends when its port becomes STRICT, as Envoy
    // closes connections of a replaced filter chain.
    let mut drain = strict_drain(&shared, Some(target_port), false);
    let stop = async {
        if drain.wait_for(|stop| *stop).await.is_err() {
            // The watcher is gone (the proxy is stopping): nothing to enforce.
            std::future::pending::<()>().await;
        }
        shared
            .metrics
            .security
            .handshake(Side::Inbound, "plaintext_refused");
        tracing::debug!(
            port = target_port,
            "plaintext TCP connection closed: port is now STRICT"
        );
    };
    crate::tcp::relay_until(
        &shared.metrics,
        &labels,
        stream,
        upstream,
        RelayLimits::INBOUND,
        stop,
    )
    .await;
}

fn port_service(p: &InboundPort) -> ServiceLabels {
    ServiceLabels {
        service: p.service.clone(),
        name: p.service_name.clone(),
        namespace: p.service_namespace.clone(),
    }
}
