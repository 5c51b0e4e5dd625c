//! PROXY protocol v2 (binary) headers: written by the outbound side in front of a
//! connection to a peer sidecar, read by the inbound side to learn the original
//! destination and the client address.

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

/// The 12-byte v2 signature.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest address block we accept (addresses + TLVs); real headers are < 256 bytes.
const MAX_BODY: usize = 2048;

/// Addresses announced by a PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// A malformed PROXY v2 header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("bad PROXY v2 signature")]
    Signature,
    #[error("unsupported PROXY version/command byte {0:#04x}")]
    VersionCommand(u8),
    #[error("unsupported PROXY address family/protocol {0:#04x}")]
    Family(u8),
    #[error("PROXY address block of {0} bytes is too short or too long")]
    Length(usize),
    #[error("connection closed inside the PROXY header")]
    Truncated,
}

/// Encodes a `PROXY` command header for a TCP connection from `source` to `destination`.
/// Mixed families are announced as IPv6 (IPv4-mapped).
pub fn encode(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// Parses the 16-byte fixed part; returns the length of the address block.
pub fn parse_prefix(head: &[u8; 16]) -> Result<usize, ProxyHeaderError> {
    if head[..12] != SIGNATURE {
        return Err(ProxyHeaderError::Signature);
    }
    if head[12] >> 4 != 2 || (head[12] & 0x0f) > 1 {
        return Err(ProxyHeaderError::VersionCommand(head[12]));
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_BODY {
        return Err(ProxyHeaderError::Length(len));
    }
    Ok(len)
}

/// Parses the address block after the fixed part. `None` for `LOCAL` or `UNSPEC`.
pub fn parse_body(head: &[u8; 16], body: &[u8]) -> Result<Option<Addresses>, ProxyHeaderError> {
    let local = head[12] & 0x0f == 0;
    let family = head[13];
    if local || family == 0x00 {
        return Ok(None);
    }
    match family {
        0x11 => {
            let b: &[u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyHeaderError::Length(body.len()))?;
            let src = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let dst = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Ok(Some(Addresses {
                source: SocketAddr::new(src.into(), u16::from_be_bytes([b[8], b[9]])),
                destination: SocketAddr::new(dst.into(), u16::from_be_bytes([b[10], b[11]])),
            }))
        }
        0x21 => {
            let b: &[u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyHeaderError::Length(body.len()))?;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&b[..16]);
            d.copy_from_slice(&b[16..32]);
            let unmap = |a: [u8; 16]| {
                let a = Ipv6Addr::from(a);
                a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4)
            };
            Ok(Some(Addresses {
                source: SocketAddr::new(unmap(s), u16::from_be_bytes([b[32], b[33]])),
                destination: SocketAddr::new(unmap(d), u16::from_be_bytes([b[34], b[35]])),
            }))
        }
        other => Err(ProxyHeaderError::Family(other)),
    }
}

/// Reads a whole header (the caller has seen the signature) from `io`.
pub async fn read<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<Addresses>, ProxyHeaderError> {
    let mut head = [0u8; 16];
    io.read_exact(&mut head)
        .await
        .map_err(|_| ProxyHeaderError::Truncated)?;
    let len = parse_prefix(&head)?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body)
        .await
        .map_err(|_| ProxyHeaderError::Truncated)?;
    parse_body(&head, &body)
}
