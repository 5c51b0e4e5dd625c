//! Sidecar rules (Istio's `ValidateSidecar`): listener ports, egress host
//! scopes, default endpoints and the outbound traffic policy.

use super::destination_rule::check_connection_pool;
use super::field::{
    at, check_labels, is_dns1123_label, is_ip, item, one_of, port, wildcard_domain,
};
use super::service_entry::PROTOCOLS;
use super::{FieldErrors, Validate};
use crate::crd::SidecarSpec;
use crate::crd::sidecar::{EgressListener, IngressListener, ServerTlsSettings, SidecarPort};
use std::collections::BTreeSet;

const CAPTURE_MODES: &[&str] = &["DEFAULT", "IPTABLES", "NONE"];
const TRAFFIC_POLICY_MODES: &[&str] = &["REGISTRY_ONLY", "ALLOW_ANY"];

impl Validate for SidecarSpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        if let Some(sel) = &self.workload_selector {
            let path = at(spec, "workloadSelector.labels");
            for (key, value) in &sel.labels {
                if key.is_empty() {
                    errors.push(&path, "empty key is not supported in selector");
                } else if key.contains('*') || value.contains('*') {
                    errors.push(at(&path, key), "wildcard is not supported in selector");
                }
            }
            check_labels(errors, &path, &sel.labels);
        }
        if self.ingress.is_empty()
            && self.egress.is_empty()
            && self.outbound_traffic_policy.is_none()
            && self.inbound_connection_pool.is_none()
        {
            errors.push(
                spec,
                "empty configuration: set at least one of ingress, egress, outboundTrafficPolicy or inboundConnectionPool",
            );
        }
        let mut ingress_ports = BTreeSet::new();
        for (i, l) in self.ingress.iter().enumerate() {
            let path = item(spec, "ingress", i);
            check_ingress(errors, &path, l);
            if let Some(p) = &l.port
                && !ingress_ports.insert((l.bind.as_str(), p.number))
            {
                errors.push(
                    at(&path, "port.number"),
                    format!(
                        "port {} is already used by another ingress listener",
                        p.number
                    ),
                );
            }
        }
        let mut egress_ports = BTreeSet::new();
        let last = self.egress.len().saturating_sub(1);
        let mut catch_all = false;
        for (i, l) in self.egress.iter().enumerate() {
            let path = item(spec, "egress", i);
            check_egress(errors, &path, l);
            match &l.port {
                None => {
                    if catch_all {
                        errors.push(&path, "at most one egress listener may leave out the port");
                    } else if i != last {
                        errors.push(
                            &path,
                            "the egress listener without a port must be the last one",
                        );
                    }
                    catch_all = true;
                }
                Some(p) => {
                    if !egress_ports.insert((l.bind.as_str(), p.number)) {
                        errors.push(
                            at(&path, "port.number"),
                            format!(
                                "port {} is already used by another egress listener",
                                p.number
                            ),
                        );
                    }
                }
            }
        }
        if let Some(pool) = &self.inbound_connection_pool {
            check_connection_pool(errors, &at(spec, "inboundConnectionPool"), pool);
        }
        if let Some(policy) = &self.outbound_traffic_policy {
            let path = at(spec, "outboundTrafficPolicy");
            if let Some(mode) = &policy.mode {
                errors.check(at(&path, "mode"), one_of(mode, TRAFFIC_POLICY_MODES));
            }
            if policy.egress_proxy.is_some() {
                let allow_any = policy.mode.as_deref() == Some("ALLOW_ANY");
                errors.push(
                    at(&path, "egressProxy"),
                    if allow_any {
                        "not supported: Sluice sends ALLOW_ANY traffic to its own destination"
                    } else {
                        "only allowed with mode ALLOW_ANY"
                    },
                );
            }
        }
    }
}

fn check_port(errors: &mut FieldErrors, path: &str, p: &SidecarPort) {
    errors.check(at(path, "number"), port(p.number));
    if p.target_port.is_some() {
        errors.push(
            at(path, "targetPort"),
            "targetPort has no effect on a Sidecar",
        );
    }
    if p.protocol.is_empty() {
        errors.push(at(path, "protocol"), "protocol is required");
    } else {
        errors.check(
            at(path, "protocol"),
            one_of(&p.protocol.to_ascii_uppercase(), PROTOCOLS),
        );
    }
    if !p.name.is_empty() && !is_dns1123_label(&p.name.to_ascii_lowercase()) {
        errors.push(at(path, "name"), format!("invalid port name `{}`", p.name));
    }
}

fn check_bind_and_capture(errors: &mut FieldErrors, path: &str, bind: &str, capture_mode: &str) {
    if !bind.is_empty() && !is_ip(bind) && !bind.starts_with("unix://") {
        errors.push(
            at(path, "bind"),
            format!("`{bind}` is not an IP address or a unix:// path"),
        );
    }
    if !capture_mode.is_empty() {
        errors.check(at(path, "captureMode"), one_of(capture_mode, CAPTURE_MODES));
    }
}

