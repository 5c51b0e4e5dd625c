//! `sluice-proxy init`: programs the pod network namespace's nat table so the
//! app's TCP traffic reaches the sidecar (Istio's `istio-iptables`, adapted).

mod apply;
mod rules;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use clap::Parser;

pub use apply::run;

/// Flags of `sluice-proxy init`.
#[derive(Debug, Parser)]
#[command(
    name = "sluice-proxy init",
    about = "Redirect the pod's TCP traffic to the sidecar with iptables"
)]
pub struct InitFlags {
    /// UID the proxy runs as; its own traffic is never redirected.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// GID the proxy runs as (defaults to the UID).
    #[arg(long)]
    pub proxy_gid: Option<u32>,
    /// Port of the outbound listener.
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// Port of the inbound listener.
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// Destinations captured outbound: `*` or comma-separated CIDRs ("" = none).
    #[arg(long, default_value = "*", allow_hyphen_values = true)]
    pub include_outbound_cidrs: String,
    /// Destinations never captured outbound: comma-separated CIDRs.
    #[arg(long, default_value = "")]
    pub exclude_outbound_cidrs: String,
    /// Ports captured inbound: `*` or comma-separated ports ("" = none).
    #[arg(long, default_value = "*")]
    pub include_inbound_ports: String,
    /// Ports never captured inbound: comma-separated ports.
    #[arg(long, default_value = "")]
    pub exclude_inbound_ports: String,
    /// Destination ports never captured outbound: comma-separated ports.
    #[arg(long, default_value = "")]
    pub exclude_outbound_ports: String,
    /// Network interfaces whose traffic is never captured, either way:
    /// comma-separated names (Istio's `excludeInterfaces`).
    #[arg(long, default_value = "")]
    pub exclude_interfaces: String,
    /// Print the iptables-restore input instead of applying it.
    #[arg(long)]
    pub dry_run: bool,
}

/// A flag value `init` cannot use; names the flag and the value.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}: {reason}")]
pub struct BadFlag {
    pub flag: &'static str,
    pub value: String,
    pub reason: String,
}

/// Everything or an explicit list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope<T> {
    All,
    Only(Vec<T>),
}

impl<T> Scope<T> {
    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        matches!(self, Scope::Only(v) if v.is_empty())
    }
}

/// An IP family (iptables vs ip6tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The loopback range of this family (the whole 127/8, as the injector's
    /// contract promises loopback destinations are never captured).
    pub fn localhost(self) -> Cidr {
        match self {
            Family::V4 => Cidr {
                ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Family::V6 => Cidr {
                ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        }
    }
}

/// An address range `ip/prefix` (a bare address is a host route).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    ip: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The family of the address.
    pub fn family(&self) -> Family {
        match self.ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix {p:?} is not 0..={max}"))?,
        };
        Ok(Cidr { ip, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

/// Parsed, validated capture settings: the input of rule generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub include_outbound_cidrs: Scope<Cidr>,
    pub exclude_outbound_cidrs: Vec<Cidr>,
    pub include_inbound_ports: Scope<u16>,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    /// Interfaces whose inbound and outbound traffic is left alone.
    pub exclude_interfaces: Vec<String>,
}

impl TryFrom<&InitFlags> for Capture {
    type Error = BadFlag;

    fn try_from(f: &InitFlags) -> Result<Self, BadFlag> {
        Ok(Capture {
            proxy_uid: f.proxy_uid,
            proxy_gid: f.proxy_gid.unwrap_or(f.proxy_uid),
            outbound_port: nonzero_port("--outbound-port", f.outbound_port)?,
            inbound_port: nonzero_port("--inbound-port", f.inbound_port)?,
            include_outbound_cidrs: scope(
                "--include-outbound-cidrs",
                &f.include_outbound_cidrs,
                Cidr::parse,
            )?,
            exclude_outbound_cidrs: list(
                "--exclude-outbound-cidrs",
                &f.exclude_outbound_cidrs,
                Cidr::parse,
            )?,
            include_inbound_ports: scope(
                "--include-inbound-ports",
                &f.include_inbound_ports,
                parse_port,
            )?,
            exclude_inbound_ports: list(
                "--exclude-inbound-ports",
                &f.exclude_inbound_ports,
                parse_port,
            )?,
            exclude_outbound_ports: list(
                "--exclude-outbound-ports",
                &f.exclude_outbound_ports,
                parse_port,
            )?,
            exclude_interfaces: list(
                "--exclude-interfaces",
                &f.exclude_interfaces,
                parse_interface,
            )?,
        })
    }
}

fn nonzero_port(flag: &'static str, port: u16) -> Result<u16, BadFlag> {
    if port == 0 {
        return Err(BadFlag {
            flag,
            value: "0".to_owned(),
            reason: "port must be 1..=65535".to_owned(),
        });
    }
    Ok(port)
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?} is not a port (1..=65535)"))
}

/// An interface name as iptables takes it (`sluice_api::capture`).
fn parse_interface(s: &str) -> Result<String, String> {
    if sluice_api::capture::is_interface_name(s) {
        Ok(s.to_owned())
    } else {
        let rule = sluice_api::capture::INTERFACE_NAME_RULE;
        Err(format!("{s:?} is not an interface name ({rule})"))
    }
}

fn scope<T>(
    flag: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Scope<T>, BadFlag> {
    if value.trim() == "*" {
        return Ok(Scope::All);
    }
    list(flag, value, parse).map(Scope::Only)
}

fn list<T>(
    flag: &'static str,
    value: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, BadFlag> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            parse(item).map_err(|reason| BadFlag {
                flag,
                value: value.to_owned(),
                reason,
            })
        })
        .collect()
}

/// The `init` arguments when the process was started as `sluice-proxy init ...`.
pub fn invocation() -> Option<Vec<std::ffi::OsString>> {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_none_or(|a| a != "init") {
        return None;
    }
    // Help and errors then read `sluice-proxy init`, not `init`.
    Some(
        std::iter::once("sluice-proxy init".into())
            .chain(args.skip(1))
            .collect(),
    )
}
