//! Traffic capture settings: Istio's `traffic.sidecar.istio.io/*` pod
//! annotations turned into the arguments of `sluice-proxy init`.
//!
//! # The `sluice-proxy init` argument contract
//!
//! The `sluice-init` container runs the proxy image with exactly these
//! arguments (argv after the binary name), always all of them, always in
//! this order, each flag followed by its value as a separate argv element:
//!
//! ```text
//! init
//!   --proxy-uid 1337
//!   --outbound-port 15001
//!   --inbound-port 15006
//!   --include-outbound-cidrs '*'
//!   --exclude-outbound-cidrs ''
//!   --include-inbound-ports '*'
//!   --exclude-inbound-ports 15021,15090
//!   --exclude-outbound-ports ''
//!   [--exclude-interfaces net1,eth2]
//! ```
//!
//! `--exclude-interfaces` comes last and only when the pod excludes an
//! interface, so the argv of every other pod stays the same for an init image
//! (possibly an older one, through `sidecar.istio.io/proxyImage`) that
//! predates it.
//!
//! Value syntax (injection has validated and normalised every value; `init`
//! should still reject a malformed one and exit non-zero):
//! - a list is comma-separated with no spaces; the empty string `''` is the
//!   empty list; `*` (alone) means "everything";
//! - CIDRs are always `address/prefix` (a bare address from an annotation is
//!   written as `/32` or `/128`), IPv4 or IPv6, duplicates removed, in the
//!   order the annotation gave;
//! - ports are decimal 1..=65535, deduplicated and sorted ascending.
//!
//! Meaning (Istio's `istio-iptables`, TCP only):
//! - `--proxy-uid`: packets from processes with this UID are never
//!   redirected (the proxy's own upstream and controller connections).
//! - `--outbound-port`: outbound TCP from the pod that is captured is
//!   redirected (`REDIRECT`) to this port (the proxy's outbound listener).
//! - `--inbound-port`: inbound TCP to the pod that is captured is redirected
//!   to this port (the proxy's inbound listener).
//! - `--include-outbound-cidrs`: `*` captures every outbound destination,
//!   a list captures only those destinations, `''` captures no outbound
//!   traffic at all.
//! - `--exclude-outbound-cidrs`: destinations never captured; wins over the
//!   include list.
//! - `--include-inbound-ports`: `*` captures every inbound destination port,
//!   a list captures only those ports, `''` disables inbound capture.
//! - `--exclude-inbound-ports`: inbound ports never captured; always holds
//!   the proxy's health (15021) and stats (15090) ports so kubelet probes
//!   and Prometheus reach the proxy directly; wins over the include list.
//! - `--exclude-outbound-ports`: destination ports never captured outbound.
//! - `--exclude-interfaces`: interface names (1-15 of letters, digits, `.`,
//!   `_`, `-`, `@`, an optional trailing `+` matching every name with that
//!   prefix) whose traffic is never captured: arriving on them (inbound) or
//!   leaving through them (outbound).
//! - Traffic to loopback destinations (`127.0.0.0/8`, `::1`) is never
//!   captured as outbound, so the proxy can reach the app on localhost.
//!
//! `init` exits 0 once the rules are in place and may run again in the same
//! pod (init containers are retried), so it replaces its own chains rather
//! than appending to them.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

use super::InjectError;

/// The proxy's readiness port; never captured inbound.
pub const HEALTH_PORT: u16 = 15021;
/// The proxy's Prometheus port; never captured inbound.
pub const STATS_PORT: u16 = 15090;
/// The proxy's outbound listener.
pub const OUTBOUND_PORT: u16 = 15001;
/// The proxy's inbound listener.
pub const INBOUND_PORT: u16 = 15006;

/// Annotation prefixes read, Sluice's first (it wins when both are set).
const PREFIXES: [&str; 2] = ["traffic.sidecar.sluice.io/", "traffic.sidecar.istio.io/"];

/// Which traffic `sluice-init` redirects to the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capture {
    /// UID whose traffic is never redirected.
    pub proxy_uid: i64,
    /// `None` = every destination (`*`).
    pub include_outbound_cidrs: Option<Vec<String>>,
    /// Destinations never redirected.
    pub exclude_outbound_cidrs: Vec<String>,
    /// `None` = every port (`*`).
    pub include_inbound_ports: Option<Vec<u16>>,
    /// Inbound ports never redirected (always holds 15021 and 15090).
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports never redirected.
    pub exclude_outbound_ports: Vec<u16>,
    /// Interfaces whose traffic is never redirected, either way.
    pub exclude_interfaces: Vec<String>,
}

