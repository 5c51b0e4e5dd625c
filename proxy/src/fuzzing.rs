//! Entry points for the fuzz targets (`fuzz/`) and the corpus replay test: each
//! takes arbitrary bytes and drives one parser of hostile input the way the
//! proxy does. None may panic; the few invariants they check panic on purpose.

#[cfg(test)]
mod tests;

mod request;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use prost::Message as _;
use sluice_api::config as pb;

use crate::authz::{self, InboundPolicy};
use crate::detect::{self, Detected};
use crate::listener::head_guard;
use crate::matching::{RequestView, host_of, port_of, select_vhost};
use crate::model::{Action, ProxyConfig, Running};
use crate::path_normalization::{self, PathNormalization};
use crate::proxy_protocol::{self, Addresses};
use crate::rewrite::{path_and_query, redirect_location, rewritten_path};

pub use request::{ConnFacts, split_message, split_request};

/// The HTTP/1 request head guard: the first byte picks a read size, the rest
/// is the client's byte stream. What hyper would read has the same length as
/// what was sent, differs only in spoiled request-line bytes, and does not
/// depend on how the bytes were split into reads.
pub fn http1_head_guard(data: &[u8]) {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let whole = guarded(stream, usize::MAX);
    let split = guarded(stream, usize::from(step % 64) + 1);
    assert_eq!(whole, split, "read size changed what hyper reads");
    assert_eq!(
        whole.len(),
        stream.len(),
        "the guard added or dropped bytes"
    );
    for (out, sent) in whole.iter().zip(stream) {
        assert!(out == sent || *out == head_guard::SPOILED, "changed a byte");
    }
}

/// What hyper reads behind the guard when `stream` arrives `step` bytes per read.
fn guarded(stream: &[u8], step: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let reader = request::Trickle::new(stream, step);
    let mut guard = head_guard::HeadGuard::new(reader, 1024, std::time::Duration::from_secs(10));
    let mut out = Vec::new();
    // The reader never blocks, so the guard never starts its timer.
    let read = futures::executor::block_on(guard.read_to_end(&mut out));
    assert!(read.is_ok(), "reading through the guard failed: {read:?}");
    out
}

/// Protocol detection: every prefix of `data` classifies without panicking,
/// and once a prefix is decided, every longer prefix decides the same.
pub fn detect(data: &[u8]) {
    let data = &data[..data.len().min(detect::PEEK_LIMIT)];
    let mut decided: Option<Detected> = None;
    for end in 0..=data.len() {
        let verdict = detect::classify(&data[..end]);
        if let Some(first) = decided {
            assert_eq!(verdict, Some(first), "longer peek changed the verdict");
        }
        decided = decided.or(verdict);
    }
    if decided == Some(Detected::ProxyV2) {
        proxy_protocol(data);
    }
}

/// TLS ClientHello peeking: the first bytes go through detection, then
/// through rustls' ClientHello parser (what the inbound side terminates with),
/// reading the SNI and ALPN the proxy records for a peer. A ClientHello that
/// parses must have been detected as TLS.
pub fn tls_client_hello(data: &[u8]) {
    let detected = detect::classify(data);
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = data;
    // Feed in record-sized pieces as a socket would.
    while !rd.is_empty() {
        match acceptor.read_tls(&mut rd) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Ok(Some(accepted)) = acceptor.accept() {
        let hello = accepted.client_hello();
        let _sni = hello.server_name().map(str::to_owned);
        let _h2 = hello
            .alpn()
            .is_some_and(|mut a| a.any(|p| p == crate::tls::ALPN_H2));
        assert_eq!(
            detected,
            Some(Detected::Tls),
            "a parsed ClientHello was not detected as TLS"
        );
    }
}

/// PROXY protocol v2: the sync parser and the async reader agree, and a header
/// encoded from addresses taken from `data` parses back to the same addresses.
pub fn proxy_protocol(data: &[u8]) {
    let sync = parse_proxy_sync(data);
    let mut rd = data;
    let read = futures::executor::block_on(proxy_protocol::read(&mut rd));
    match (&sync, &read) {
        (Some(s), Ok(r)) => assert_eq!(s, r, "read and parse disagree"),
        (Some(_), Err(e)) => panic!("read failed where parse succeeded: {e}"),
        (None, _) => {}
    }
    if let Some((source, destination)) = addresses_from(data) {
        let header = proxy_protocol::encode(source, destination);
        let mut rd = &header[..];
        let parsed = futures::executor::block_on(proxy_protocol::read(&mut rd));
        let unmap = |a: SocketAddr| match a.ip() {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SocketAddr::new(v4.into(), a.port()),
                None => a,
            },
            IpAddr::V4(_) => a,
        };
        let want = Addresses {
            source: unmap(source),
            destination: unmap(destination),
        };
        assert_eq!(parsed.ok().flatten(), Some(want), "encode/read round trip");
    }
}

