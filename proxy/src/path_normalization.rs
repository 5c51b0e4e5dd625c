//! Request path normalization where a listener takes a request in, before routing,
//! authorization, rate limits, telemetry and the upstream see the path (Istio's
//! MeshConfig `pathNormalization`, which programs Envoy's `normalize_path`,
//! `merge_slashes` and `path_with_escaped_slashes_action`).
//!
//! The rules are Envoy's RFC 3986 canonicalizer (a snapshot of Chromium's URL
//! path canonicalization), in this order:
//! 1. `DECODE_AND_MERGE_SLASHES` only: `%2F`/`%2f` become `/`, `%5C`/`%5c` become `\`.
//! 2. Every mode but `NONE`: a path not starting with `/` or `\` gets a leading `/`;
//!    `\` becomes `/`; `.` and `..` segments (also spelled `%2e`, any case) are
//!    resolved, `..` never climbing above the root; percent-encoded unreserved
//!    characters (`A-Z a-z 0-9 - . _ ~`) are decoded; other percent-encodings are
//!    kept with the case of their hex digits as sent (Envoy does not uppercase
//!    them); a `%` that starts no valid escape is kept, and written `%25` when
//!    decoding would otherwise make it start one (`%%34%31` must not read `%41`);
//!    raw bytes a URL may not carry (controls, space, `"`, `#`, `<`, `>`, `?`,
//!    `^`, the backquote, `{`, `|`, `}`, DEL, non-ASCII) are percent-encoded with
//!    uppercase hex; a NUL (raw or `%00`) refuses the request (Envoy answers 400).
//! 3. `MERGE_SLASHES` and `DECODE_AND_MERGE_SLASHES`: runs of `/` become one.
//!
//! The query is never touched. A path that is already normal (the usual case) is
//! recognised by one scan and costs no allocation.

#[cfg(test)]
mod tests;

use std::str::FromStr;

use http::{Response, StatusCode, Uri};
use serde::Serialize;

use crate::body::{self, Body};
use crate::metrics::{SecurityMetrics, Side};

/// How request paths are normalized: Istio's MeshConfig
/// `pathNormalization.normalization` (`ProxyPathNormalization.NormalizationType`).
///
/// It lives in the running config (`model::ProxyConfig::path_normalization`);
/// until the controller sends MeshConfig's value, every proxy uses [`Self::Base`],
/// Istio's default. The controller's value converts with [`FromStr`] (Istio's
/// names, e.g. `"MERGE_SLASHES"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// `NONE`: the path goes on exactly as received (`%00` included).
    None,
    /// `BASE` (and `DEFAULT`): RFC 3986 normalization as Envoy's `normalize_path`.
    #[default]
    Base,
    /// `MERGE_SLASHES`: `BASE`, then runs of `/` merged into one.
    MergeSlashes,
    /// `DECODE_AND_MERGE_SLASHES`: `%2F` and `%5C` decoded first, then `MERGE_SLASHES`.
    DecodeAndMergeSlashes,
}

/// A path normalization mode that is not one of Istio's names.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown path normalization {0:?} (expected DEFAULT, NONE, BASE, MERGE_SLASHES or DECODE_AND_MERGE_SLASHES)"
)]
pub struct UnknownPathNormalization(String);

impl FromStr for PathNormalization {
    type Err = UnknownPathNormalization;

    /// Istio's enum names; `DEFAULT` is `BASE`, as in Istio.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "DEFAULT" | "BASE" => Ok(Self::Base),
            "NONE" => Ok(Self::None),
            "MERGE_SLASHES" => Ok(Self::MergeSlashes),
            "DECODE_AND_MERGE_SLASHES" => Ok(Self::DecodeAndMergeSlashes),
            other => Err(UnknownPathNormalization(other.to_owned())),
        }
    }
}

impl PathNormalization {
    fn merges_slashes(self) -> bool {
        matches!(self, Self::MergeSlashes | Self::DecodeAndMergeSlashes)
    }

    fn decodes_slashes(self) -> bool {
        self == Self::DecodeAndMergeSlashes
    }
}

/// Why a request path was refused instead of normalized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPath {
    /// A NUL byte, raw or as `%00` (Envoy's canonicalizer fails on it).
    #[error("the path holds a NUL byte (%00)")]
    Nul,
    /// The normalized path did not make a valid request target.
    #[error("the normalized path is not a valid request target")]
    Unusable,
}