impl Capture {
    /// Reads the capture annotations of `pod`; a bad value names its annotation.
    pub fn from_pod(pod: &Pod, proxy_uid: i64) -> Result<Self, InjectError> {
        let include_outbound_cidrs = match annotation(pod, "includeOutboundIPRanges") {
            None => None,
            Some((name, value)) => all_or(value, |v| cidrs(&name, v))?,
        };
        let exclude_outbound_cidrs = match annotation(pod, "excludeOutboundIPRanges") {
            None => Vec::new(),
            Some((name, value)) => cidrs(&name, value)?,
        };
        let include_inbound_ports = match annotation(pod, "includeInboundPorts") {
            None => None,
            Some((name, value)) => all_or(value, |v| ports(&name, v))?,
        };
        let mut exclude_inbound_ports = match annotation(pod, "excludeInboundPorts") {
            None => Vec::new(),
            Some((name, value)) => ports(&name, value)?,
        };
        // Kubelet probes and Prometheus scrapes must reach the proxy itself.
        exclude_inbound_ports.extend([HEALTH_PORT, STATS_PORT]);
        exclude_inbound_ports.sort_unstable();
        exclude_inbound_ports.dedup();
        let exclude_outbound_ports = match annotation(pod, "excludeOutboundPorts") {
            None => Vec::new(),
            Some((name, value)) => ports(&name, value)?,
        };
        let exclude_interfaces = match annotation(pod, "excludeInterfaces") {
            None => Vec::new(),
            Some((name, value)) => interfaces(&name, value)?,
        };
        Ok(Capture {
            proxy_uid,
            include_outbound_cidrs,
            exclude_outbound_cidrs,
            include_inbound_ports,
            exclude_inbound_ports,
            exclude_outbound_ports,
            exclude_interfaces,
        })
    }

    /// The `sluice-proxy init` argv (after the binary name), per the contract above.
    pub fn to_args(&self) -> Vec<String> {
        fn list<T: ToString>(items: &Option<Vec<T>>) -> String {
            match items {
                None => "*".to_owned(),
                Some(items) => join(items),
            }
        }
        fn join<T: ToString>(items: &[T]) -> String {
            items
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }
        let mut args: Vec<String> = [
            "init".to_owned(),
            "--proxy-uid".to_owned(),
            self.proxy_uid.to_string(),
            "--outbound-port".to_owned(),
            OUTBOUND_PORT.to_string(),
            "--inbound-port".to_owned(),
            INBOUND_PORT.to_string(),
            "--include-outbound-cidrs".to_owned(),
            list(&self.include_outbound_cidrs),
            "--exclude-outbound-cidrs".to_owned(),
            join(&self.exclude_outbound_cidrs),
            "--include-inbound-ports".to_owned(),
            list(&self.include_inbound_ports),
            "--exclude-inbound-ports".to_owned(),
            join(&self.exclude_inbound_ports),
            "--exclude-outbound-ports".to_owned(),
            join(&self.exclude_outbound_ports),
        ]
        .into();
        if !self.exclude_interfaces.is_empty() {
            args.push("--exclude-interfaces".to_owned());
            args.push(join(&self.exclude_interfaces));
        }
        args
    }
}

/// The annotation `traffic.sidecar.{sluice,istio}.io/<key>` and its value.
fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<(String, &'a str)> {
    let annotations = pod.metadata.annotations.as_ref()?;
    PREFIXES.iter().find_map(|prefix| {
        let name = format!("{prefix}{key}");
        let value = annotations.get(&name)?;
        Some((name, value.as_str()))
    })
}

/// `*` → `None` (everything); anything else parsed as a list.
fn all_or<T>(
    value: &str,
    parse: impl Fn(&str) -> Result<Vec<T>, InjectError>,
) -> Result<Option<Vec<T>>, InjectError> {
    if value.trim() == "*" {
        Ok(None)
    } else {
        parse(value).map(Some)
    }
}

/// Comma-separated entries, blanks around them and empty entries ignored.
fn entries(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

fn bad(annotation: &str, reason: String) -> InjectError {
    InjectError::Annotation {
        annotation: annotation.to_owned(),
        reason,
    }
}

/// CIDRs normalised to `address/prefix`, duplicates removed, order kept.
fn cidrs(annotation: &str, value: &str) -> Result<Vec<String>, InjectError> {
    let mut out: Vec<String> = Vec::new();
    for entry in entries(value) {
        let cidr = parse_cidr(entry)
            .ok_or_else(|| bad(annotation, format!("{entry:?} is not a CIDR or IP address")))?;
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    Ok(out)
}

fn parse_cidr(entry: &str) -> Option<String> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (entry, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        // Digits only: `u8::from_str` would also take a leading `+`.
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    (prefix <= max).then(|| format!("{addr}/{prefix}"))
}

/// Interface names as iptables takes them (see the contract above),
/// duplicates removed, order kept.
fn interfaces(annotation: &str, value: &str) -> Result<Vec<String>, InjectError> {
    let mut out: Vec<String> = Vec::new();
    for entry in entries(value) {
        if !sluice_api::capture::is_interface_name(entry) {
            let rule = sluice_api::capture::INTERFACE_NAME_RULE;
            return Err(bad(
                annotation,
                format!("{entry:?} is not a network interface name ({rule})"),
            ));
        }
        if !out.iter().any(|i| i == entry) {
            out.push(entry.to_owned());
        }
    }
    Ok(out)
}

/// Ports 1..=65535, deduplicated and sorted.
fn ports(annotation: &str, value: &str) -> Result<Vec<u16>, InjectError> {
    let mut out = Vec::new();
    for entry in entries(value) {
        let port = entry
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0 && entry.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(annotation, format!("{entry:?} is not a port (1-65535)")))?;
        out.push(port);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
