//! PeerAuthentication and AuthorizationPolicy → a workload's inbound
//! security, with Istio's scoping and precedence resolved here.

use super::{View, namespace_of};
use crate::crd::authorization_policy::{Condition, Operation, Rule, Source};
use crate::crd::{AuthorizationPolicy, PeerAuthentication, WorkloadLabelSelector};
use crate::resource::Resource;
use crate::services::labels_match;
use sluice_api::config as pb;

/// The mode a PeerAuthentication names; `None` for UNSET (inherit).
fn mode(m: Option<&crate::crd::MutualTls>) -> Option<pb::MtlsMode> {
    match m.and_then(|m| m.mode.as_deref()) {
        Some("STRICT") => Some(pb::MtlsMode::Strict),
        Some("PERMISSIVE") => Some(pb::MtlsMode::Permissive),
        Some("DISABLE") => Some(pb::MtlsMode::Disable),
        _ => None,
    }
}

fn selects(
    selector: Option<&WorkloadLabelSelector>,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    selector.is_none_or(|s| labels_match(&s.match_labels, labels))
}

fn name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        namespace_of(meta),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Oldest first, as Istio breaks ties between policies of the same level.
fn by_age<T: kube::Resource>(items: &mut [&T]) {
    items.sort_by_key(|r| {
        let m = r.meta();
        (
            m.creation_timestamp.as_ref().map(|t| t.0),
            m.namespace.clone(),
            m.name.clone(),
        )
    });
}

/// Every PeerAuthentication, oldest first (Istio breaks ties by age).
pub(crate) fn peer_authentications(index: &crate::index::MeshIndex) -> Vec<&PeerAuthentication> {
    let mut all: Vec<&PeerAuthentication> = index
        .of_kind(crate::resource::kind::PEER_AUTHENTICATION)
        .filter_map(|r| match r {
            Resource::PeerAuthentication(pa) => Some(pa),
            _ => None,
        })
        .collect();
    by_age(&mut all);
    all
}

/// A workload's mutual TLS modes as PeerAuthentication decides them.
pub(crate) struct PeerModes {
    /// Mode of every port not in `ports`.
    pub mode: pb::MtlsMode,
    /// Per target port (a workload policy's `portLevelMtls`).
    pub ports: std::collections::HashMap<u32, pb::MtlsMode>,
    /// The policies that decided, `<namespace>/<name>`.
    pub sources: Vec<String>,
}

impl PeerModes {
    /// The mode of a target port.
    pub fn for_port(&self, port: u32) -> pb::MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }
}

