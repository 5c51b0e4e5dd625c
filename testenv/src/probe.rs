//! A one-shot HTTP/1.1 GET over plain TCP or TLS, enough to poll `/readyz`
//! and `/health` and to check authorization without a Kubernetes client.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Error;

/// Status and body of one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply {
    /// The HTTP status code.
    pub status: u16,
    /// The body, de-chunked, lossily decoded as UTF-8.
    pub body: String,
}

/// A TLS client that trusts only the environment's CA.
pub(crate) fn tls_connector(ca_der: &[u8]) -> Result<TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// GETs `path` from `addr`, over TLS when `tls` is given, with a bearer
/// token when `token` is given.
pub(crate) async fn get(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
    path: &str,
    token: Option<&str>,
) -> Result<HttpReply, Error> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(Error::io(format!("connecting to {addr}")))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    let raw = match tls {
        Some(connector) => {
            let name = ServerName::IpAddress(addr.ip().into());
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(Error::io(format!("TLS handshake with {addr}")))?;
            exchange(stream, &request, addr).await?
        }
        None => exchange(tcp, &request, addr).await?,
    };
    parse(&raw).ok_or_else(|| Error::MalformedResponse(addr.to_string()))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    addr: SocketAddr,
) -> Result<Vec<u8>, Error> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(Error::io(format!("writing to {addr}")))?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw).await {
        Ok(_) => Ok(raw),
        // Go servers may close without a TLS close_notify; what was read is
        // still the whole answer since we asked for `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(Error::io(format!("reading from {addr}"))(e)),
    }
}

/// Splits a raw HTTP/1.1 response into status and (de-chunked) body.
pub(crate) fn parse(raw: &[u8]) -> Option<HttpReply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some(HttpReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_hex = size_field.split(';').next()?.trim();
        let size = usize::from_str_radix(size_hex, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests;
