//! Host names: which VirtualService owns a service, and which names select it.

use super::{View, fqdn, namespace_of};
use crate::crd::VirtualService;
use crate::services::{DOMAIN_SUFFIX, Service};
use crate::validation::host_subset_of;

/// How well a (resolved) host pattern covers `service_host`: `None` when it
/// does not, else a score where exact beats any wildcard and longer wildcards
/// beat shorter ones.
pub fn resolve_host(pattern: &str, service_host: &str) -> Option<usize> {
    if pattern == service_host {
        return Some(usize::MAX);
    }
    if pattern == "*" {
        return Some(0);
    }
    let suffix = pattern.strip_prefix('*')?;
    service_host.ends_with(suffix).then_some(suffix.len())
}

/// The VirtualService that routes `service` for this proxy: the most
/// specific host match, the oldest on a tie.
pub(crate) fn virtual_service_for<'a>(
    view: &View<'a>,
    service: &Service,
) -> Option<&'a VirtualService> {
    let mut best: Option<(usize, &'a VirtualService)> = None;
    for &vs in &view.virtual_services {
        let ns = namespace_of(&vs.metadata);
        let score = vs
            .spec
            .hosts
            .iter()
            .filter_map(|h| resolve_host(&fqdn(h, ns), &service.fqdn))
            .max();
        if let Some(score) = score
            && best.is_none_or(|(b, _)| score > b)
        {
            best = Some((score, vs));
        }
    }
    best.map(|(_, vs)| vs)
}

/// VirtualService hosts that are no service of the proxy's but fall under
/// one of its wildcard services (`canary.internal.example` under a
/// ServiceEntry for `*.internal.example`), each with the VirtualService that
/// routes it (the oldest naming it) and the most specific wildcard service
/// covering it: Istio gives such a host a virtual host of its own, routed by
/// that VirtualService, beside the wildcard's.
pub(crate) fn hosts_under_wildcards<'a>(
    view: &View<'a>,
) -> Vec<(String, &'a VirtualService, &'a Service)> {
    let mut out: Vec<(String, &'a VirtualService, &'a Service)> = Vec::new();
    if !view.services.iter().any(|s| s.wildcard) {
        return out;
    }
    for &vs in &view.virtual_services {
        let ns = namespace_of(&vs.metadata);
        for host in &vs.spec.hosts {
            let host = fqdn(host, ns);
            if host == "*" || view.service(&host).is_some() || out.iter().any(|(h, ..)| *h == host)
            {
                continue;
            }
            let covering = view
                .services
                .iter()
                .copied()
                .filter(|s| s.wildcard && host_subset_of(&host, &s.fqdn))
                .max_by_key(|s| s.fqdn.len());
            if let Some(service) = covering {
                out.push((host, vs, service));
            }
        }
    }
    out
}

/// Names a request may use for `service` from a proxy in `viewer_ns`, as
/// Kubernetes DNS search paths make them resolve.
pub(crate) fn domains(service: &Service, port: u32, viewer_ns: &str) -> Vec<String> {
    let mut out = vec![service.fqdn.clone()];
    if let Some(name) = service
        .fqdn
        .strip_suffix(&format!(".{}.{DOMAIN_SUFFIX}", service.namespace))
    {
        let ns = &service.namespace;
        out.push(format!("{name}.{ns}.svc"));
        out.push(format!("{name}.{ns}"));
        if ns == viewer_ns {
            out.push(name.to_owned());
        }
    }
    // A CIDR range is no name a request can carry.
    out.extend(
        service
            .addresses
            .iter()
            .filter(|a| !a.contains('/'))
            .cloned(),
    );
    let _ = port;
    out
}
