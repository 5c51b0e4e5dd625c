//! The compiled form of an authorization rule and its evaluation against one
//! request (HTTP) or connection (TCP, where HTTP-only fields are absent).

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use http::HeaderName;

use super::matcher::{IpBlock, PathMatch, StrMatch};
use super::{Connection, Request};

/// A field and its `not_` form: some value of `any` (when set) must match,
/// and no value of `none` may.
#[derive(Debug)]
pub(crate) struct Field<M> {
    pub(crate) any: Vec<M>,
    pub(crate) none: Vec<M>,
}

impl<M> Default for Field<M> {
    fn default() -> Self {
        Field {
            any: Vec::new(),
            none: Vec::new(),
        }
    }
}

impl<M> Field<M> {
    /// Whether neither form is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.any.is_empty() && self.none.is_empty()
    }

    /// `hit` tells whether one configured value matches the request's
    /// attribute; an absent attribute is a `hit` that is always false, so
    /// `any` fails and `none` holds.
    fn holds(&self, hit: impl Fn(&M) -> bool) -> bool {
        (self.any.is_empty() || self.any.iter().any(&hit)) && !self.none.iter().any(&hit)
    }
}

/// What a request offers to the matchers, derived once per evaluation.
pub(crate) struct Attrs<'a> {
    pub(crate) conn: &'a Connection<'a>,
    /// `None` for a TCP connection: HTTP-only fields are then skipped.
    pub(crate) req: Option<&'a Request<'a>>,
    /// The namespace inside the peer principal (`<td>/ns/<ns>/sa/<sa>`).
    pub(crate) namespace: Option<&'a str>,
}

impl<'a> Attrs<'a> {
    /// Gathers the attributes of a connection and, for HTTP, its request.
    pub(crate) fn new(conn: &'a Connection<'a>, req: Option<&'a Request<'a>>) -> Self {
        Attrs {
            conn,
            req,
            namespace: conn.principal.and_then(namespace_of),
        }
    }
}

/// The `<ns>` of `<td>/ns/<ns>/sa/<sa>`; Istio matches namespaces inside the principal.
fn namespace_of(principal: &str) -> Option<&str> {
    let (_, rest) = principal.split_once("/ns/")?;
    let ns = rest.split_once('/').map_or(rest, |(ns, _)| ns);
    (!ns.is_empty()).then_some(ns)
}

fn str_hit(value: Option<&str>) -> impl Fn(&StrMatch) -> bool + '_ {
    move |m| value.is_some_and(|v| m.matches(v.as_bytes()))
}

fn ip_hit(ip: IpAddr) -> impl Fn(&IpBlock) -> bool {
    move |b| b.contains(ip)
}

/// A `from.source` entry.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    pub(crate) principals: Field<StrMatch>,
    pub(crate) namespaces: Field<StrMatch>,
    pub(crate) ip_blocks: Field<IpBlock>,
    pub(crate) remote_ip_blocks: Field<IpBlock>,
    /// HTTP-only: `<iss>/<sub>` of a verified token.
    pub(crate) request_principals: Field<StrMatch>,
}

impl Peer {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        self.principals.holds(str_hit(a.conn.principal))
            && self.namespaces.holds(str_hit(a.namespace))
            && self.ip_blocks.holds(ip_hit(a.conn.source_ip))
            && self.remote_ip_blocks.holds(ip_hit(a.conn.remote_ip))
            && a.req.is_none_or(|req| {
                let principal = req.auth.and_then(|id| id.principal.as_deref());
                self.request_principals.holds(str_hit(principal))
            })
    }

    pub(crate) fn http_only(&self) -> bool {
        !self.request_principals.is_empty()
    }
}

/// A `to.operation` entry.
#[derive(Debug, Default)]
pub(crate) struct Operation {
    /// Lowercased: hosts match case-insensitively.
    pub(crate) hosts: Field<StrMatch>,
    pub(crate) ports: Field<u16>,
    pub(crate) methods: Field<StrMatch>,
    pub(crate) paths: Field<PathMatch>,
}