/// The complete header in `data`, parsed with the sync functions; `None` when
/// `data` is too short or the header is invalid.
fn parse_proxy_sync(data: &[u8]) -> Option<Option<Addresses>> {
    let head: &[u8; 16] = data.get(..16)?.try_into().ok()?;
    let len = proxy_protocol::parse_prefix(head).ok()?;
    let body = data.get(16..16 + len)?;
    proxy_protocol::parse_body(head, body).ok()
}

/// Two socket addresses made from the first bytes of `data` (v4 or v6 by the first bit).
fn addresses_from(data: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let (&first, rest) = data.split_first()?;
    let addr = |b: &[u8], v6: bool| -> Option<SocketAddr> {
        let ip: IpAddr = if v6 {
            let raw: [u8; 16] = b.get(..16)?.try_into().ok()?;
            Ipv6Addr::from(raw).into()
        } else {
            let raw: [u8; 4] = b.get(..4)?.try_into().ok()?;
            Ipv4Addr::from(raw).into()
        };
        let off = if v6 { 16 } else { 4 };
        let port = u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?);
        Some(SocketAddr::new(ip, port))
    };
    let (sv6, dv6) = (first & 1 == 1, first & 2 == 2);
    let source = addr(rest, sv6)?;
    let skip = if sv6 { 18 } else { 6 };
    let destination = addr(rest.get(skip..)?, dv6)?;
    Some((source, destination))
}

/// Request path normalization, every mode, on `data` as a path: a refusal or
/// a result that is normal under the same mode (normalizing is idempotent),
/// starts with `/` and is a valid request target; an unchanged path is one
/// the proxy may forward as it is.
pub fn request_path(data: &[u8]) {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [
        PathNormalization::None,
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ] {
        let Ok(Some(normal)) = path_normalization::normalize(path, mode) else {
            continue;
        };
        assert!(normal.starts_with('/'), "{mode:?}: {path:?} → {normal:?}");
        assert_eq!(
            path_normalization::normalize(&normal, mode),
            Ok(None),
            "{mode:?}: {path:?} → {normal:?} is not normal"
        );
        assert!(
            http::uri::PathAndQuery::try_from(normal.as_str()).is_ok(),
            "{mode:?}: {path:?} → {normal:?} is no request target"
        );
    }
}

/// Config snapshot decoding and conversion: prost bytes of a `Snapshot` into
/// the running model, then into the `/config_dump` JSON. Invalid input must
/// come back as an `InvalidConfig`, never as a panic.
pub fn snapshot(data: &[u8]) {
    let Ok(snapshot) = pb::Snapshot::decode(data) else {
        return;
    };
    let Ok(running) = Running::try_from(&snapshot) else {
        return;
    };
    let _ = serde_json::to_vec(&running);
    // A config update carries balancer state over from the running config.
    if let Some(Ok(mut again)) = snapshot.config.as_ref().map(ProxyConfig::try_from) {
        again.inherit_balancer_state(&running.config);
    }
}

