//! Sends one request the way a scenario step does: through a sidecar's outbound listener (explicit
//! HTTP proxy, h2c, or a `CONNECT` tunnel for TCP) or straight to a sidecar's inbound listener.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[cfg(test)]
mod tests;

/// Why a request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect or I/O failed.
    #[error("connect/io: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (bad URL, header or method).
    #[error("bad request: {0}")]
    Build(String),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TCP tunnel answered something we did not understand.
    #[error("tunnel: {0}")]
    Tunnel(String),
}

/// Where the request enters the mesh.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// A client sidecar's outbound listener (:15001): the URL's authority picks the service.
    Outbound(SocketAddr),
    /// A server sidecar's inbound listener (:15006), no client sidecar.
    Inbound(SocketAddr),
}

/// One request to send.
#[derive(Debug, Clone)]
pub struct Call {
    /// Entry point.
    pub via: Via,
    /// `http://host[:port]/path?query` or `tcp://host:port`.
    pub url: String,
    /// HTTP method.
    pub method: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body (for TCP: the bytes sent through the tunnel).
    pub body: Bytes,
    /// Speak HTTP/2 prior knowledge instead of HTTP/1.1.
    pub h2: bool,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// HTTP status; `None` when no HTTP response arrived.
    pub status: Option<u16>,
    /// Response headers (TCP: the echo's prefix line as `x-echo-*` headers).
    pub headers: http::HeaderMap,
    /// Response body.
    pub body: Bytes,
    /// Time from sending to the full response.
    pub latency: Duration,
    /// Why there was no response.
    pub error: Option<String>,
}

impl Outcome {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The answering echo's version, `None` when no echo answered.
    pub fn version(&self) -> Option<&str> {
        self.header("x-echo-version")
    }

    /// `service/version/instance` of the answering echo.
    pub fn instance(&self) -> Option<String> {
        Some(format!(
            "{}/{}/{}",
            self.header("x-echo-service")?,
            self.version()?,
            self.header("x-echo-instance")?
        ))
    }
}

/// Sends one call; never fails, a missing response is an `Outcome` with `status: None`.
pub async fn send(call: &Call) -> Outcome {
    let start = Instant::now();
    let result = match tokio::time::timeout(call.timeout, send_inner(call)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout(call.timeout)),
    };
    let latency = start.elapsed();
    match result {
        Ok((status, headers, body)) => Outcome {
            status,
            headers,
            body,
            latency,
            error: None,
        },
        Err(e) => Outcome {
            status: None,
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            latency,
            error: Some(e.to_string()),
        },
    }
}

type Answer = (Option<u16>, http::HeaderMap, Bytes);

async fn send_inner(call: &Call) -> Result<Answer, ClientError> {
    if let Some(authority) = call.url.strip_prefix("tcp://") {
        let authority = authority.trim_end_matches('/');
        return send_tcp(call.via, authority, &call.body).await;
    }
    let uri: http::Uri = call
        .url
        .parse()
        .map_err(|e| ClientError::Build(format!("url {}: {e}", call.url)))?;
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::Build(format!("url {} has no host", call.url)))?
        .to_string();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let (addr, target) = match call.via {
        // An explicit proxy takes the absolute form; HTTP/2 carries it in :scheme/:authority.
        Via::Outbound(addr) => (addr, call.url.clone()),
        Via::Inbound(addr) if call.h2 => (addr, call.url.clone()),
        Via::Inbound(addr) => (addr, path.clone()),
    };
    // A `host` header in the step overrides the URL's authority (HTTP/2: the `:authority`).
    let host_override = call
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone());
    let target = match (
        &host_override,
        call.h2 || matches!(call.via, Via::Outbound(_)),
    ) {
        (Some(host), true) => format!("http://{host}{path}"),
        _ => target,
    };
    let mut builder = http::Request::builder()
        .method(call.method.as_str())
        .uri(target);
    if !call.h2 {
        builder = builder.header(http::header::HOST, host_override.unwrap_or(authority));
    }
    for (k, v) in call
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
    {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let req = builder
        .body(Full::new(call.body.clone()))
        .map_err(|e| ClientError::Build(e.to_string()))?;
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(stream);
    let resp = if call.h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((Some(parts.status.as_u16()), parts.headers, body))
}

