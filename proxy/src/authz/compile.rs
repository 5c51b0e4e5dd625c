//! Turns the controller's AuthorizationPolicy messages into compiled rules,
//! refusing (with the Istio field path) anything that cannot be evaluated.

#[cfg(test)]
mod tests;

use http::HeaderName;
use sluice_api::config as pb;

use super::AuthzError;
use super::matcher::{IpBlock, PathMatch, StrMatch};
use super::rule::{AuthKey, Condition, Field, IpKey, Operation, Peer, Rule, StrKey};

/// What a policy does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Deny,
    Audit,
}

/// A compiled AuthorizationPolicy.
#[derive(Debug)]
pub(crate) struct Policy {
    /// `<namespace>/<name>`.
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) rules: Vec<Rule>,
}

/// Builds errors that name the policy being compiled.
struct Ctx<'a> {
    policy: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: String, reason: impl Into<String>) -> AuthzError {
        AuthzError {
            policy: self.policy.to_owned(),
            field,
            reason: reason.into(),
        }
    }

    /// Compiles string values; Istio's validation refuses empty ones.
    fn strings(
        &self,
        path: &str,
        values: &[String],
        parse: fn(&str) -> StrMatch,
    ) -> Result<Vec<StrMatch>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(k, v)| {
                if v.is_empty() {
                    Err(self.err(format!("{path}[{k}]"), "empty value"))
                } else {
                    Ok(parse(v))
                }
            })
            .collect()
    }

    fn string_field(
        &self,
        path: &str,
        not_path: &str,
        any: &[String],
        none: &[String],
    ) -> Result<Field<StrMatch>, AuthzError> {
        Ok(Field {
            any: self.strings(path, any, StrMatch::parse)?,
            none: self.strings(not_path, none, StrMatch::parse)?,
        })
    }

    fn ips(&self, path: &str, values: &[String]) -> Result<Vec<IpBlock>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(k, v)| IpBlock::parse(v).map_err(|why| self.err(format!("{path}[{k}]"), why)))
            .collect()
    }

    fn paths(&self, path: &str, values: &[String]) -> Result<Vec<PathMatch>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let why = if v.is_empty() {
                    "empty value".to_owned()
                } else {
                    match PathMatch::parse(v) {
                        Ok(m) => return Ok(m),
                        Err(why) => why,
                    }
                };
                Err(self.err(format!("{path}[{k}]"), why))
            })
            .collect()
    }

    fn ports(&self, path: &str, values: &[u32]) -> Result<Vec<u16>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(k, p)| {
                u16::try_from(*p).map_err(|_| {
                    self.err(
                        format!("{path}[{k}]"),
                        format!("{p} is not a port in 0..=65535"),
                    )
                })
            })
            .collect()
    }

    fn port_strings(&self, path: &str, values: &[String]) -> Result<Vec<u16>, AuthzError> {
        values
            .iter()
            .enumerate()
            .map(|(k, v)| {
                v.parse::<u16>().map_err(|_| {
                    self.err(
                        format!("{path}[{k}]"),
                        format!("{v:?} is not a port in 0..=65535"),
                    )
                })
            })
            .collect()
    }
}

/// Compiles one policy message.
pub(crate) fn policy(p: &pb::AuthorizationPolicy) -> Result<Policy, AuthzError> {
    let cx = Ctx { policy: &p.name };
    let action = match pb::authorization_policy::Action::try_from(p.action) {
        Ok(pb::authorization_policy::Action::Allow) => Action::Allow,
        Ok(pb::authorization_policy::Action::Deny) => Action::Deny,
        Ok(pb::authorization_policy::Action::Audit) => Action::Audit,
        Err(_) => return Err(cx.err("action".into(), format!("unknown action {}", p.action))),
    };
    let rules = p
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| rule(&cx, i, r))
        .collect::<Result<_, _>>()?;
    Ok(Policy {
        name: p.name.clone(),
        action,
        rules,
    })
}

fn rule(cx: &Ctx<'_>, i: usize, r: &pb::AuthorizationRule) -> Result<Rule, AuthzError> {
    let from: Vec<Peer> = (r.from.iter().enumerate())
        .map(|(j, s)| peer(cx, &format!("rules[{i}].from[{j}].source"), s))
        .collect::<Result<_, _>>()?;
    let to: Vec<Operation> = (r.to.iter().enumerate())
        .map(|(j, o)| operation(cx, &format!("rules[{i}].to[{j}].operation"), o))
        .collect::<Result<_, _>>()?;
    let when: Vec<Condition> = (r.when.iter().enumerate())
        .map(|(j, c)| condition(cx, &format!("rules[{i}].when[{j}]"), c))
        .collect::<Result<_, _>>()?;
    let http_only = from.iter().any(Peer::http_only)
        || to.iter().any(Operation::http_only)
        || when.iter().any(Condition::http_only);
    Ok(Rule {
        from,
        to,
        when,
        http_only,
    })
}

