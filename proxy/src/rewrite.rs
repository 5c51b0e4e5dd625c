//! Pure request transformations of a matched route: URI/authority rewrites and
//! redirect `Location`s (Istio HTTPRewrite / HTTPRedirect semantics).

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::matching::{Matched, port_of};
use crate::model::{DerivePort, Redirect, Route, strip_port};

/// The path after the route's `rewrite.uri` and `rewrite.uri_regex`.
pub fn rewritten_path<'p>(route: &Route, matched: Matched, path: &'p str) -> Cow<'p, str> {
    let mut out: Cow<'p, str> = Cow::Borrowed(path);
    if let Some(new) = &route.rewrite.uri {
        out = match route.matched_prefix(matched) {
            // A prefix match swaps only the matched prefix (the match may have ignored case).
            Some(prefix) if path.len() >= prefix.len() && path.is_char_boundary(prefix.len()) => {
                Cow::Owned(format!("{new}{}", &path[prefix.len()..]))
            }
            _ => Cow::Owned(new.clone()),
        };
    }
    if let Some(rr) = &route.rewrite.uri_regex {
        let replaced = rr
            .pattern
            .replace_all(&out, rr.substitution.as_str())
            .into_owned();
        out = Cow::Owned(replaced);
    }
    out
}

/// `path?query`.
pub fn path_and_query(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// The `Location` of a redirect for a request with the given parts.
pub fn redirect_location(
    r: &Redirect,
    scheme: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
) -> String {
    let scheme = r.scheme.as_deref().unwrap_or(scheme);
    let request_port = port_of(authority);
    let (host, kept_port) = match &r.authority {
        Some(a) => (strip_port(a), port_of(a)),
        None => (strip_port(authority), None),
    };
    let port = match (r.port, r.derive_port) {
        (Some(p), _) => Some(p),
        (None, DerivePort::FromProtocolDefault) => None,
        (None, DerivePort::FromRequestPort) => request_port,
        (None, DerivePort::Unspecified) if r.authority.is_some() => kept_port,
        (None, DerivePort::Unspecified) => request_port,
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let mut out = format!("{scheme}://{host}");
    if let Some(p) = port.filter(|p| *p != default_port) {
        out.push(':');
        out.push_str(&p.to_string());
    }
    match &r.uri {
        Some(uri) => {
            out.push_str(uri);
            if let (false, Some(q)) = (uri.contains('?'), query) {
                out.push('?');
                out.push_str(q);
            }
        }
        None => out.push_str(&path_and_query(path, query)),
    }
    out
}
