//! Gateway rules (Istio's `ValidateGateway`): servers, their ports, hosts,
//! binds and TLS settings. Sluice serves no Gateway, but one that Istio
//! would refuse is refused here too, so a file checked by Sluice is one
//! Istio takes.

use super::field::{at, is_dns1123_label, is_ip, item, one_of, port, wildcard_domain};
use super::service_entry::PROTOCOLS;
use super::{FieldError, FieldErrors, Validate};
use crate::crd::GatewaySpec;
use crate::crd::gateway::{GatewayPort, Server};
use crate::crd::sidecar::ServerTlsSettings;
use std::collections::BTreeMap;

/// Istio's `ServerTLSSettings.TLSmode` values.
const TLS_MODES: &[&str] = &[
    "PASSTHROUGH",
    "SIMPLE",
    "MUTUAL",
    "AUTO_PASSTHROUGH",
    "ISTIO_MUTUAL",
    "OPTIONAL_MUTUAL",
];
/// Istio's `ServerTLSSettings.TLSProtocol` values, oldest first.
const TLS_VERSIONS: &[&str] = &["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"];
const UNIX_PREFIX: &str = "unix://";

impl Validate for GatewaySpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        if self.servers.is_empty() {
            errors.push(at(spec, "servers"), "at least one server is required");
        }
        // Port names are unique across servers (empty ones are reported as missing).
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, server) in self.servers.iter().enumerate() {
            let path = item(spec, "servers", i);
            check_server(errors, &path, server);
            if let Some(p) = &server.port
                && !p.name.is_empty()
            {
                if let Some(first) = names.get(p.name.as_str()) {
                    errors.push(
                        at(&path, "port.name"),
                        format!(
                            "duplicate port name `{}` (also used by spec.servers[{first}]); port names must be unique across servers",
                            p.name
                        ),
                    );
                } else {
                    names.insert(&p.name, i);
                }
            }
        }
    }
}

/// A Gateway's name is a DNS-1123 label (no dots): VirtualServices refer to
/// it as `namespace/name`.
pub(crate) fn check_name(errors: &mut FieldErrors, name: &str) {
    // Names that are not even a subdomain are reported by the metadata check.
    if name.contains('.') && name.split('.').all(is_dns1123_label) {
        errors.push(
            "metadata.name",
            format!(
                "`{name}`: a Gateway name must be a DNS-1123 label (no dots), as VirtualServices name it `namespace/name`"
            ),
        );
    }
}

fn check_server(errors: &mut FieldErrors, path: &str, server: &Server) {
    if server.hosts.is_empty() {
        errors.push(at(path, "hosts"), "at least one host is required");
    }
    for (i, host) in server.hosts.iter().enumerate() {
        errors.check(item(path, "hosts", i), gateway_host(host));
    }
    let unix = server.bind.strip_prefix(UNIX_PREFIX);
    let port_ok = match &server.port {
        None => {
            errors.push(at(path, "port"), "port is required");
            false
        }
        Some(p) => check_port(errors, &at(path, "port"), p, unix.is_some()),
    };
    match unix {
        Some(socket) => {
            let absolute = socket.starts_with('@')
                || (socket.starts_with('/') && !socket.ends_with('/') && socket.len() > 1);
            if !absolute {
                errors.push(
                    at(path, "bind"),
                    format!(
                        "`{}`: a unix socket must be an absolute path to a file (or @name)",
                        server.bind
                    ),
                );
            }
            if let Some(p) = &server.port
                && p.number != 0
            {
                errors.push(
                    at(path, "port.number"),
                    format!("must be 0 when binding to a unix socket (is {})", p.number),
                );
            }
        }
        None => {
            if !server.bind.is_empty() && !is_ip(&server.bind) {
                errors.push(
                    at(path, "bind"),
                    format!("`{}` is not an IP address or a unix:// path", server.bind),
                );
            }
        }
    }
    if let Some(tls) = &server.tls {
        check_tls(errors, &at(path, "tls"), tls);
    }
    let Some(p) = server.port.as_ref().filter(|_| port_ok) else {
        return;
    };
    let protocol = p.protocol.to_ascii_uppercase();
    match (&server.tls, is_tls_protocol(&protocol)) {
        (None, true) => errors.push(
            at(path, "tls"),
            format!("required: a {protocol} server needs TLS settings"),
        ),
        (Some(tls), false) if is_http_protocol(&protocol) => {
            // Plain HTTP takes TLS settings only to ask for a redirect.
            let passthrough = matches!(
                tls.mode.as_deref().unwrap_or("PASSTHROUGH"),
                "PASSTHROUGH" | "AUTO_PASSTHROUGH"
            );
            let has_files = [
                &tls.ca_certificates,
                &tls.private_key,
                &tls.server_certificate,
            ]
            .iter()
            .any(|f| f.as_deref().is_some_and(|f| !f.is_empty()));
            if !passthrough || has_files {
                errors.push(
                    at(path, "tls"),
                    format!(
                        "a plain-text {protocol} server takes only tls.httpsRedirect; terminate TLS on an HTTPS port"
                    ),
                );
            }
        }
        (Some(_), false) => errors.push(
            at(path, "tls"),
            format!(
                "not allowed on a {protocol} server (only HTTPS, TLS, or HTTP for httpsRedirect)"
            ),
        ),
        _ => {}
    }
}