fn peer(cx: &Ctx<'_>, at: &str, s: &pb::PeerMatch) -> Result<Peer, AuthzError> {
    let peer = Peer {
        principals: cx.string_field(
            &format!("{at}.principals"),
            &format!("{at}.notPrincipals"),
            &s.principals,
            &s.not_principals,
        )?,
        namespaces: cx.string_field(
            &format!("{at}.namespaces"),
            &format!("{at}.notNamespaces"),
            &s.namespaces,
            &s.not_namespaces,
        )?,
        ip_blocks: Field {
            any: cx.ips(&format!("{at}.ipBlocks"), &s.ip_blocks)?,
            none: cx.ips(&format!("{at}.notIpBlocks"), &s.not_ip_blocks)?,
        },
        remote_ip_blocks: Field {
            any: cx.ips(&format!("{at}.remoteIpBlocks"), &s.remote_ip_blocks)?,
            none: cx.ips(&format!("{at}.notRemoteIpBlocks"), &s.not_remote_ip_blocks)?,
        },
        request_principals: cx.string_field(
            &format!("{at}.requestPrincipals"),
            &format!("{at}.notRequestPrincipals"),
            &s.request_principals,
            &s.not_request_principals,
        )?,
    };
    let empty = peer.principals.is_empty()
        && peer.namespaces.is_empty()
        && peer.ip_blocks.is_empty()
        && peer.remote_ip_blocks.is_empty()
        && peer.request_principals.is_empty();
    if empty {
        // Istio's validation refuses an empty source rather than reading it as "any".
        return Err(cx.err(at.to_owned(), "must set at least one field"));
    }
    Ok(peer)
}

fn operation(cx: &Ctx<'_>, at: &str, o: &pb::OperationMatch) -> Result<Operation, AuthzError> {
    let op = Operation {
        hosts: Field {
            any: cx.strings(&format!("{at}.hosts"), &o.hosts, StrMatch::parse_lowercase)?,
            none: cx.strings(
                &format!("{at}.notHosts"),
                &o.not_hosts,
                StrMatch::parse_lowercase,
            )?,
        },
        ports: Field {
            any: cx.ports(&format!("{at}.ports"), &o.ports)?,
            none: cx.ports(&format!("{at}.notPorts"), &o.not_ports)?,
        },
        methods: cx.string_field(
            &format!("{at}.methods"),
            &format!("{at}.notMethods"),
            &o.methods,
            &o.not_methods,
        )?,
        paths: Field {
            any: cx.paths(&format!("{at}.paths"), &o.paths)?,
            none: cx.paths(&format!("{at}.notPaths"), &o.not_paths)?,
        },
    };
    let empty =
        op.hosts.is_empty() && op.ports.is_empty() && op.methods.is_empty() && op.paths.is_empty();
    if empty {
        // Istio's validation refuses an empty operation rather than reading it as "any".
        return Err(cx.err(at.to_owned(), "must set at least one field"));
    }
    Ok(op)
}

/// Keys from Istio's "Authorization Policy Conditions" reference.
fn condition(cx: &Ctx<'_>, at: &str, c: &pb::ConditionMatch) -> Result<Condition, AuthzError> {
    let key = c.key.as_str();
    let values = format!("{at}.values");
    let not_values = format!("{at}.notValues");
    if c.values.is_empty() && c.not_values.is_empty() {
        return Err(cx.err(at.to_owned(), "needs values or notValues"));
    }
    let strings = || cx.string_field(&values, &not_values, &c.values, &c.not_values);
    let ips = || -> Result<Field<IpBlock>, AuthzError> {
        Ok(Field {
            any: cx.ips(&values, &c.values)?,
            none: cx.ips(&not_values, &c.not_values)?,
        })
    };
    let key_err = |why: String| cx.err(format!("{at}.key"), why);
    Ok(match key {
        "source.ip" => Condition::Ip(IpKey::Source, ips()?),
        "remote.ip" => Condition::Ip(IpKey::Remote, ips()?),
        "destination.ip" => Condition::Ip(IpKey::Destination, ips()?),
        "source.namespace" => Condition::Str(StrKey::Namespace, strings()?),
        "source.principal" => Condition::Str(StrKey::Principal, strings()?),
        // `<namespace>/<account>` names the principal in any trust domain.
        "source.serviceAccount" => {
            let as_principal = |v: &[String]| -> Vec<String> {
                v.iter()
                    .map(|a| match a.split_once('/') {
                        Some((ns, sa)) => format!("*/ns/{ns}/sa/{sa}"),
                        None => a.clone(),
                    })
                    .collect()
            };
            let field = cx.string_field(
                &values,
                &not_values,
                &as_principal(&c.values),
                &as_principal(&c.not_values),
            )?;
            Condition::Str(StrKey::Principal, field)
        }
        "connection.sni" => Condition::Str(StrKey::Sni, strings()?),
        "destination.port" => Condition::Port(Field {
            any: cx.port_strings(&values, &c.values)?,
            none: cx.port_strings(&not_values, &c.not_values)?,
        }),
        "request.auth.principal" => Condition::Auth(AuthKey::Principal, strings()?),
        "request.auth.audiences" => Condition::Auth(AuthKey::Audiences, strings()?),
        "request.auth.presenter" => Condition::Auth(AuthKey::Presenter, strings()?),
        _ => {
            if let Some(name) = bracketed(key, "request.headers") {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| key_err(format!("{name:?} is not a valid header name")))?;
                Condition::Header(name, strings()?)
            } else if let Some(path) = bracketed(key, "request.auth.claims") {
                let path: Vec<String> = path.split("][").map(str::to_owned).collect();
                if path.iter().any(|p| p.is_empty() || p.contains(['[', ']'])) {
                    return Err(key_err(format!("{key:?} is not a valid claim path")));
                }
                Condition::Auth(AuthKey::Claim(path), strings()?)
            } else if key.starts_with("experimental.envoy.filters.") {
                return Err(key_err(format!("{key:?} is not supported by sluice")));
            } else {
                return Err(key_err(format!("unknown condition key {key:?}")));
            }
        }
    })
}

/// `name` of `<attr>[name]` (claims may nest: `request.auth.claims[a][b]`).
fn bracketed<'k>(key: &'k str, attr: &str) -> Option<&'k str> {
    let inner = key
        .strip_prefix(attr)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    (!inner.is_empty() && !inner.starts_with(']')).then_some(inner)
}
