//! Inbound security policy of the workload: the PeerAuthentication mode per
//! port and Istio AuthorizationPolicy evaluation (DENY before ALLOW; with an
//! ALLOW policy present, a request no ALLOW policy matches is denied).

mod compile;
mod matcher;
mod rule;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use sluice_api::config as pb;

use compile::{Action, Policy};
use rule::Attrs;

/// Why a policy could not be used; names the policy, rule and field.
#[derive(Debug, thiserror::Error)]
#[error("authorization policy {policy}: {field}: {reason}")]
pub struct AuthzError {
    pub policy: String,
    pub field: String,
    pub reason: String,
}

/// Mutual TLS mode of one inbound port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MtlsMode {
    Permissive,
    Strict,
    Disable,
}

/// What the connection tells about the caller and the destination.
#[derive(Clone, Debug)]
pub struct Connection<'a> {
    /// Direct peer address (the client side of the TCP connection, or the PROXY header source).
    pub source_ip: IpAddr,
    /// Original client address (X-Forwarded-For's first hop when present, else `source_ip`).
    pub remote_ip: IpAddr,
    pub destination_ip: IpAddr,
    /// Application (target) port.
    pub destination_port: u16,
    /// Peer SPIFFE identity without "spiffe://" (from its mTLS certificate); `None` over plaintext.
    pub principal: Option<&'a str>,
    /// SNI of the TLS connection, if any.
    pub sni: Option<&'a str>,
}

/// The HTTP parts of a request.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// Authority / Host.
    pub host: &'a str,
    pub headers: &'a http::HeaderMap,
    /// The identity of a token RequestAuthentication verified, if any.
    pub auth: Option<&'a crate::jwt::Identity>,
}

/// The outcome of an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// `<namespace>/<name>` of the policy that decided (the matching DENY, the
    /// matching ALLOW); `None` when no policy applies or nothing matched.
    pub policy: Option<String>,
    /// The first AUDIT policy that matched, if any.
    pub audit: Option<String>,
    /// What the dry-run policies (`istio.io/dry-run`) would have decided;
    /// `None` when there are none. Never enforced.
    pub dry_run: Option<DryRun>,
}

/// The decision of the dry-run policies alone, evaluated like enforced ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DryRun {
    pub allowed: bool,
    /// The dry-run policy that decided, as in [`Verdict::policy`].
    pub policy: Option<String>,
}

/// A workload's compiled inbound security.
#[derive(Debug)]
pub struct InboundPolicy {
    default_mode: MtlsMode,
    port_modes: Vec<(u16, MtlsMode)>,
    /// Split by action, each in the controller's order (root namespace first).
    deny: Vec<Policy>,
    allow: Vec<Policy>,
    audit: Vec<Policy>,
    /// Dry-run DENY and ALLOW policies: evaluated on their own, never enforced.
    dry_deny: Vec<Policy>,
    dry_allow: Vec<Policy>,
    /// RequestAuthentication rules; `None` when none applies.
    pub jwt: Option<crate::jwt::Authn>,
}

impl Default for InboundPolicy {
    fn default() -> Self {
        InboundPolicy {
            default_mode: MtlsMode::Permissive,
            port_modes: Vec::new(),
            deny: Vec::new(),
            allow: Vec::new(),
            audit: Vec::new(),
            dry_deny: Vec::new(),
            dry_allow: Vec::new(),
            jwt: None,
        }
    }
}

fn mode(m: i32) -> MtlsMode {
    match pb::MtlsMode::try_from(m) {
        Ok(pb::MtlsMode::Strict) => MtlsMode::Strict,
        Ok(pb::MtlsMode::Disable) => MtlsMode::Disable,
        _ => MtlsMode::Permissive,
    }
}

