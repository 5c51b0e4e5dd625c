//! Route selection: virtual host by authority and port, then the first route
//! whose match applies. Mismatches can be explained for `/debug/route`.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use crate::model::{Domain, ProxyConfig, Route, RouteMatch, StringMatch, VirtualHost};

/// The parts of a request that routes match on.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub scheme: &'a str,
    /// Authority as sent (may include a port).
    pub authority: &'a str,
    /// Path without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
}

impl RequestView<'_> {
    /// A header's value; repeated headers are joined with "," as HTTP allows.
    pub fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?.to_str().ok()?;
        let rest: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
        if rest.is_empty() {
            return Some(Cow::Borrowed(first));
        }
        let mut joined = first.to_owned();
        for v in rest {
            joined.push(',');
            joined.push_str(v);
        }
        Some(Cow::Owned(joined))
    }

    /// A query parameter's (raw) value; a key without `=` has value "".
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then_some(v)
        })
    }
}

impl StringMatch {
    /// Whether `value` (None = absent) satisfies the matcher.
    pub fn matches(&self, value: Option<&str>, ignore_case: bool) -> bool {
        let Some(value) = value else { return false };
        match self {
            StringMatch::Exact(e) if ignore_case => value.eq_ignore_ascii_case(e),
            StringMatch::Exact(e) => value == e,
            StringMatch::Prefix(p) if ignore_case => {
                value.len() >= p.len()
                    && value.is_char_boundary(p.len())
                    && value[..p.len()].eq_ignore_ascii_case(p)
            }
            StringMatch::Prefix(p) => value.starts_with(p.as_str()),
            StringMatch::Regex(r) => r.is_full_match(value),
            StringMatch::Present => true,
        }
    }
}

/// Why one condition of a `RouteMatch` failed.
#[derive(Debug)]
pub struct Mismatch<'a> {
    /// `uri`, `method`, `header "x"`, ...
    pub what: Cow<'a, str>,
    pub expected: &'a StringMatch,
    pub actual: Option<String>,
    /// A `without_headers` condition held.
    pub negated: bool,
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            let actual = self.actual.as_deref().unwrap_or("");
            return write!(
                f,
                "{}: {actual:?} matches {} but must not",
                self.what,
                expectation(self.expected)
            );
        }
        match &self.actual {
            None => write!(
                f,
                "{} is absent (wanted {})",
                self.what,
                expectation(self.expected)
            ),
            Some(actual) => {
                let verb = match self.expected {
                    StringMatch::Exact(_) => "does not equal",
                    StringMatch::Prefix(_) => "does not start with",
                    StringMatch::Regex(_) => "does not fully match regex",
                    StringMatch::Present => "is not present",
                };
                let target = match self.expected {
                    StringMatch::Exact(s) | StringMatch::Prefix(s) => format!("{s:?}"),
                    StringMatch::Regex(r) => format!("{:?}", r.source()),
                    StringMatch::Present => String::new(),
                };
                write!(f, "{}: {actual:?} {verb} {target}", self.what)
            }
        }
    }
}

fn expectation(m: &StringMatch) -> String {
    match m {
        StringMatch::Exact(s) => format!("exact {s:?}"),
        StringMatch::Prefix(s) => format!("prefix {s:?}"),
        StringMatch::Regex(r) => format!("regex {:?}", r.source()),
        StringMatch::Present => "present".to_owned(),
    }
}

impl RouteMatch {
    /// `Ok` when every condition holds, else the first failing one.
    pub fn check<'m>(&'m self, req: &RequestView<'_>) -> Result<(), Mismatch<'m>> {
        let plain = |what: &'static str, m: &'m Option<StringMatch>, v: &str, ic: bool| match m {
            Some(m) if !m.matches(Some(v), ic) => Err(Mismatch {
                what: Cow::Borrowed(what),
                expected: m,
                actual: Some(v.to_owned()),
                negated: false,
            }),
            _ => Ok(()),
        };
        plain("uri", &self.uri, req.path, self.ignore_uri_case)?;
        plain("scheme", &self.scheme, req.scheme, false)?;
        plain("method", &self.method, req.method, false)?;
        plain("authority", &self.authority, req.authority, false)?;
        for (name, m) in &self.headers {
            let v = req.header(name);
            if !m.matches(v.as_deref(), false) {
                return Err(Mismatch {
                    what: Cow::Owned(format!("header {name:?}")),
                    expected: m,
                    actual: v.map(Cow::into_owned),
                    negated: false,
                });
            }
        }
        for (name, m) in &self.query_params {
            let v = req.query_param(name);
            if !m.matches(v, false) {
                return Err(Mismatch {
                    what: Cow::Owned(format!("query {name:?}")),
                    expected: m,
                    actual: v.map(str::to_owned),
                    negated: false,
                });
            }
        }
        for (name, m) in &self.without_headers {
            let v = req.header(name);
            if m.matches(v.as_deref(), false) {
                return Err(Mismatch {
                    what: Cow::Owned(format!("without header {name:?}")),
                    expected: m,
                    actual: v.map(Cow::into_owned),
                    negated: true,
                });
            }
        }
        Ok(())
    }
}