/// Istio's precedence: the workload's own policy (selector) over its
/// namespace's over the mesh's (root namespace, no selector); UNSET inherits
/// from the level above; the oldest policy of a level wins; PERMISSIVE when
/// nothing decides. `portLevelMtls` counts only in a workload policy.
pub(crate) fn peer_modes(
    pas: &[&PeerAuthentication],
    root: &str,
    namespace: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> PeerModes {
    let mut mesh_level = None;
    let mut namespace_level = None;
    let mut workload_level = None;
    for pa in pas {
        let ns = namespace_of(&pa.metadata);
        let slot = match &pa.spec.selector {
            None if ns == root => &mut mesh_level,
            None if ns == namespace => &mut namespace_level,
            Some(sel) if ns == namespace && labels_match(&sel.match_labels, labels) => {
                &mut workload_level
            }
            _ => continue,
        };
        // `pas` is oldest first: keep the first of each level.
        slot.get_or_insert(*pa);
    }
    let mut mode_now = pb::MtlsMode::Permissive;
    let mut sources = Vec::new();
    for pa in [mesh_level, namespace_level, workload_level]
        .into_iter()
        .flatten()
    {
        if let Some(m) = mode(pa.spec.mtls.as_ref()) {
            mode_now = m;
            sources.push(name(&pa.metadata));
        }
    }
    let ports = workload_level
        .map(|pa| {
            pa.spec
                .port_level_mtls
                .iter()
                .map(|(port, m)| (port.0, mode(Some(m)).unwrap_or(mode_now)))
                .collect()
        })
        .unwrap_or_default();
    PeerModes {
        mode: mode_now,
        ports,
        sources,
    }
}

/// The inbound security of the proxy in `view`.
pub(crate) fn inbound_security(view: &View<'_>) -> pb::InboundSecurity {
    let proxy = view.proxy;
    let root = view.index.mesh.root_namespace.as_str();
    let modes = peer_modes(
        &view.peer_authentications,
        root,
        &proxy.namespace,
        &proxy.labels,
    );
    let authz = sidecar_policies(
        view,
        crate::resource::kind::AUTHORIZATION_POLICY,
        |r| match r {
            Resource::AuthorizationPolicy(ap) => Some((
                ap,
                ap.spec.selector.as_ref(),
                ap.spec.target_ref.is_some() || !ap.spec.target_refs.is_empty(),
            )),
            _ => None,
        },
    );
    pb::InboundSecurity {
        mtls: modes.mode as i32,
        port_mtls: modes.ports.iter().map(|(p, m)| (*p, *m as i32)).collect(),
        policies: authz
            .into_iter()
            .map(|ap| policy(ap, &proxy.trust_domain))
            .collect(),
        mtls_sources: modes.sources,
        jwt_rules: jwt_rules(view),
    }
}

/// The rules of every RequestAuthentication that applies to the proxy in
/// `view`, merged as Istio merges them (all hold at once): the root
/// namespace's first, then the workload namespace's, oldest first in each.
/// Key sets named by URL (or found by discovery) are the controller's fetch.
fn jwt_rules(view: &View<'_>) -> Vec<pb::JwtRule> {
    let policies = sidecar_policies(
        view,
        crate::resource::kind::REQUEST_AUTHENTICATION,
        |r| match r {
            Resource::RequestAuthentication(ra) => Some((
                ra,
                ra.spec.selector.as_ref(),
                ra.spec.target_ref.is_some() || !ra.spec.target_refs.is_empty(),
            )),
            _ => None,
        },
    );
    let mut out = Vec::new();
    for ra in policies {
        let policy = name(&ra.metadata);
        for r in &ra.spec.jwt_rules {
            let (jwks, jwks_error) = match crate::jwks::source_of(r) {
                None => (r.jwks.clone().unwrap_or_default(), String::new()),
                Some(source) => match view.index.jwks.get(&source) {
                    crate::jwks::Keys::Fetched(doc) => (doc.to_string(), String::new()),
                    crate::jwks::Keys::Unavailable(why) => (String::new(), why),
                },
            };
            out.push(pb::JwtRule {
                policy: policy.clone(),
                issuer: r.issuer.clone(),
                audiences: r.audiences.clone(),
                jwks,
                jwks_error,
                from_headers: r
                    .from_headers
                    .iter()
                    .map(|h| pb::JwtHeader {
                        name: h.name.clone(),
                        prefix: h.prefix.clone().unwrap_or_default(),
                    })
                    .collect(),
                from_params: r.from_params.clone(),
                from_cookies: r.from_cookies.clone(),
                output_payload_to_header: r.output_payload_to_header.clone().unwrap_or_default(),
                forward_original_token: r.forward_original_token.unwrap_or(false),
                output_claim_to_headers: r
                    .output_claim_to_headers
                    .iter()
                    .map(|c| pb::JwtClaimToHeader {
                        header: c.header.clone(),
                        claim: c.claim.clone(),
                    })
                    .collect(),
                space_delimited_claims: r.space_delimited_claims.clone(),
            });
        }
    }
    out
}

/// The policies of `kind` that apply to the sidecar in `view`: those of the
/// root namespace and of the workload's, without a selector or with one that
/// matches its labels; `targetRef(s)` ones attach to gateways and waypoints,
/// never to sidecars. Root namespace first, then oldest first (Istio's order).
/// `pick` gives (policy, selector, attached by targetRef).
fn sidecar_policies<'i, T: kube::Resource>(
    view: &View<'i>,
    kind: &'static str,
    pick: impl Fn(&'i Resource) -> Option<(&'i T, Option<&'i WorkloadLabelSelector>, bool)>,
) -> Vec<&'i T> {
    let proxy = view.proxy;
    let root = view.index.mesh.root_namespace.as_str();
    let mut out: Vec<&T> = view
        .index
        .of_kind(kind)
        .filter_map(pick)
        .filter(|(p, selector, targeted)| {
            let ns = namespace_of(p.meta());
            !targeted && (ns == root || ns == proxy.namespace) && selects(*selector, &proxy.labels)
        })
        .map(|(p, _, _)| p)
        .collect();
    out.sort_by_key(|p| {
        let m = p.meta();
        (
            namespace_of(m) != root,
            m.creation_timestamp.as_ref().map(|t| t.0),
            m.name.clone(),
        )
    });
    out
}