fn check_ingress(errors: &mut FieldErrors, path: &str, l: &IngressListener) {
    match &l.port {
        Some(p) => check_port(errors, &at(path, "port"), p),
        None => errors.push(at(path, "port"), "port is required for ingress listeners"),
    }
    check_bind_and_capture(errors, path, &l.bind, &l.capture_mode);
    if !l.default_endpoint.is_empty() {
        errors.check(
            at(path, "defaultEndpoint"),
            default_endpoint(&l.default_endpoint).map(drop),
        );
    }
    if let Some(pool) = &l.connection_pool {
        check_connection_pool(errors, &at(path, "connectionPool"), pool);
    }
    if let Some(tls) = &l.tls {
        check_ingress_tls(errors, &at(path, "tls"), l.port.as_ref(), tls);
    }
}

/// Istio's limits on TLS a sidecar terminates itself.
fn check_ingress_tls(
    errors: &mut FieldErrors,
    path: &str,
    port: Option<&SidecarPort>,
    tls: &ServerTlsSettings,
) {
    if let Some(p) = port {
        let protocol = p.protocol.to_ascii_uppercase();
        if protocol != "HTTPS" && protocol != "TLS" {
            errors.push(
                path,
                format!(
                    "TLS settings need an HTTPS or TLS port (the port says `{}`)",
                    p.protocol
                ),
            );
        }
    }
    if let Some(mode) = &tls.mode {
        errors.check(at(path, "mode"), one_of(mode, &["SIMPLE", "MUTUAL"]));
    }
    let not_allowed = [
        ("httpsRedirect", tls.https_redirect.is_some()),
        ("credentialName", tls.credential_name.is_some()),
        ("credentialNames", !tls.credential_names.is_empty()),
        ("tlsCertificates", !tls.tls_certificates.is_empty()),
        ("subjectAltNames", !tls.subject_alt_names.is_empty()),
    ];
    for (field, set) in not_allowed {
        if set {
            errors.push(at(path, field), "not allowed on a Sidecar ingress listener");
        }
    }
}

/// Where an ingress listener passes traffic: a loopback or any-address
/// port (the app's port), or a unix socket (`None`).
pub(crate) fn default_endpoint(value: &str) -> Result<Option<u16>, String> {
    if let Some(path) = value.strip_prefix("unix://") {
        return if path.starts_with('/') {
            Ok(None)
        } else {
            Err(format!("`{value}`: a unix socket path must be absolute"))
        };
    }
    let bad = || {
        format!(
            "`{value}` must be 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT or unix:///path"
        )
    };
    let (host, number) = value.rsplit_once(':').ok_or_else(bad)?;
    if !["127.0.0.1", "0.0.0.0", "[::1]", "[::]"].contains(&host) {
        return Err(bad());
    }
    let number: u32 = number.parse().map_err(|_| bad())?;
    port(number)?;
    u16::try_from(number).map(Some).map_err(|_| bad())
}

fn check_egress(errors: &mut FieldErrors, path: &str, l: &EgressListener) {
    if let Some(p) = &l.port {
        check_port(errors, &at(path, "port"), p);
    }
    check_bind_and_capture(errors, path, &l.bind, &l.capture_mode);
    if l.hosts.is_empty() {
        errors.push(at(path, "hosts"), "at least one host is required");
    }
    for (i, host) in l.hosts.iter().enumerate() {
        errors.check(item(path, "hosts", i), egress_host(host));
    }
}

/// `namespace/dnsName`: the namespace `*`, `.`, `~` or a name; the host `*`
/// or a (wildcard) domain.
fn egress_host(host: &str) -> Result<(), String> {
    let Some((ns, name)) = host.split_once('/') else {
        return Err(format!(
            "`{host}` must be of the form namespace/dnsName (e.g. `./*` or `istio-system/*`)"
        ));
    };
    if !matches!(ns, "*" | "." | "~") && !is_dns1123_label(ns) {
        return Err(format!("`{host}`: invalid namespace `{ns}`"));
    }
    if name == "*" {
        return Ok(());
    }
    if !name.contains('.') {
        return Err(format!(
            "`{host}`: short names are not allowed; write the full name (e.g. `{ns}/{name}.<namespace>.svc.cluster.local`)"
        ));
    }
    let first = name.split('.').next().unwrap_or_default();
    if first.contains('*') && first != "*" {
        return Err(format!(
            "`{host}`: partial wildcard `{first}` is not allowed"
        ));
    }
    wildcard_domain(name).map_err(|e| format!("`{host}`: {e}"))
}

#[cfg(test)]
mod tests;