/// Checks a server port; whether it is usable for the protocol checks that follow.
fn check_port(errors: &mut FieldErrors, path: &str, p: &GatewayPort, unix_bind: bool) -> bool {
    let mut ok = true;
    if (p.number != 0 || !unix_bind)
        && let Err(e) = port(p.number)
    {
        errors.push(at(path, "number"), e);
        ok = false;
    }
    if p.protocol.is_empty() {
        errors.push(at(path, "protocol"), "protocol is required");
        ok = false;
    } else if let Err(e) = one_of(&p.protocol.to_ascii_uppercase(), PROTOCOLS) {
        errors.push(at(path, "protocol"), e);
        ok = false;
    }
    if p.target_port.is_some_and(|t| t > 0) {
        errors.push(
            at(path, "targetPort"),
            "targetPort has no effect on a Gateway",
        );
        ok = false;
    }
    if p.name.is_empty() {
        errors.push(at(path, "name"), "port name is required");
        ok = false;
    }
    ok
}

fn is_tls_protocol(protocol: &str) -> bool {
    matches!(protocol, "HTTPS" | "TLS")
}

fn is_http_protocol(protocol: &str) -> bool {
    matches!(
        protocol,
        "HTTP" | "HTTP2" | "HTTP_PROXY" | "GRPC" | "GRPC-WEB"
    )
}

/// `dnsName` or `namespace/dnsName`: the namespace `*`, `.` or a name; the
/// name `*`, a full (wildcard) domain name or an IP address.
///
/// Istio (`ValidateNamespaceSlashWildcardHostname` for gateways) checks more
/// than `ValidateWildcardDomain` alone: a name without a dot (`localhost`,
/// `ns/foo`) is refused as a short name, and any `*` other than a whole `*`
/// or a leading `*.` is a refused partial wildcard (`*foo.example.com`,
/// `*-foo.example.com`), though the wildcard-label rule alone would take
/// them.
fn gateway_host(host: &str) -> Result<(), String> {
    let name = match host.split_once('/') {
        None => host,
        Some((ns, name)) => {
            if ns.is_empty() || name.is_empty() {
                return Err(format!(
                    "`{host}`: the namespace and the dnsName of `namespace/dnsName` cannot be empty"
                ));
            }
            if !matches!(ns, "*" | ".") && !is_dns1123_label(ns) {
                return Err(format!(
                    "`{host}`: invalid namespace `{ns}` (expected `*`, `.` or a namespace name)"
                ));
            }
            name
        }
    };
    if name == "*" {
        return Ok(());
    }
    if !name.contains('.') {
        return Err(format!(
            "`{host}`: short names are not allowed; write the full name (e.g. `{name}.example.com`)"
        ));
    }
    if name.contains('*') && !name.starts_with("*.") {
        return Err(format!(
            "`{host}`: partial wildcard `{name}` is not allowed (only `*` or `*.suffix`)"
        ));
    }
    if is_ip(name) {
        return Ok(());
    }
    // Istio's DNS-1123 check refuses an all-numeric last label (so that a
    // malformed IP such as `10.0.0.256` is not read as a name); IP literals
    // are accepted above. A trailing dot leaves an empty last label, which
    // passes.
    if let Some(tld) = name.rsplit('.').next()
        && !tld.is_empty()
        && tld.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "`{host}`: not an IP address, and the top-level domain `{tld}` of a domain name cannot be all-numeric"
        ));
    }
    wildcard_domain(name).map_err(|e| format!("`{host}`: {e}"))
}