impl Operation {
    fn matches(&self, a: &Attrs<'_>) -> bool {
        if !self.ports.holds(|p| *p == a.conn.destination_port) {
            return false;
        }
        let Some(req) = a.req else {
            return true;
        };
        // Istio matches the authority exactly as sent, port included:
        // `example.com` does not match `example.com:8080` (write both, or
        // `example.com:*`).
        self.hosts
            .holds(|m| m.matches_ignore_case(req.host.as_bytes()))
            && self.methods.holds(|m| m.matches(req.method.as_bytes()))
            && self.paths.holds(|m| m.matches(req.path.as_bytes()))
    }

    pub(crate) fn http_only(&self) -> bool {
        !(self.hosts.is_empty() && self.methods.is_empty() && self.paths.is_empty())
    }
}

/// Which connection address an IP condition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IpKey {
    Source,
    Remote,
    Destination,
}

/// Which peer string a string condition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrKey {
    Namespace,
    Principal,
    Sni,
}

/// One `when` entry, by the attribute its key names.
#[derive(Debug)]
pub(crate) enum Condition {
    /// `request.headers[<name>]`, HTTP-only; any value of the header may match.
    Header(HeaderName, Field<StrMatch>),
    Ip(IpKey, Field<IpBlock>),
    Str(StrKey, Field<StrMatch>),
    /// `destination.port`.
    Port(Field<u16>),
    /// `request.auth.*`, HTTP-only; absent without a verified token.
    Auth(AuthKey, Field<StrMatch>),
}

/// Which part of a verified token an `request.auth.*` condition reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AuthKey {
    Principal,
    Audiences,
    Presenter,
    /// `request.auth.claims[a][b]` as `[a, b]`.
    Claim(Vec<String>),
}

impl AuthKey {
    /// The values a token offers for this key (any may match).
    fn values<'i>(&self, id: &'i crate::jwt::Identity) -> Vec<&'i str> {
        match self {
            AuthKey::Principal => id.principal.as_deref().into_iter().collect(),
            AuthKey::Audiences => id.audiences.iter().map(String::as_str).collect(),
            AuthKey::Presenter => id.presenter.as_deref().into_iter().collect(),
            AuthKey::Claim(path) => id.claim_strings(path),
        }
    }
}

impl Condition {
    fn holds(&self, a: &Attrs<'_>) -> bool {
        match self {
            Condition::Header(name, field) => a.req.is_none_or(|req| {
                field.holds(|m| {
                    req.headers
                        .get_all(name)
                        .iter()
                        .any(|v| m.matches(v.as_bytes()))
                })
            }),
            Condition::Ip(key, field) => field.holds(ip_hit(match key {
                IpKey::Source => a.conn.source_ip,
                IpKey::Remote => a.conn.remote_ip,
                IpKey::Destination => a.conn.destination_ip,
            })),
            Condition::Str(key, field) => field.holds(str_hit(match key {
                StrKey::Namespace => a.namespace,
                StrKey::Principal => a.conn.principal,
                StrKey::Sni => a.conn.sni,
            })),
            Condition::Port(field) => field.holds(|p| *p == a.conn.destination_port),
            Condition::Auth(key, field) => a.req.is_none_or(|req| {
                let values = req.auth.map(|id| key.values(id)).unwrap_or_default();
                field.holds(|m| values.iter().any(|v| m.matches(v.as_bytes())))
            }),
        }
    }

    pub(crate) fn http_only(&self) -> bool {
        matches!(self, Condition::Header(..) | Condition::Auth(..))
    }
}

/// One rule: `from` (any), `to` (any) and `when` (all) must match.
#[derive(Debug, Default)]
pub(crate) struct Rule {
    pub(crate) from: Vec<Peer>,
    pub(crate) to: Vec<Operation>,
    pub(crate) when: Vec<Condition>,
    /// Whether any HTTP-only field is set (decides the rule's fate on TCP).
    pub(crate) http_only: bool,
}

impl Rule {
    /// Evaluates the rule. On TCP (`a.req` is `None`) HTTP-only fields are
    /// skipped here; ALLOW policies drop such rules before calling this.
    pub(crate) fn matches(&self, a: &Attrs<'_>) -> bool {
        (self.from.is_empty() || self.from.iter().any(|p| p.matches(a)))
            && (self.to.is_empty() || self.to.iter().any(|o| o.matches(a)))
            && self.when.iter().all(|c| c.holds(a))
    }
}
