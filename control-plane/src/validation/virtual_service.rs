//! VirtualService rules: hosts, gateways, delegation, TCP and TLS routes and
//! destinations. HTTP routes are checked in [`super::http_route`].

use super::field::{
    at, check_export_to, check_gateways, check_labels, host_subset_of, ip_or_cidr,
    is_dns1123_label, item, port, wildcard_domain,
};
use super::http_route::check_http_route;
use super::{FieldErrors, Validate};
use crate::crd::{
    Destination, L4MatchAttributes, RouteDestination, TlsMatchAttributes, VirtualServiceSpec,
};

impl Validate for VirtualServiceSpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        let applies_to_mesh = self.gateways.is_empty() || self.gateways.iter().any(|g| g == "mesh");
        // A VirtualService without hosts is a delegate, only reachable from a root's `delegate`.
        let is_delegate = self.hosts.is_empty();
        if is_delegate {
            if !self.gateways.is_empty() {
                errors.push(
                    at(spec, "gateways"),
                    "delegate virtual service must have no gateways specified",
                );
            }
            if !self.tls.is_empty() {
                errors.push(
                    at(spec, "tls"),
                    "delegate virtual service must have no tls route specified",
                );
            }
            if !self.tcp.is_empty() {
                errors.push(
                    at(spec, "tcp"),
                    "delegate virtual service must have no tcp route specified",
                );
            }
        }
        for (i, host) in self.hosts.iter().enumerate() {
            let p = item(spec, "hosts", i);
            if host == "*" {
                if applies_to_mesh {
                    errors.push(p, "wildcard host * is not allowed for virtual services bound to the mesh gateway");
                }
            } else if !super::field::is_ip(host) {
                errors.check(p, wildcard_domain(host));
            }
        }
        check_gateways(errors, &at(spec, "gateways"), &self.gateways);
        if self.http.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            errors.push(spec, "http, tcp or tls must be provided in virtual service");
        }
        for (i, route) in self.http.iter().enumerate() {
            check_http_route(errors, &item(spec, "http", i), route, is_delegate);
        }
        for (i, route) in self.tcp.iter().enumerate() {
            let p = item(spec, "tcp", i);
            for (j, m) in route.match_.iter().enumerate() {
                check_l4_match(errors, &item(&p, "match", j), m);
            }
            if route.route.is_empty() {
                errors.push(at(&p, "route"), "TCP route is required");
            }
            check_route_destinations(errors, &p, &route.route);
        }
        for (i, route) in self.tls.iter().enumerate() {
            let p = item(spec, "tls", i);
            if route.match_.is_empty() {
                errors.push(
                    at(&p, "match"),
                    "TLS route must have at least one match condition",
                );
            }
            for (j, m) in route.match_.iter().enumerate() {
                check_tls_match(errors, &item(&p, "match", j), m, &self.hosts);
            }
            if route.route.is_empty() {
                errors.push(at(&p, "route"), "TLS route is required");
            }
            check_route_destinations(errors, &p, &route.route);
        }
        check_export_to(errors, &at(spec, "exportTo"), &self.export_to);
    }
}

fn check_l4_match(errors: &mut FieldErrors, path: &str, m: &L4MatchAttributes) {
    for (i, subnet) in m.destination_subnets.iter().enumerate() {
        errors.check(item(path, "destinationSubnets", i), ip_or_cidr(subnet));
    }
    if let Some(p) = m.port {
        errors.check(at(path, "port"), port(p));
    }
    check_labels(errors, &at(path, "sourceLabels"), &m.source_labels);
    check_gateways(errors, &at(path, "gateways"), &m.gateways);
    check_source_namespace(errors, path, m.source_namespace.as_deref());
}

fn check_tls_match(errors: &mut FieldErrors, path: &str, m: &TlsMatchAttributes, hosts: &[String]) {
    if m.sni_hosts.is_empty() {
        errors.push(
            at(path, "sniHosts"),
            "TLS match must have at least one SNI host",
        );
    }
    for (i, sni) in m.sni_hosts.iter().enumerate() {
        let p = item(path, "sniHosts", i);
        if let Err(e) = wildcard_domain(sni) {
            if !super::field::is_ip(sni) {
                errors.push(p, e);
            }
            continue;
        }
        if !hosts.iter().any(|h| host_subset_of(sni, h)) {
            errors.push(
                p,
                format!(
                    "SNI host `{sni}` is not a compatible subset of any of the virtual service hosts: [{}]",
                    hosts.join(", ")
                ),
            );
        }
    }
    for (i, subnet) in m.destination_subnets.iter().enumerate() {
        errors.check(item(path, "destinationSubnets", i), ip_or_cidr(subnet));
    }
    if let Some(p) = m.port {
        errors.check(at(path, "port"), port(p));
    }
    check_labels(errors, &at(path, "sourceLabels"), &m.source_labels);
    check_gateways(errors, &at(path, "gateways"), &m.gateways);
    check_source_namespace(errors, path, m.source_namespace.as_deref());
}

pub(crate) fn check_source_namespace(errors: &mut FieldErrors, path: &str, ns: Option<&str>) {
    if let Some(ns) = ns
        && !is_dns1123_label(ns)
    {
        errors.push(
            at(path, "sourceNamespace"),
            format!("sourceNamespace match `{ns}` is invalid"),
        );
    }
}

fn check_route_destinations(errors: &mut FieldErrors, path: &str, routes: &[RouteDestination]) {
    let p = at(path, "route");
    for (i, r) in routes.iter().enumerate() {
        check_destination(errors, &format!("{p}[{i}].destination"), &r.destination);
    }
    check_weights(errors, &p, routes.iter().map(|r| r.weight));
}

/// Weights are >= 0 and, with several destinations, not all zero.
pub(crate) fn check_weights(
    errors: &mut FieldErrors,
    path: &str,
    weights: impl Iterator<Item = Option<i32>>,
) {
    let mut total: i64 = 0;
    let mut count = 0;
    for (i, weight) in weights.enumerate() {
        count += 1;
        let weight = weight.unwrap_or(0);
        if weight < 0 {
            errors.push(format!("{path}[{i}].weight"), "must be >= 0");
        }
        total += i64::from(weight.max(0));
    }
    if count > 1 && total == 0 {
        errors.push(path, "total destination weight must be > 0");
    }
}

/// A destination: a host (not `*`), an optional DNS-label subset and port.
pub(crate) fn check_destination(errors: &mut FieldErrors, path: &str, d: &Destination) {
    let host = at(path, "host");
    if d.host.is_empty() {
        errors.push(host, "destination host is required");
    } else if d.host == "*" {
        errors.push(host, "invalid destination host *");
    } else {
        errors.check(host, wildcard_domain(&d.host));
    }
    if let Some(subset) = &d.subset
        && !is_dns1123_label(subset)
    {
        errors.push(
            at(path, "subset"),
            format!("subset name `{subset}` is not a DNS-1123 label"),
        );
    }
    if let Some(p) = &d.port {
        errors.check(at(path, "port.number"), port(p.number));
    }
}

#[cfg(test)]
mod tests;