fn non_empty(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.is_empty())
}

/// Istio's rules for a server's `ServerTLSSettings`.
fn check_tls(errors: &mut FieldErrors, path: &str, tls: &ServerTlsSettings) {
    if let Some(mode) = &tls.mode {
        errors.check(at(path, "mode"), one_of(mode, TLS_MODES));
    }
    let version = |field: &str, value: &Option<String>, errors: &mut FieldErrors| {
        if let Some(v) = value.as_deref() {
            errors.check(at(path, field), one_of(v, TLS_VERSIONS));
        }
    };
    // Istio compares neither bound with the other: a maximum below the
    // minimum is only warned about (see `warnings`).
    version("minProtocolVersion", &tls.min_protocol_version, errors);
    version("maxProtocolVersion", &tls.max_protocol_version, errors);
    let mode = tls.mode.as_deref().unwrap_or("PASSTHROUGH");
    if mode == "ISTIO_MUTUAL" {
        // The gateway presents its own mesh certificate: no other source.
        let sources = [
            ("serverCertificate", non_empty(&tls.server_certificate)),
            ("privateKey", non_empty(&tls.private_key)),
            ("caCertificates", non_empty(&tls.ca_certificates)),
            ("tlsCertificates", !tls.tls_certificates.is_empty()),
            ("credentialName", non_empty(&tls.credential_name)),
            ("credentialNames", !tls.credential_names.is_empty()),
        ];
        for (field, set) in sources {
            if set {
                errors.push(
                    at(path, field),
                    "not allowed with mode ISTIO_MUTUAL (the gateway's mesh certificate is used)",
                );
            }
        }
        return;
    }
    let sources = [
        non_empty(&tls.server_certificate) && non_empty(&tls.private_key),
        non_empty(&tls.credential_name),
        !tls.credential_names.is_empty(),
        !tls.tls_certificates.is_empty(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        errors.push(
            path,
            "set only one of credentialName, credentialNames, serverCertificate/privateKey and tlsCertificates",
        );
    }
    let terminating = matches!(mode, "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL");
    if terminating && (non_empty(&tls.credential_name) || !tls.credential_names.is_empty()) {
        // The certificates (and CA) come from the named secret.
        return;
    }
    if terminating {
        if mode != "SIMPLE" && !non_empty(&tls.ca_certificates) {
            errors.push(
                at(path, "caCertificates"),
                format!("required with mode {mode} (or set credentialName)"),
            );
        }
        let mut pair = |prefix: String, cert: &Option<String>, key: &Option<String>| {
            if !non_empty(cert) {
                errors.push(
                    at(&prefix, "serverCertificate"),
                    format!("required with mode {mode} (or set credentialName)"),
                );
            }
            if !non_empty(key) {
                errors.push(
                    at(&prefix, "privateKey"),
                    format!("required with mode {mode} (or set credentialName)"),
                );
            }
        };
        if tls.tls_certificates.is_empty() {
            pair(path.to_owned(), &tls.server_certificate, &tls.private_key);
        } else {
            for (i, c) in tls.tls_certificates.iter().enumerate() {
                pair(
                    item(path, "tlsCertificates", i),
                    &c.server_certificate,
                    &c.private_key,
                );
            }
        }
    }
    if non_empty(&tls.ca_crl) {
        if non_empty(&tls.credential_name) {
            errors.push(
                at(path, "caCrl"),
                "not supported with credentialName: put the CRL in the credential",
            );
        }
        if mode == "SIMPLE" {
            errors.push(at(path, "caCrl"), "not supported with mode SIMPLE");
        }
    }
}

/// Warnings for a valid Gateway: it is not served, and the settings Istio
/// itself warns about.
pub(crate) fn warnings(out: &mut Vec<FieldError>, spec: &GatewaySpec) {
    out.push(FieldError::new(
        "spec",
        "accepted and validated, not served: Sluice runs no gateway proxy; VirtualServices that name this Gateway in `gateways` apply to sidecars only where they also list `mesh`",
    ));
    for (i, server) in spec.servers.iter().enumerate() {
        let path = item("spec", "servers", i);
        let protocol = server
            .port
            .as_ref()
            .map(|p| p.protocol.to_ascii_uppercase())
            .unwrap_or_default();
        let Some(tls) = &server.tls else { continue };
        let tls_path = at(&path, "tls");
        if tls.https_redirect == Some(true) && !is_http_protocol(&protocol) {
            out.push(FieldError::new(
                at(&tls_path, "httpsRedirect"),
                "only meaningful on HTTP servers",
            ));
        }
        let mode = tls.mode.as_deref().unwrap_or("PASSTHROUGH");
        let has_certs = non_empty(&tls.ca_crl)
            || non_empty(&tls.server_certificate)
            || non_empty(&tls.private_key)
            || non_empty(&tls.ca_certificates)
            || !tls.tls_certificates.is_empty()
            || non_empty(&tls.credential_name)
            || !tls.credential_names.is_empty();
        if matches!(mode, "PASSTHROUGH" | "AUTO_PASSTHROUGH") && has_certs {
            out.push(FieldError::new(
                tls_path.clone(),
                format!("mode {mode} uses no certificates; the ones set are ignored"),
            ));
        }
        if matches!(mode, "SIMPLE" | "MUTUAL" | "OPTIONAL_MUTUAL") && tls.tls_certificates.len() > 2
        {
            out.push(FieldError::new(
                at(&tls_path, "tlsCertificates"),
                "at most 2 server certificates are used",
            ));
        }
        if matches!(
            tls.min_protocol_version.as_deref(),
            Some("TLSV1_0" | "TLSV1_1")
        ) && tls.cipher_suites.is_empty()
        {
            out.push(FieldError::new(
                at(&tls_path, "minProtocolVersion"),
                "versions below TLSV1_2 need cipherSuites set: the default suites no longer include ones they can use",
            ));
        }
        let rank = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| TLS_VERSIONS.iter().position(|known| *known == v))
        };
        // TLS_AUTO (rank 0) leaves the bound to the proxy.
        if let (Some(min), Some(max)) = (
            rank(&tls.min_protocol_version),
            rank(&tls.max_protocol_version),
        ) && min > 0
            && max > 0
            && min > max
        {
            out.push(FieldError::new(
                at(&tls_path, "maxProtocolVersion"),
                format!(
                    "{} is below minProtocolVersion {}: no TLS version is left, so the proxy cannot serve this port (Istio does not check this)",
                    TLS_VERSIONS[max], TLS_VERSIONS[min]
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, suite) in tls.cipher_suites.iter().enumerate() {
            if !seen.insert(suite.as_str()) {
                out.push(FieldError::new(
                    item(&tls_path, "cipherSuites", j),
                    format!("duplicate cipher suite `{suite}` is ignored"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
