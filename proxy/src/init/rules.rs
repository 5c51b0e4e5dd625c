//! The nat-table rules `sluice-proxy init` installs, rendered as
//! `iptables-restore` input by a pure function of the capture settings.

use std::fmt::Write as _;

use super::{Capture, Cidr, Family, Scope};

/// Inbound capture entry chain (jumped to from PREROUTING).
pub const INBOUND: &str = "SLUICE_INBOUND";
/// Redirects to the inbound listener.
pub const IN_REDIRECT: &str = "SLUICE_IN_REDIRECT";
/// Outbound capture entry chain (jumped to from OUTPUT).
pub const OUTPUT: &str = "SLUICE_OUTPUT";
/// Redirects to the outbound listener.
pub const REDIRECT: &str = "SLUICE_REDIRECT";

/// Every chain the rules own, in declaration order.
pub const CHAINS: [&str; 4] = [INBOUND, IN_REDIRECT, OUTPUT, REDIRECT];

/// The proxy's own ports (outbound, inbound, admin, health, stats) are never
/// captured inbound: redirecting them would send probes and scrapes into 15006.
const PROXY_PORTS: [u16; 5] = [15001, 15006, 15000, 15021, 15090];

/// `iptables-restore --noflush` input for `family`. `existing` is the current
/// `iptables-save -t nat` output: jumps into our chains found there are
/// deleted first, so applying twice leaves exactly one set of rules (declaring
/// an existing chain in restore input flushes it).
pub fn render(capture: &Capture, family: Family, existing: &str) -> String {
    let mut out = String::from("*nat\n");
    for chain in CHAINS {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    for line in existing_jumps(existing) {
        let _ = writeln!(out, "-D{}", &line[2..]);
    }
    let _ = writeln!(
        out,
        "-A {IN_REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        capture.inbound_port
    );
    let _ = writeln!(
        out,
        "-A {REDIRECT} -p tcp -j REDIRECT --to-ports {}",
        capture.outbound_port
    );
    let inbound_on = !capture.include_inbound_ports.is_empty();
    if inbound_on {
        inbound(&mut out, capture);
    }
    outbound(&mut out, capture, family, inbound_on);
    out.push_str("COMMIT\n");
    out
}

/// Lines of `existing` (iptables-save format) that jump from a built-in chain
/// into one of ours.
fn existing_jumps(existing: &str) -> impl Iterator<Item = &str> {
    existing.lines().filter(|l| {
        (l.starts_with("-A PREROUTING ") || l.starts_with("-A OUTPUT "))
            && CHAINS.iter().any(|c| l.split_whitespace().any(|w| w == *c))
    })
}

fn inbound(out: &mut String, capture: &Capture) {
    let _ = writeln!(out, "-A PREROUTING -p tcp -j {INBOUND}");
    for iface in &capture.exclude_interfaces {
        let _ = writeln!(out, "-A {INBOUND} -i {iface} -j RETURN");
    }
    let mut skip: Vec<u16> = PROXY_PORTS.to_vec();
    skip.extend([capture.outbound_port, capture.inbound_port]);
    skip.extend(&capture.exclude_inbound_ports);
    let mut seen = Vec::new();
    for port in skip {
        if !seen.contains(&port) {
            seen.push(port);
            let _ = writeln!(out, "-A {INBOUND} -p tcp --dport {port} -j RETURN");
        }
    }
    match &capture.include_inbound_ports {
        Scope::All => {
            let _ = writeln!(out, "-A {INBOUND} -p tcp -j {IN_REDIRECT}");
        }
        Scope::Only(ports) => {
            for port in ports {
                let _ = writeln!(out, "-A {INBOUND} -p tcp --dport {port} -j {IN_REDIRECT}");
            }
        }
    }
}

fn outbound(out: &mut String, capture: &Capture, family: Family, inbound_on: bool) {
    let include = match &capture.include_outbound_cidrs {
        Scope::All => Scope::All,
        Scope::Only(cidrs) => Scope::Only(of_family(cidrs, family)),
    };
    if include.is_empty() {
        return;
    }
    let _ = writeln!(out, "-A OUTPUT -p tcp -j {OUTPUT}");
    for iface in &capture.exclude_interfaces {
        let _ = writeln!(out, "-A {OUTPUT} -o {iface} -j RETURN");
    }
    for port in &capture.exclude_outbound_ports {
        let _ = writeln!(out, "-A {OUTPUT} -p tcp --dport {port} -j RETURN");
    }
    let localhost = family.localhost();
    let owners = [
        ("--uid-owner", capture.proxy_uid),
        ("--gid-owner", capture.proxy_gid),
    ];
    for (flag, id) in owners {
        if inbound_on {
            // The proxy calling this pod's own (non-loopback) address through a
            // service goes back into the inbound listener, so server-side
            // policy applies to a pod calling itself.
            let _ = writeln!(
                out,
                "-A {OUTPUT} ! -d {localhost} -o lo -p tcp -m owner {flag} {id} -j {IN_REDIRECT}"
            );
        }
        // The app talking to itself over lo by address is not captured.
        let _ = writeln!(out, "-A {OUTPUT} -o lo -m owner ! {flag} {id} -j RETURN");
        // The proxy's own upstream traffic must not loop back into it.
        let _ = writeln!(out, "-A {OUTPUT} -m owner {flag} {id} -j RETURN");
    }
    let _ = writeln!(out, "-A {OUTPUT} -d {localhost} -j RETURN");
    for cidr in of_family(&capture.exclude_outbound_cidrs, family) {
        let _ = writeln!(out, "-A {OUTPUT} -d {cidr} -j RETURN");
    }
    match include {
        Scope::All => {
            let _ = writeln!(out, "-A {OUTPUT} -j {REDIRECT}");
        }
        Scope::Only(cidrs) => {
            for cidr in cidrs {
                let _ = writeln!(out, "-A {OUTPUT} -d {cidr} -j {REDIRECT}");
            }
        }
    }
}

fn of_family(cidrs: &[Cidr], family: Family) -> Vec<Cidr> {
    cidrs
        .iter()
        .filter(|c| c.family() == family)
        .copied()
        .collect()
}
