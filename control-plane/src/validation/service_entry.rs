//! ServiceEntry and WorkloadEntry rules: hosts, addresses, ports, resolution
//! and endpoints.

use super::field::{
    at, check_enum, check_export_to, check_labels, fqdn, ip_or_cidr, is_dns1123_label, is_ip, item,
    port, wildcard_domain,
};
use super::{FieldErrors, Validate};
use crate::crd::{ServiceEntrySpec, WorkloadEntrySpec};
use std::collections::BTreeSet;

/// Protocols Istio recognizes on ports (case-insensitive).
pub(crate) const PROTOCOLS: &[&str] = &[
    "HTTP",
    "HTTPS",
    "HTTP2",
    "HTTP_PROXY",
    "GRPC",
    "GRPC-WEB",
    "TCP",
    "TLS",
    "UDP",
    "MONGO",
    "MYSQL",
    "REDIS",
];
const RESOLUTIONS: &[&str] = &["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"];
const LOCATIONS: &[&str] = &["MESH_EXTERNAL", "MESH_INTERNAL"];

fn is_http_or_tls(protocol: Option<&str>) -> bool {
    let p = protocol.unwrap_or("TCP").to_ascii_uppercase();
    matches!(
        p.as_str(),
        "HTTP" | "HTTPS" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB" | "TLS"
    )
}

impl Validate for ServiceEntrySpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        if self.workload_selector.is_some() && !self.endpoints.is_empty() {
            errors.push(
                spec,
                "only one of workloadSelector or endpoints is allowed in service entry",
            );
        }
        if let Some(sel) = &self.workload_selector {
            check_labels(errors, &at(spec, "workloadSelector.labels"), &sel.labels);
        }
        if self.hosts.is_empty() {
            errors.push(
                at(spec, "hosts"),
                "service entry must have at least one host",
            );
        }
        for (i, host) in self.hosts.iter().enumerate() {
            let p = item(spec, "hosts", i);
            if host == "*" {
                errors.push(p, "invalid host *");
            } else {
                errors.check(p, wildcard_domain(host));
            }
        }
        let resolution = self.resolution.as_deref().unwrap_or("NONE");
        check_enum(
            errors,
            at(spec, "resolution"),
            self.resolution.as_deref(),
            RESOLUTIONS,
        );
        check_enum(
            errors,
            at(spec, "location"),
            self.location.as_deref(),
            LOCATIONS,
        );
        for (i, address) in self.addresses.iter().enumerate() {
            let p = item(spec, "addresses", i);
            errors.check(p.clone(), ip_or_cidr(address));
            if address.contains('/') && !matches!(resolution, "NONE" | "STATIC") {
                errors.push(
                    p,
                    "CIDR addresses are allowed only for NONE/STATIC resolution types",
                );
            }
        }
        let mut names = BTreeSet::new();
        let mut numbers = BTreeSet::new();
        for (i, sp) in self.ports.iter().enumerate() {
            let p = item(spec, "ports", i);
            if !is_dns1123_label(&sp.name) {
                errors.push(at(&p, "name"), format!("invalid port name `{}`", sp.name));
            } else if !names.insert(sp.name.as_str()) {
                errors.push(
                    at(&p, "name"),
                    format!("service entry port name `{}` already defined", sp.name),
                );
            }
            errors.check(at(&p, "number"), port(sp.number));
            if sp.number != 0 && !numbers.insert(sp.number) {
                errors.push(
                    at(&p, "number"),
                    format!("service entry port {} already defined", sp.number),
                );
            }
            if let Some(tp) = sp.target_port {
                errors.check(at(&p, "targetPort"), port(tp));
            }
            if let Some(proto) = &sp.protocol
                && !PROTOCOLS.contains(&proto.to_ascii_uppercase().as_str())
            {
                errors.push(
                    at(&p, "protocol"),
                    format!("unsupported protocol `{proto}`"),
                );
            }
        }
        match resolution {
            "NONE" if !self.endpoints.is_empty() => {
                errors.push(
                    at(spec, "endpoints"),
                    "no endpoints should be provided for resolution type NONE",
                );
            }
            "STATIC" => {
                for (i, ep) in self.endpoints.iter().enumerate() {
                    check_workload(errors, &item(spec, "endpoints", i), ep, Some(&names), false);
                }
            }
            "DNS" | "DNS_ROUND_ROBIN" => {
                if self.endpoints.is_empty() {
                    for (i, host) in self.hosts.iter().enumerate() {
                        if host != "*" && fqdn(host).is_err() {
                            errors.push(
                                item(spec, "hosts", i),
                                format!("hosts must be FQDN if no endpoints are provided for resolution mode {resolution}"),
                            );
                        }
                    }
                }
                if resolution == "DNS_ROUND_ROBIN" && self.endpoints.len() > 1 {
                    errors.push(
                        at(spec, "endpoints"),
                        "there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
                    );
                }
                for (i, ep) in self.endpoints.iter().enumerate() {
                    check_workload(errors, &item(spec, "endpoints", i), ep, Some(&names), true);
                }
            }
            _ => {}
        }
        if resolution != "NONE"
            && self.hosts.len() > 1
            && self
                .ports
                .iter()
                .any(|p| !is_http_or_tls(p.protocol.as_deref()))
        {
            errors.push(
                at(spec, "hosts"),
                "multiple hosts provided with non-HTTP, non-TLS ports",
            );
        }
        check_export_to(errors, &at(spec, "exportTo"), &self.export_to);
    }
}

