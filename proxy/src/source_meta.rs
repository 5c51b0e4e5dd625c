//! The caller's workload metadata, carried from the client sidecar to the
//! server sidecar in one header (metric labels only: identity comes from the
//! mTLS certificate). Istio's sidecars exchange the same facts in
//! `x-envoy-peer-metadata`.
//!
//! `x-sluice-source-meta: <workload>,<namespace>,<app>,<version>`, each field
//! with `%` and `,` percent-escaped (Kubernetes names and label values hold
//! neither, so the value is usually the names as they are). One header rather
//! than one per field: every custom header costs the receiving side a parse,
//! an allocation for its name and a hash insert on each request.

use http::HeaderValue;
use http::header::HeaderName;

#[cfg(test)]
mod tests;

/// The header this version sends.
pub const SOURCE_META: HeaderName = HeaderName::from_static("x-sluice-source-meta");

/// What every caller-metadata header name starts with.
pub const SOURCE_PREFIX: &str = "x-sluice-source-";

/// The per-field headers older versions send (workload, namespace, app,
/// version): a server sidecar still reads them, so labels survive a rolling
/// upgrade.
pub const LEGACY_FIELDS: [HeaderName; 4] = [
    HeaderName::from_static("x-sluice-source-workload"),
    HeaderName::from_static("x-sluice-source-namespace"),
    HeaderName::from_static("x-sluice-source-app"),
    HeaderName::from_static("x-sluice-source-version"),
];

/// Sent by still older versions and never trusted (the caller's identity
/// comes from its certificate); only removed.
pub const LEGACY_PRINCIPAL: HeaderName = HeaderName::from_static("x-sluice-source-principal");

/// Removes every caller-metadata header this or an earlier version uses.
pub fn remove_all(headers: &mut http::HeaderMap) {
    headers.remove(SOURCE_META);
    headers.remove(LEGACY_PRINCIPAL);
    for name in &LEGACY_FIELDS {
        headers.remove(name);
    }
}

/// The header value for `fields` (workload, namespace, app, version); `None`
/// when a field holds bytes no header value may carry.
pub fn encode(fields: [&str; 4]) -> Option<HeaderValue> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        for &b in field.as_bytes() {
            match b {
                b'%' => out.extend_from_slice(b"%25"),
                b',' => out.extend_from_slice(b"%2C"),
                _ => out.push(b),
            }
        }
    }
    HeaderValue::from_bytes(&out).ok()
}

/// The four fields of a header value; `None` unless it has exactly four
/// fields, each valid UTF-8 with only `%25` and `%2C` escapes.
pub fn decode(value: &[u8]) -> Option<[String; 4]> {
    let mut parts = value.split(|&b| b == b',');
    let mut fields: [String; 4] = Default::default();
    for field in &mut fields {
        *field = unescape(parts.next()?)?;
    }
    parts.next().is_none().then_some(fields)
}

fn unescape(field: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let (code, tail) = tail.split_at_checked(2)?;
            out.push(match code {
                b"25" => b'%',
                b"2C" | b"2c" => b',',
                _ => return None,
            });
            rest = tail;
        } else {
            out.push(b);
            rest = tail;
        }
    }
    String::from_utf8(out).ok()
}

/// Longest metadata frame accepted on a TCP connection.
pub const MAX_FRAME: usize = 1024;

/// The caller's metadata as the first bytes of a TCP connection between
/// sidecars (ALPN `sluice-tcp-meta`): a 2-byte big-endian length, then the
/// header's value.
pub fn frame(value: &HeaderValue) -> Vec<u8> {
    let bytes = value.as_bytes();
    let len = u16::try_from(bytes.len().min(MAX_FRAME)).unwrap_or(0);
    let mut out = Vec::with_capacity(2 + usize::from(len));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
    out
}

/// Reads a frame written by [`frame`]; `None` when the connection ends
/// inside it or announces more than [`MAX_FRAME`] bytes.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await.ok()?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_FRAME {
        return None;
    }
    let mut value = vec![0u8; len];
    io.read_exact(&mut value).await.ok()?;
    Some(value)
}
