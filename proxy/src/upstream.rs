//! Connections to upstreams: TCP connect with a timeout (and an optional PROXY v2
//! header), pooled HTTP/1.1 keep-alive connections and shared, multiplexed h2c
//! connections per (address, announced destination).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::body::{self, Body};
use crate::proxy_protocol;

/// Idle HTTP/1.1 connections kept per upstream.
const MAX_IDLE_PER_KEY: usize = 64;

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
}

impl UpstreamError {
    /// Whether no connection could be made (Envoy's `UF`), as opposed to a reset (`UC`).
    pub fn is_connect_failure(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout(_)
        )
    }
}

/// Where a connection goes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Target {
    /// Address to connect to.
    pub connect: SocketAddr,
    /// When set, a PROXY v2 header announcing this destination is written first.
    pub announce: Option<SocketAddr>,
}

/// Opens a TCP connection to `target`, writing a PROXY header when asked.
pub async fn connect(
    target: Target,
    source: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, UpstreamError> {
    let addr = target.connect;
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => return Err(UpstreamError::Connect { addr, source }),
        Err(_) => return Err(UpstreamError::ConnectTimeout(addr)),
    };
    let _ = stream.set_nodelay(true);
    if let Some(dst) = target.announce {
        let header = proxy_protocol::encode(source, dst);
        stream
            .write_all(&header)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
    }
    Ok(stream)
}

/// One shared h2 connection per target, and a lock held while (re)connecting.
#[derive(Default)]
struct H2Slot {
    sender: Mutex<Option<http2::SendRequest<Body>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl H2Slot {
    fn live(&self) -> Option<http2::SendRequest<Body>> {
        let sender = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        sender.as_ref().filter(|s| !s.is_closed()).cloned()
    }
}

type H1Idle = HashMap<Target, Vec<http1::SendRequest<Body>>>;

/// Pools of upstream HTTP connections.
pub struct Pools {
    h1: Arc<Mutex<H1Idle>>,
    h2: Mutex<HashMap<Target, Arc<H2Slot>>>,
    connect_timeout: Duration,
    /// Source announced in PROXY headers of pooled connections (they carry many clients).
    source: SocketAddr,
}

impl Pools {
    /// Empty pools.
    pub fn new(connect_timeout: Duration, source: SocketAddr) -> Self {
        Pools {
            h1: Arc::default(),
            h2: Mutex::default(),
            connect_timeout,
            source,
        }
    }

    /// Sends `req` over HTTP/2 (prior knowledge) on a shared connection to `target`.
    /// The request URI must be absolute (scheme and authority become pseudo-headers).
    pub async fn send_h2(
        &self,
        target: Target,
        req: Request<Body>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let addr = target.connect;
        let mut sender = self.h2_sender(target).await?;
        sender
            .ready()
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request { addr, source })
    }

    /// The live shared connection to `target`, connecting once when there is none:
    /// concurrent first requests wait for one handshake instead of racing their own.
    async fn h2_sender(&self, target: Target) -> Result<http2::SendRequest<Body>, UpstreamError> {
        let slot = {
            let mut pool = self.h2.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(pool.entry(target).or_default())
        };
        if let Some(s) = slot.live() {
            return Ok(s);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(s) = slot.live() {
            return Ok(s);
        }
        let addr = target.connect;
        let stream = connect(target, self.source, self.connect_timeout).await?;
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
        *slot.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    /// Sends `req` over HTTP/1.1, reusing an idle keep-alive connection when one is
    /// ready. The connection returns to the pool when the response body ends.
    pub async fn send_h1(
        &self,
        target: Target,
        req: Request<Body>,
    ) -> Result<Response<Body>, UpstreamError> {
        let addr = target.connect;
        let idle = self.take_idle(target);
        let (mut sender, req) = match idle {
            Some(mut sender) => match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.recycle(target, sender, resp)),
                // The idle connection was closed under us before the request went out:
                // the request is intact, so it can go on a fresh connection.
                Err(mut e) => match e.take_message() {
                    Some(req) => (self.new_h1(target).await?, req),
                    None => {
                        return Err(UpstreamError::Request {
                            addr,
                            source: e.into_error(),
                        });
                    }
                },
            },
            None => (self.new_h1(target).await?, req),
        };
        let resp = sender
            .send_request(req)
            .await
            .map_err(|source| UpstreamError::Request { addr, source })?;
        Ok(self.recycle(target, sender, resp))
    }

    fn take_idle(&self, target: Target) -> Option<http1::SendRequest<Body>> {
        let mut pool = self.h1.lock().unwrap_or_else(|p| p.into_inner());
        let list = pool.get_mut(&target)?;
        while let Some(s) = list.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    async fn new_h1(&self, target: Target) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let addr = target.connect;
        let stream = connect(target, self.source, self.connect_timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "http/1 upstream connection ended");
            }
        });
        Ok(sender)
    }

    fn recycle(
        &self,
        target: Target,
        sender: http1::SendRequest<Body>,
        resp: Response<hyper::body::Incoming>,
    ) -> Response<Body> {
        let pool = Arc::clone(&self.h1);
        resp.map(move |incoming| {
            body::boxed(crate::body::Finishing::new(
                incoming,
                move |end: crate::body::End| {
                    // Only a fully read response leaves the connection reusable.
                    if end.complete && !sender.is_closed() {
                        let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
                        let list = pool.entry(target).or_default();
                        if list.len() < MAX_IDLE_PER_KEY {
                            list.push(sender);
                        }
                    }
                },
            ))
        })
    }
}