fn policy(ap: &AuthorizationPolicy, trust_domain: &str) -> pb::AuthorizationPolicy {
    let action = match ap.spec.action.as_deref() {
        Some("DENY") => pb::authorization_policy::Action::Deny,
        Some("AUDIT") => pb::authorization_policy::Action::Audit,
        _ => pb::authorization_policy::Action::Allow,
    };
    let dry_run = ap
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("istio.io/dry-run"))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    pb::AuthorizationPolicy {
        name: name(&ap.metadata),
        action: action as i32,
        dry_run,
        rules: ap
            .spec
            .rules
            .iter()
            .map(|r| rule(r, trust_domain))
            .collect(),
    }
}

fn rule(r: &Rule, trust_domain: &str) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        from: r
            .from
            .iter()
            .map(|f| {
                f.source
                    .as_ref()
                    .map(|s| peer(s, trust_domain))
                    .unwrap_or_default()
            })
            .collect(),
        to: r
            .to
            .iter()
            .map(|t| t.operation.as_ref().map(operation).unwrap_or_default())
            .collect(),
        when: r.when.iter().map(condition).collect(),
    }
}

/// Istio principals are written without the scheme; `serviceAccounts`
/// ("ns/sa") are principals in the workload's trust domain.
fn peer(s: &Source, trust_domain: &str) -> pb::PeerMatch {
    let strip = |v: &Vec<String>| -> Vec<String> {
        v.iter()
            .map(|p| p.trim_start_matches("spiffe://").to_owned())
            .collect()
    };
    let accounts = |v: &Vec<String>| -> Vec<String> {
        v.iter()
            .filter_map(|a| a.split_once('/'))
            .map(|(ns, sa)| format!("{trust_domain}/ns/{ns}/sa/{sa}"))
            .collect()
    };
    let mut principals = strip(&s.principals);
    principals.extend(accounts(&s.service_accounts));
    let mut not_principals = strip(&s.not_principals);
    not_principals.extend(accounts(&s.not_service_accounts));
    pb::PeerMatch {
        principals,
        not_principals,
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
        ip_blocks: s.ip_blocks.clone(),
        not_ip_blocks: s.not_ip_blocks.clone(),
        remote_ip_blocks: s.remote_ip_blocks.clone(),
        not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
        request_principals: s.request_principals.clone(),
        not_request_principals: s.not_request_principals.clone(),
    }
}

fn operation(o: &Operation) -> pb::OperationMatch {
    let ports = |v: &Vec<String>| v.iter().filter_map(|p| p.parse().ok()).collect();
    pb::OperationMatch {
        hosts: o.hosts.clone(),
        not_hosts: o.not_hosts.clone(),
        ports: ports(&o.ports),
        not_ports: ports(&o.not_ports),
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
    }
}

fn condition(c: &Condition) -> pb::ConditionMatch {
    pb::ConditionMatch {
        key: c.key.clone(),
        values: c.values.clone(),
        not_values: c.not_values.clone(),
    }
}

#[cfg(test)]
mod tests;
