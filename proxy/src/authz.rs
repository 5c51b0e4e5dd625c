//! Inbound security policy of the workload: the PeerAuthentication mode per
//! port and Istio AuthorizationPolicy evaluation (DENY before ALLOW; with an
//! ALLOW policy present, a request no ALLOW policy matches is denied).

use std::net::IpAddr;

use sluice_api::config as pb;

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
}

/// A workload's compiled inbound security.
#[derive(Debug)]
pub struct InboundPolicy {
    default_mode: MtlsMode,
    port_modes: Vec<(u16, MtlsMode)>,
    policies: Vec<pb::AuthorizationPolicy>,
}

impl Default for InboundPolicy {
    fn default() -> Self {
        InboundPolicy {
            default_mode: MtlsMode::Permissive,
            port_modes: Vec::new(),
            policies: Vec::new(),
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

impl InboundPolicy {
    /// Compiles the controller's view; refuses what it cannot evaluate.
    pub fn compile(security: &pb::InboundSecurity) -> Result<Self, AuthzError> {
        Ok(InboundPolicy {
            default_mode: mode(security.mtls),
            port_modes: security
                .port_mtls
                .iter()
                .filter_map(|(p, m)| u16::try_from(*p).ok().map(|p| (p, mode(*m))))
                .collect(),
            policies: security.policies.clone(),
        })
    }

    /// The mTLS mode of an application port.
    pub fn mode_for(&self, port: u16) -> MtlsMode {
        self.port_modes
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(self.default_mode, |(_, m)| *m)
    }

    /// Whether any authorization policy applies.
    pub fn has_policies(&self) -> bool {
        !self.policies.is_empty()
    }

    /// Evaluates an HTTP request. (Skeleton: replaced by the authorization work.)
    pub fn check_http(&self, _conn: &Connection<'_>, _req: &Request<'_>) -> Verdict {
        Verdict {
            allowed: true,
            policy: None,
            audit: None,
        }
    }

    /// Evaluates a TCP connection. (Skeleton: replaced by the authorization work.)
    pub fn check_tcp(&self, _conn: &Connection<'_>) -> Verdict {
        Verdict {
            allowed: true,
            policy: None,
            audit: None,
        }
    }
}
