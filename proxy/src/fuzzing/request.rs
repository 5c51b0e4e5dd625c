//! The byte layouts the structured fuzz targets read: a length-prefixed
//! protobuf message, then a text block of connection facts and a request head.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Method, Request, Uri};

/// What the connection tells the proxy about the caller.
#[derive(Clone, Debug)]
pub struct ConnFacts {
    /// Peer identity without "spiffe://"; an empty line is `None`.
    pub principal: Option<String>,
    /// SNI; an empty line is `None`.
    pub sni: Option<String>,
    /// Caller address.
    pub source_ip: IpAddr,
    /// Original destination.
    pub destination: SocketAddr,
}

/// Splits `data` into a message of the length in its first two bytes (big
/// endian, cut at the end of `data`) and the bytes after it.
pub fn split_message(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], &[]);
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    rest.split_at(len)
}

/// Reads text lines: principal, SNI, source IP, destination `ip:port`, then a
/// request head (`METHOD TARGET` and `name: value` lines). Unparseable
/// connection facts fall back to loopback; an unparseable request line gives
/// no request; invalid header lines are skipped, as a codec would refuse them.
pub fn split_request(data: &[u8]) -> (ConnFacts, Option<http::request::Parts>) {
    let mut lines = data
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut text = || {
        lines
            .next()
            .and_then(|l| std::str::from_utf8(l).ok())
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    };
    let principal = text();
    let sni = text();
    let source_ip = text()
        .and_then(|s| s.parse().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let destination = text()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 80)));
    let facts = ConnFacts {
        principal,
        sni,
        source_ip,
        destination,
    };
    let request = lines.next().and_then(|line| {
        let mut words = line.splitn(2, |b| *b == b' ');
        let method = Method::from_bytes(words.next()?).ok()?;
        let uri = Uri::try_from(words.next()?).ok()?;
        let mut parts = Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .ok()?
            .into_parts()
            .0;
        for line in lines {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                parts.headers.append(n, v);
            }
        }
        Some(parts)
    });
    (facts, request)
}

/// A reader handing out a byte slice at most `step` bytes per read.
pub(super) struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl<'a> Trickle<'a> {
    pub(super) fn new(data: &'a [u8], step: usize) -> Self {
        Trickle { data, step }
    }
}

impl tokio::io::AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}