/// The normalized form of `path` (the path alone, no query) under `mode`:
/// `None` when it is already normal. `*` (asterisk-form `OPTIONS`) and an
/// empty path (authority-form) name no resource and are left alone.
pub fn normalize(path: &str, mode: PathNormalization) -> Result<Option<String>, InvalidPath> {
    if mode == PathNormalization::None || path.is_empty() || path == "*" {
        return Ok(None);
    }
    let raw = path.as_bytes();
    if is_normal(raw, mode) {
        return Ok(None);
    }
    // Every byte written is ASCII: anything else was percent-encoded.
    let out = String::from_utf8(rewrite(raw, mode)?).map_err(|_| InvalidPath::Unusable)?;
    Ok((out != path).then_some(out))
}

/// The three steps of the module docs, for a path that is not normal.
fn rewrite(raw: &[u8], mode: PathNormalization) -> Result<Vec<u8>, InvalidPath> {
    let mut out = if mode.decodes_slashes() {
        canonical(&decode_slashes(raw))?
    } else {
        canonical(raw)?
    };
    if mode.merges_slashes() {
        out.dedup_by(|a, b| *a == b'/' && *b == b'/');
    }
    Ok(out)
}

/// Normalizes the path of `uri` in place (scheme, authority and query kept);
/// `true` when it changed.
pub fn normalize_uri(uri: &mut Uri, mode: PathNormalization) -> Result<bool, InvalidPath> {
    let Some(mut target) = normalize(uri.path(), mode)? else {
        return Ok(false);
    };
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut builder = Uri::builder();
    if let Some(scheme) = uri.scheme() {
        builder = builder.scheme(scheme.clone());
    }
    if let Some(authority) = uri.authority() {
        builder = builder.authority(authority.clone());
    }
    *uri = builder
        .path_and_query(target)
        .build()
        .map_err(|_| InvalidPath::Unusable)?;
    Ok(true)
}

/// Normalizes a request's path where a listener (`side`) takes it in,
/// counting rewrites and refusals in `sluice_path_normalizations_total`.
pub fn at_entry(
    uri: &mut Uri,
    mode: PathNormalization,
    metrics: &SecurityMetrics,
    side: Side,
) -> Result<(), InvalidPath> {
    match normalize_uri(uri, mode) {
        Ok(false) => Ok(()),
        Ok(true) => {
            metrics.path_normalization(side, "normalized");
            Ok(())
        }
        Err(e) => {
            tracing::debug!(path = uri.path(), error = %e, "request path refused");
            metrics.path_normalization(side, "rejected");
            Err(e)
        }
    }
}

/// Envoy's answer to a path it cannot normalize: 400 with an empty body
/// (response code details `path_normalization_failed`).
pub fn rejected() -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp
}

/// Response code details of [`rejected`], as Envoy names them.
pub const REJECTED_DETAILS: &str = "path_normalization_failed";

/// RFC 3986 unreserved characters: decoded when they arrive percent-encoded.
const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Raw bytes Envoy's canonicalizer percent-encodes (NUL is refused instead).
const fn is_encoded_raw(b: u8) -> bool {
    matches!(
        b,
        0x01..=0x20
            | b'"'
            | b'#'
            | b'<'
            | b'>'
            | b'?'
            | b'^'
            | b'`'
            | b'{'
            | b'|'
            | b'}'
            | 0x7F..=0xFF
    )
}

const fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The escape `%XY` starting at `at`: its value and its three bytes as sent.
fn escape_at(p: &[u8], at: usize) -> Option<(u8, &[u8])> {
    let sent = p.get(at..at + 3)?;
    match *sent {
        [b'%', hi, lo] => Some(((hex_value(hi)? << 4) | hex_value(lo)?, sent)),
        _ => None,
    }
}

/// How many bytes spell a dot at `at`: `.` is 1, `%2e`/`%2E` is 3.
fn dot_at(p: &[u8], at: usize) -> Option<usize> {
    match p.get(at)? {
        b'.' => Some(1),
        b'%' => matches!(p.get(at + 1..at + 3)?, [b'2', b'e' | b'E']).then_some(3),
        _ => None,
    }
}

/// What a dot that follows a `/` starts.
enum Dot {
    /// Part of a name (`.well-known`, `..a`).
    Name,
    /// `.` as a whole segment; the input bytes after the dot it takes.
    Current(usize),
    /// `..` as a whole segment; the input bytes after the first dot it takes.
    Parent(usize),
}

/// Classifies the dot that ends just before `after` (a segment ends at the
/// end of the path or at `/` or `\`, which the segment takes with it).
fn after_dot(p: &[u8], after: usize) -> Dot {
    let Some(&next) = p.get(after) else {
        return Dot::Current(0);
    };
    if is_slash(next) {
        return Dot::Current(1);
    }
    if let Some(second) = dot_at(p, after) {
        return match p.get(after + second) {
            None => Dot::Parent(second),
            Some(&b) if is_slash(b) => Dot::Parent(second + 1),
            Some(_) => Dot::Name,
        };
    }
    Dot::Name
}