async fn send_tcp(via: Via, authority: &str, body: &[u8]) -> Result<Answer, ClientError> {
    let mut stream = match via {
        Via::Outbound(addr) => {
            let mut stream = TcpStream::connect(addr).await?;
            let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
            stream.write_all(connect.as_bytes()).await?;
            let status = read_connect_status(&mut stream).await?;
            if status != 200 {
                return Ok((Some(status), http::HeaderMap::new(), Bytes::new()));
            }
            stream
        }
        Via::Inbound(addr) => {
            let mut stream = TcpStream::connect(addr).await?;
            let port = authority
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .ok_or_else(|| ClientError::Build(format!("tcp url needs a port: {authority}")))?;
            let local = stream.local_addr()?;
            let header = proxy_v2_header(local, SocketAddr::new(addr.ip(), port));
            stream.write_all(&header).await?;
            stream
        }
    };
    stream.write_all(body).await?;
    // The echo answers one prefix line then our bytes; stop as soon as all of it is here.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(nl) = got.iter().position(|b| *b == b'\n')
            && got.len() >= nl + 1 + body.len()
        {
            break;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let Some(nl) = got.iter().position(|b| *b == b'\n') else {
        return Err(ClientError::Tunnel(format!(
            "connection closed after {} bytes without the echo's prefix line",
            got.len()
        )));
    };
    let line = String::from_utf8_lossy(&got[..nl]).to_string();
    let mut parts = line.splitn(3, '/');
    let mut headers = http::HeaderMap::new();
    for name in ["x-echo-service", "x-echo-version", "x-echo-instance"] {
        let value = parts.next().unwrap_or_default();
        if let Ok(v) = http::HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    Ok((Some(200), headers, Bytes::from(got[nl + 1..].to_vec())))
}

async fn read_connect_status(stream: &mut TcpStream) -> Result<u16, ClientError> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte so that no tunnelled data is consumed past the header block.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(ClientError::Tunnel(
                "CONNECT response header too long".into(),
            ));
        }
        if stream.read(&mut byte).await? == 0 {
            return Err(ClientError::Tunnel("closed before CONNECT response".into()));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Tunnel(format!("bad CONNECT response: {text:?}")))
}

/// A PROXY protocol v2 header announcing a TCP connection from `src` to `dst`.
pub fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY command
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            h.push(0x11);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&d.ip().octets());
            h.extend_from_slice(&s.port().to_be_bytes());
            h.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                std::net::IpAddr::V4(ip) => ip.to_ipv6_mapped().octets(),
                std::net::IpAddr::V6(ip) => ip.octets(),
            };
            h.push(0x21);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6(src));
            h.extend_from_slice(&v6(dst));
            h.extend_from_slice(&src.port().to_be_bytes());
            h.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
    h
}

/// A plain response of the helper requests below.
#[derive(Debug, Clone)]
pub struct Plain {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: Bytes,
}

/// `GET path` over HTTP/1.1 to `addr` (admin, health, stats and debug endpoints).
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<Plain, ClientError> {
    plain(addr, "GET", path, Bytes::new()).await
}

/// `POST path` with a JSON body over HTTP/1.1 to `addr`.
pub async fn http_post_json(
    addr: SocketAddr,
    path: &str,
    json: String,
) -> Result<Plain, ClientError> {
    plain(addr, "POST", path, Bytes::from(json)).await
}

async fn plain(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<Plain, ClientError> {
    let timeout = Duration::from_secs(5);
    let fut = async {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Plain { status, body })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(ClientError::Timeout(timeout)))
}
