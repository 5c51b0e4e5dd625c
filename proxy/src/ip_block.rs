//! An IP address or CIDR range, as AuthorizationPolicy `ipBlocks` and
//! ServiceEntry `addresses` give them.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

/// A single address or a CIDR range, v4 or v6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpBlock {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl IpBlock {
    /// Parses `1.2.3.4`, `10.0.0.0/8`, `::1` or `2001:db8::/32`; host bits
    /// below the prefix are ignored, as a CIDR range does.
    pub fn parse(value: &str) -> Result<Self, String> {
        let (addr, len) = match value.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (value, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{value:?} is not an IP address or CIDR range"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u32>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => return Err(format!("{value:?} has a prefix length outside 0..={max}")),
            },
        };
        Ok(match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                IpBlock::V4 {
                    net: u32::from(v4) & mask,
                    mask,
                }
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                IpBlock::V6 {
                    net: u128::from(v6) & mask,
                    mask,
                }
            }
        })
    }

    /// The prefix length (32 or 128 for a single address).
    pub fn prefix_len(&self) -> u32 {
        match self {
            IpBlock::V4 { mask, .. } => mask.count_ones(),
            IpBlock::V6 { mask, .. } => mask.count_ones(),
        }
    }

    /// The address, when the block is a single one (a full-length prefix).
    pub fn single(&self) -> Option<IpAddr> {
        match *self {
            IpBlock::V4 { net, mask } if mask == u32::MAX => {
                Some(IpAddr::V4(std::net::Ipv4Addr::from(net)))
            }
            IpBlock::V6 { net, mask } if mask == u128::MAX => {
                Some(IpAddr::V6(std::net::Ipv6Addr::from(net)))
            }
            _ => None,
        }
    }

    /// Whether the address is in the block; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip.to_canonical()) {
            (IpBlock::V4 { net, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == *net,
            (IpBlock::V6 { net, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == *net,
            _ => false,
        }
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IpBlock::V4 { net, mask } => {
                write!(f, "{}/{}", std::net::Ipv4Addr::from(net), mask.count_ones())
            }
            IpBlock::V6 { net, mask } => {
                write!(f, "{}/{}", std::net::Ipv6Addr::from(net), mask.count_ones())
            }
        }
    }
}

impl Serialize for IpBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
