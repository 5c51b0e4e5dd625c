//! Accept loops with connection accounting and graceful shutdown, and the one
//! place HTTP server connections are configured (limits, timeouts).

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

/// Largest request head accepted (larger gets 431).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Time a client gets to send a complete request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
            OPEN.fetch_add(1, Ordering::Relaxed);
            metrics.connections_active.get_or_create(&labels).inc();
            fut.await;
            metrics.connections_active.get_or_create(&labels).dec();
            OPEN.fetch_sub(1, Ordering::Relaxed);
        });
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
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let handler = Arc::new(handler);
    let service = hyper::service::service_fn(move |req| {
        let handler = Arc::clone(&handler);
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
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