impl Policy {
    /// A policy matches when any rule does; no rules never match. On TCP an
    /// ALLOW rule using HTTP-only fields is dropped, while DENY and AUDIT
    /// rules just skip those fields ("Authorization policy for TCP traffic",
    /// https://istio.io/latest/docs/tasks/security/authorization/authz-tcp/:
    /// "Istio ignores the invalid ALLOW rule"; a DENY rule with HTTP-only
    /// fields "denies all the traffic to the tcp ports" it otherwise covers).
    fn matches(&self, a: &Attrs<'_>) -> bool {
        let tcp_allow = a.req.is_none() && self.action == Action::Allow;
        self.rules
            .iter()
            .any(|r| !(tcp_allow && r.http_only) && r.matches(a))
    }
}

impl InboundPolicy {
    /// Compiles the controller's view; refuses what it cannot evaluate.
    pub fn compile(security: &pb::InboundSecurity) -> Result<Self, AuthzError> {
        let mut out = InboundPolicy {
            default_mode: mode(security.mtls),
            port_modes: security
                .port_mtls
                .iter()
                .filter_map(|(p, m)| u16::try_from(*p).ok().map(|p| (p, mode(*m))))
                .collect(),
            ..InboundPolicy::default()
        };
        for p in &security.policies {
            let dry_run = p.dry_run;
            let p = compile::policy(p)?;
            match (p.action, dry_run) {
                (Action::Deny, false) => out.deny.push(p),
                (Action::Allow, false) => out.allow.push(p),
                (Action::Deny, true) => out.dry_deny.push(p),
                (Action::Allow, true) => out.dry_allow.push(p),
                // AUDIT never enforces anything; dry-run changes nothing.
                (Action::Audit, _) => out.audit.push(p),
            }
        }
        Ok(out)
    }

    /// The mTLS mode of an application port.
    pub fn mode_for(&self, port: u16) -> MtlsMode {
        self.port_modes
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(self.default_mode, |(_, m)| *m)
    }

    /// Whether any authorization policy applies (dry-run ones included).
    pub fn has_policies(&self) -> bool {
        !(self.deny.is_empty()
            && self.allow.is_empty()
            && self.audit.is_empty()
            && self.dry_deny.is_empty()
            && self.dry_allow.is_empty())
    }

    /// Evaluates an HTTP request.
    pub fn check_http(&self, conn: &Connection<'_>, req: &Request<'_>) -> Verdict {
        self.check(&Attrs::new(conn, Some(req)))
    }

    /// Evaluates a TCP connection: HTTP-only fields are absent (see `Policy::matches`).
    pub fn check_tcp(&self, conn: &Connection<'_>) -> Verdict {
        self.check(&Attrs::new(conn, None))
    }

    /// Istio's order: a matching DENY denies; else with no ALLOW policy the
    /// request is allowed; else some ALLOW must match. AUDIT only reports.
    /// Dry-run policies get the same evaluation on their own.
    fn check(&self, a: &Attrs<'_>) -> Verdict {
        if !self.has_policies() {
            return Verdict {
                allowed: true,
                policy: None,
                audit: None,
                dry_run: None,
            };
        }
        let audit = self
            .audit
            .iter()
            .find(|p| p.matches(a))
            .map(|p| p.name.clone());
        let dry_run = (!self.dry_deny.is_empty() || !self.dry_allow.is_empty()).then(|| {
            let (allowed, policy) = decide(&self.dry_deny, &self.dry_allow, a);
            DryRun { allowed, policy }
        });
        let (allowed, policy) = decide(&self.deny, &self.allow, a);
        Verdict {
            allowed,
            policy,
            audit,
            dry_run,
        }
    }
}

/// DENY before ALLOW over one set of policies: (allowed, deciding policy).
fn decide(deny: &[Policy], allow: &[Policy], a: &Attrs<'_>) -> (bool, Option<String>) {
    if let Some(p) = deny.iter().find(|p| p.matches(a)) {
        return (false, Some(p.name.clone()));
    }
    if allow.is_empty() {
        return (true, None);
    }
    let hit = allow.iter().find(|p| p.matches(a));
    (hit.is_some(), hit.map(|p| p.name.clone()))
}