impl Validate for WorkloadEntrySpec {
    fn validate(&self, errors: &mut FieldErrors) {
        check_workload(errors, "spec", self, None, true);
    }
}

/// A workload (WorkloadEntry spec or ServiceEntry endpoint). `service_ports`
/// are the port names of the enclosing ServiceEntry, when there is one.
fn check_workload(
    errors: &mut FieldErrors,
    path: &str,
    w: &WorkloadEntrySpec,
    service_ports: Option<&BTreeSet<&str>>,
    allow_fqdn: bool,
) {
    let address = w.address.as_deref().unwrap_or("");
    let ap = at(path, "address");
    if address.is_empty() {
        if w.network.is_none() {
            errors.push(ap, "address is required");
        }
    } else if let Some(socket) = address.strip_prefix("unix://") {
        if !socket.starts_with('/') && !socket.starts_with('@') {
            errors.push(
                ap,
                "unix address must be an absolute path or an abstract socket (@name)",
            );
        }
        if !w.ports.is_empty() {
            errors.push(
                at(path, "ports"),
                format!("unix endpoint {address} must not include ports"),
            );
        }
    } else if !is_ip(address) {
        if !allow_fqdn {
            errors.push(
                ap,
                format!("endpoint address `{address}` is not a valid IP address"),
            );
        } else if fqdn(address).is_err() {
            errors.push(
                ap,
                format!("endpoint address `{address}` is not a valid FQDN or an IP address"),
            );
        }
    }
    for (name, number) in &w.ports {
        let p = format!("{path}.ports.{name}");
        if !is_dns1123_label(name) {
            errors.push(p.clone(), format!("invalid port name `{name}`"));
        }
        if service_ports.is_some_and(|ports| !ports.contains(name.as_str())) {
            errors.push(
                p.clone(),
                format!("endpoint port `{name}` is not defined by the service entry"),
            );
        }
        errors.check(p, port(*number));
    }
    check_labels(errors, &at(path, "labels"), &w.labels);
    // Istio checks nothing of its form (the CRD caps its length): it only
    // becomes the SPIFFE identity `spiffe://<td>/ns/<ns>/sa/<serviceAccount>`.
    if let Some(sa) = &w.service_account
        && sa.len() > MAX_SERVICE_ACCOUNT
    {
        errors.push(
            at(path, "serviceAccount"),
            format!(
                "service account is {} characters long, more than {MAX_SERVICE_ACCOUNT}",
                sa.len()
            ),
        );
    }
}

/// Longest WorkloadEntry `serviceAccount` (the CRD's `maxLength`).
const MAX_SERVICE_ACCOUNT: usize = 253;

#[cfg(test)]
mod tests;