/// Route matching: a route table from the `ProxyConfig` in the first part of
/// `data` (see [`split_message`]), a request from the rest (see
/// [`split_request`]); select the virtual host and route the way the outbound
/// side does, then rewrite the path or build the redirect.
pub fn route_match(data: &[u8]) {
    let (msg, rest) = split_message(data);
    let Ok(wire) = pb::ProxyConfig::decode(msg) else {
        return;
    };
    let Ok(cfg) = ProxyConfig::try_from(&wire) else {
        return;
    };
    let Some(mut req) = split_request(rest).1 else {
        return;
    };
    // The outbound side normalizes the path before it selects anything.
    request_path(req.uri.path().as_bytes());
    if path_normalization::normalize_uri(&mut req.uri, cfg.path_normalization).is_err() {
        return;
    }
    let authority = crate::http_util::authority_of(&req.uri, &req.headers)
        .unwrap_or_default()
        .to_owned();
    let port = port_of(&authority).unwrap_or(80);
    let host = host_of(&authority);
    let Some(vh) = select_vhost(&cfg, &host, port) else {
        return;
    };
    let view = RequestView {
        method: req.method.as_str(),
        scheme: req.uri.scheme_str().unwrap_or("http"),
        authority: &authority,
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
    };
    for route in &vh.routes {
        for m in &route.matches {
            if let Err(mismatch) = m.check(&view) {
                let _ = mismatch.to_string();
            }
        }
    }
    let Some((_, route, matched)) = vh.route_for(&view) else {
        return;
    };
    let _ = route.describe();
    match &route.action {
        Action::Redirect(r) => {
            let location = redirect_location(r, view.scheme, &authority, view.path, view.query);
            let _ = http::HeaderValue::from_str(&location);
        }
        Action::Forward(_) | Action::DirectResponse { .. } => {
            let path = rewritten_path(route, matched, view.path);
            let pq = path_and_query(&path, view.query);
            let target = route.rewrite.authority.as_deref().unwrap_or(&authority);
            let mut parts = req;
            route.request_headers.apply(&mut parts.headers);
            let _ = crate::http_util::shape_for_upstream(&mut parts, true, target, &pq);
            let _ = crate::http_util::shape_for_upstream(&mut parts, false, target, &pq);
        }
    }
}

/// AuthorizationPolicy evaluation: an `InboundSecurity` from the first part of
/// `data`, a connection and request from the rest; compile, then evaluate it
/// for HTTP and TCP. With no policy at all, everything is allowed.
pub fn authz(data: &[u8]) {
    let (msg, rest) = split_message(data);
    let Ok(wire) = pb::InboundSecurity::decode(msg) else {
        return;
    };
    let Ok(policy) = InboundPolicy::compile(&wire) else {
        return;
    };
    let (conn, req) = split_request(rest);
    let conn = authz::Connection {
        source_ip: conn.source_ip,
        remote_ip: conn.source_ip,
        destination_ip: conn.destination.ip(),
        destination_port: conn.destination.port(),
        principal: conn.principal.as_deref(),
        sni: conn.sni.as_deref(),
    };
    let _ = policy.mode_for(conn.destination_port);
    let tcp = policy.check_tcp(&conn);
    if !policy.has_policies() {
        assert!(tcp.allowed, "no policy, yet a TCP connection was denied");
    }
    let Some(mut req) = req else { return };
    // The inbound side normalizes the path before authorization.
    if path_normalization::normalize_uri(&mut req.uri, PathNormalization::default()).is_err() {
        return;
    }
    let authority = crate::http_util::authority_of(&req.uri, &req.headers).unwrap_or_default();
    // Tokens from the network go through request authentication first.
    let mut headers = req.headers.clone();
    let mut uri = req.uri.clone();
    let identity = match policy
        .jwt
        .as_ref()
        .map(|a| a.authenticate(&mut headers, &mut uri))
    {
        Some(crate::jwt::Outcome::Verified(id)) => Some(id),
        _ => None,
    };
    let request = authz::Request {
        method: req.method.as_str(),
        path: req.uri.path(),
        host: authority,
        headers: &headers,
        auth: identity.as_deref(),
    };
    let verdict = policy.check_http(&conn, &request);
    if !policy.has_policies() {
        assert!(verdict.allowed, "no policy, yet a request was denied");
    }
}
