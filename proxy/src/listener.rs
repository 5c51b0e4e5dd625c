//! Accept loops with connection accounting and graceful shutdown, and the one
//! place HTTP server connections are configured (limits, timeouts).

pub(crate) mod head_guard;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::Body;
use crate::metrics::{ListenerLabels, Metrics};

use head_guard::HeadGuard;

/// Largest request head accepted (larger gets 431).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Time a client gets to complete an HTTP/1 request head once it started
/// one; a slowloris client trickling header bytes is cut off after it. Idle
/// keep-alive time between requests does not count: `HeadGuard` enforces it,
/// not hyper, whose timer also runs while waiting for the next request.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 streams one connection may have open; more are refused
/// (REFUSED_STREAM), so a stream flood costs at most this many requests.
pub const MAX_CONCURRENT_STREAMS: u32 = 200;
/// Streams a client may reset before the server accepted them, before the
/// connection is closed with GOAWAY (the "rapid reset" attack, CVE-2023-44487).
const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// Streams this side may reset for protocol errors before closing the connection.
const MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;

/// Connections open on every listener, for draining at shutdown.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// How many connections are open right now.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// Resolves once shutdown was requested.
pub async fn shutdown_requested(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: treat that as shutdown too.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Accepts connections until shutdown, running `handle` for each on its own task.
pub async fn accept_loop<H, F>(
    listener: TcpListener,
    name: &'static str,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let labels = ListenerLabels { listener: name };
    let stop = shutdown_requested(shutdown);
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        metrics.connections_accepted.get_or_create(&labels).inc();
        let fut = handle(stream, peer);
        let metrics = Arc::clone(&metrics);
        let labels = labels.clone();
        tokio::spawn(async move {
            let _open = OpenConnection::new(metrics, labels);
            fut.await;
        });
    }
}

/// Counts one open connection until dropped, so a connection task that panics
/// or is cancelled still leaves the gauges right.
struct OpenConnection {
    metrics: Arc<Metrics>,
    labels: ListenerLabels,
}

impl OpenConnection {
    fn new(metrics: Arc<Metrics>, labels: ListenerLabels) -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        metrics.connections_active.get_or_create(&labels).inc();
        OpenConnection { metrics, labels }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics
            .connections_active
            .get_or_create(&self.labels)
            .dec();
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves HTTP/1.1 or HTTP/2 (detected) on `io` with `handler`, finishing in-flight
/// requests when shutdown is requested.
pub async fn serve_http<I, H, F>(io: I, shutdown: watch::Receiver<bool>, handler: H)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(MAX_HEAD_BYTES)
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESET_STREAMS);
    let handler = Arc::new(handler);
    let service = hyper::service::service_fn(move |req| {
        // Boxed: hyper keeps a slot of the service future's size for the
        // whole life of an HTTP/1 connection, and a request's work is
        // ~10 KB of state. Boxed, an idle keep-alive connection holds a
        // pointer instead, for one allocation per request.
        let work = Box::pin(handler(req));
        async move { Ok::<_, Infallible>(work.await) }
    });
    let io = HeadGuard::new(io, MAX_HEAD_BYTES, HEADER_READ_TIMEOUT);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let stop = shutdown_requested(shutdown);
    tokio::pin!(stop);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
            return;
        }
        _ = &mut stop => {}
    }
    conn.as_mut().graceful_shutdown();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}