/// Which alternative of a route applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    /// The route has no conditions.
    Always,
    /// `matches[i]` held.
    Alternative(usize),
}

impl Route {
    /// Which alternative applies to `req`, if any.
    pub fn applies(&self, req: &RequestView<'_>) -> Option<Matched> {
        if self.matches.is_empty() {
            return Some(Matched::Always);
        }
        self.matches
            .iter()
            .position(|m| m.check(req).is_ok())
            .map(Matched::Alternative)
    }

    /// The uri prefix a `rewrite.uri` replaces (Envoy's `prefix_rewrite`):
    /// the matched prefix, or `/` when the applying alternative has no uri
    /// condition (istiod matches those with prefix `/`). `None` for exact and
    /// regex matches, whose whole path is replaced.
    pub fn matched_prefix(&self, matched: Matched) -> Option<&str> {
        let uri = match matched {
            Matched::Alternative(i) => self.matches.get(i)?.uri.as_ref(),
            Matched::Always => None,
        };
        match uri {
            Some(StringMatch::Prefix(p)) => Some(p),
            Some(_) => None,
            None => Some("/"),
        }
    }
}

impl VirtualHost {
    /// The first route that applies, with its index and which alternative held.
    pub fn route_for(&self, req: &RequestView<'_>) -> Option<(usize, &Route, Matched)> {
        self.routes
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.applies(req).map(|m| (i, r, m)))
    }

    /// How specifically this host's domains name `host` (higher wins), if at all.
    pub fn domain_score(&self, host: &str) -> Option<usize> {
        self.domains
            .iter()
            .filter_map(|d| domain_score(d, host))
            .max()
    }
}

fn domain_score(d: &Domain, host: &str) -> Option<usize> {
    match d {
        Domain::Exact(e) => (e == host).then_some(usize::MAX),
        Domain::Wildcard(suffix) => {
            (host.len() > suffix.len() && host.ends_with(suffix.as_str())).then_some(suffix.len())
        }
    }
}

/// Whether `domains` name `host` (lower-case, no port).
pub fn domains_match(domains: &[Domain], host: &str) -> bool {
    domains.iter().any(|d| domain_score(d, host).is_some())
}

/// Lower-cased host of an authority, port removed.
pub fn host_of(authority: &str) -> Cow<'_, str> {
    let host = crate::model::strip_port(authority);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The port written in an authority, if any.
pub fn port_of(authority: &str) -> Option<u16> {
    let host = crate::model::strip_port(authority);
    authority.get(host.len()..)?.strip_prefix(':')?.parse().ok()
}

/// The virtual host for `host` on `port`: most specific domain on that port; else,
/// under `ALLOW_ANY`, when exactly one virtual host (on another port) names the
/// host exactly, that one (standing in for Istio's passthrough, which reaches
/// the host's workloads on a port no service declares). Under `REGISTRY_ONLY`
/// a port the registry does not declare for the host has no virtual host.
pub fn select_vhost<'c>(cfg: &'c ProxyConfig, host: &str, port: u16) -> Option<&'c VirtualHost> {
    let best = cfg
        .virtual_hosts
        .iter()
        .filter(|vh| vh.port == port)
        .filter_map(|vh| vh.domain_score(host).map(|s| (s, vh)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, vh)| vh);
    if best.is_some() || cfg.registry_only {
        return best;
    }
    // Only an exact name is strong enough to ignore the port.
    let mut elsewhere = cfg
        .virtual_hosts
        .iter()
        .filter(|vh| vh.domain_score(host) == Some(usize::MAX));
    match (elsewhere.next(), elsewhere.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}