/// Whether `p` comes out of normalization under `mode` unchanged: one scan
/// that mirrors every rule of [`rewrite`], so it is exact.
fn is_normal(p: &[u8], mode: PathNormalization) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        match b {
            b'/' => {
                if mode.merges_slashes() && p.get(i + 1) == Some(&b'/') {
                    return false;
                }
                if p.get(i + 1) == Some(&b'.') && !matches!(after_dot(p, i + 2), Dot::Name) {
                    return false;
                }
            }
            b'%' => {
                if let Some((value, _)) = escape_at(p, i) {
                    let decoded = value == 0
                        || is_unreserved(value)
                        || (mode.decodes_slashes() && (value == b'/' || value == b'\\'));
                    if decoded {
                        return false;
                    }
                    i += 3;
                    continue;
                }
            }
            0 | b'\\' => return false,
            b if is_encoded_raw(b) => return false,
            _ => {}
        }
        i += 1;
    }
    true
}

/// Envoy's first step under `DECODE_AND_MERGE_SLASHES`: `%2F` → `/` and
/// `%5C` → `\` (any case), left to right, before any other rule.
fn decode_slashes(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        match escape_at(p, i) {
            Some((v @ (b'/' | b'\\'), _)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The RFC 3986 canonical form of `p` (step 2 of the module docs).
fn canonical(p: &[u8]) -> Result<Vec<u8>, InvalidPath> {
    let mut out = Vec::with_capacity(p.len() + 8);
    if !p.first().is_some_and(|&b| is_slash(b)) {
        out.push(b'/');
    }
    // Where in `out` a `%` that began no valid escape was written.
    let mut loose_percent: Option<usize> = None;
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        if let Some(dot) = dot_at(p, i) {
            // A dot is special only as the start of a segment.
            let taken = match out.last() {
                Some(b'/') => match after_dot(p, i + dot) {
                    Dot::Name => {
                        out.push(b'.');
                        dot
                    }
                    Dot::Current(n) => dot + n,
                    Dot::Parent(n) => {
                        drop_last_segment(&mut out);
                        if loose_percent.is_some_and(|at| at >= out.len()) {
                            loose_percent = None;
                        }
                        dot + n
                    }
                },
                _ => {
                    out.push(b'.');
                    dot
                }
            };
            i += taken;
            continue;
        }
        match b {
            b'\\' => out.push(b'/'),
            b'%' => match escape_at(p, i) {
                Some((0, _)) => return Err(InvalidPath::Nul),
                Some((value, _)) if is_unreserved(value) => {
                    out.push(value);
                    keep_percent_literal(&mut out, &mut loose_percent, p.get(i + 3).copied());
                    i += 3;
                    continue;
                }
                Some((_, sent)) => {
                    out.extend_from_slice(sent);
                    i += 3;
                    continue;
                }
                None => {
                    loose_percent = Some(out.len());
                    out.push(b'%');
                }
            },
            0 => return Err(InvalidPath::Nul),
            b if is_encoded_raw(b) => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push(b'%');
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0F)]);
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// Removes the last segment of `out`, which ends with `/`, keeping the `/`
/// before it; at the root there is nothing above to climb to.
fn drop_last_segment(out: &mut Vec<u8>) {
    let before_slash = out.len().saturating_sub(1);
    let keep = out
        .get(..before_slash)
        .and_then(|o| o.iter().rposition(|&b| b == b'/'))
        .map_or(1, |slash| slash + 1);
    out.truncate(keep);
}

/// After a decoded byte was written: if a `%` that began no escape in the
/// input now begins one in `out` (with the decoded byte, or with the decoded
/// byte and the `next` input byte), it is written `%25` so that nothing
/// downstream decodes a second time what this decoded once.
fn keep_percent_literal(out: &mut Vec<u8>, loose_percent: &mut Option<usize>, next: Option<u8>) {
    let Some(at) = *loose_percent else {
        return;
    };
    let hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
    let forms_escape = if at + 2 == out.len() {
        hex(out.get(at + 1)) && hex(next.as_ref())
    } else if at + 3 == out.len() {
        hex(out.get(at + 1)) && hex(out.get(at + 2))
    } else {
        false
    };
    if forms_escape {
        out.insert(at + 1, b'5');
        out.insert(at + 1, b'2');
        *loose_percent = None;
    }
}
