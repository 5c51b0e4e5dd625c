//! Protocol detection from the first bytes of a connection (bounded peek with a
//! timeout), and the original destination of redirected connections.

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

/// Bytes inspected at most.
pub(crate) const PEEK_LIMIT: usize = 4096;

/// The HTTP/2 connection preface start.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    /// Not HTTP (or silent): relay as TCP.
    Other,
    /// A PROXY protocol v2 header comes first.
    ProxyV2,
    /// A TLS handshake record (ClientHello).
    Tls,
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Classifies `buf`; `None` when more bytes are needed to decide.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    let sig = &crate::proxy_protocol::SIGNATURE[..];
    if let Some(d) = prefix_verdict(buf, sig, Detected::ProxyV2) {
        return d;
    }
    match crate::tls::is_client_hello(buf) {
        Some(true) => return Some(Detected::Tls),
        None => return None,
        Some(false) => {}
    }
    if let Some(d) = prefix_verdict(buf, H2_PREFACE, Detected::Http2) {
        return d;
    }
    for m in METHODS {
        if let Some(d) = prefix_verdict(buf, m, Detected::Http1) {
            return d;
        }
    }
    Some(Detected::Other)
}

/// `Some(Some(hit))` when `buf` starts with `want`, `Some(None)` when `buf` is a
/// strict prefix of `want` (undecided), `None` when it cannot be `want`.
fn prefix_verdict(buf: &[u8], want: &[u8], hit: Detected) -> Option<Option<Detected>> {
    let n = buf.len().min(want.len());
    if buf[..n] != want[..n] {
        return None;
    }
    Some(if buf.len() >= want.len() {
        Some(hit)
    } else {
        None
    })
}

/// Peeks at `stream` until the protocol is known or `timeout` passes. A client
/// that sends nothing within the timeout speaks a server-first protocol: TCP.
pub async fn sniff(stream: &TcpStream, timeout: Duration) -> Detected {
    let mut buf = vec![0u8; PEEK_LIMIT];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = 0;
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
        let n = match peeked {
            Ok(Ok(0)) | Ok(Err(_)) => return Detected::Other,
            Ok(Ok(n)) => n,
            Err(_) => return classify(&buf[..seen]).unwrap_or(Detected::Other),
        };
        if let Some(d) = classify(&buf[..n]) {
            return d;
        }
        if n >= PEEK_LIMIT {
            return Detected::Other;
        }
        if n == seen {
            // peek returns at once while data is buffered; wait for more to arrive.
            if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(2)))
                .await
                .is_err()
            {
                return Detected::Other;
            }
        }
        seen = n;
    }
}

/// The pre-redirect destination of `stream`, when iptables redirected it here.
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let sock = socket2::SockRef::from(stream);
    let dst = match local {
        SocketAddr::V4(_) => sock.original_dst_v4().ok()?,
        SocketAddr::V6(_) => sock.original_dst_v6().ok()?,
    };
    let dst = dst.as_socket()?;
    // Connecting straight to the listener reports the listener itself.
    (dst != local).then_some(dst)
}
