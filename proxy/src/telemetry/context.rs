//! Trace context on the wire: W3C `traceparent`/`tracestate` and B3 (multi
//! and single header) read from a request, and the context this proxy's span
//! hands to the next hop written back. Malformed values are ignored (the
//! request starts a new trace); this is untrusted network input.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const B3: HeaderName = HeaderName::from_static("b3");
pub const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// A sampling decision carried by a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sampling {
    /// No decision: this proxy decides.
    #[default]
    Undecided,
    /// Sampled upstream.
    Sampled,
    /// Not sampled upstream.
    NotSampled,
    /// B3 debug (`x-b3-flags: 1` or `b3: d`): sampled, and said so downstream.
    Debug,
}

impl Sampling {
    /// Whether the decision, if any, is to sample.
    pub fn decided(self) -> Option<bool> {
        match self {
            Sampling::Undecided => None,
            Sampling::Sampled | Sampling::Debug => Some(true),
            Sampling::NotSampled => Some(false),
        }
    }
}

/// The trace context a request arrived with, after validation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// The caller's trace and span, when a complete, valid context was sent.
    pub parent: Option<(u128, u64)>,
    /// The sampling decision, which may come without a trace (`b3: 1`).
    pub sampling: Sampling,
    /// The context came from `traceparent`, so `tracestate` belongs to it.
    pub w3c: bool,
    /// The caller used the single `b3` header; it is written back the same way.
    pub b3_single: bool,
}

/// The context of this proxy's span, as handed to the next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: Option<u64>,
    pub sampled: bool,
    pub debug: bool,
}

impl TraceContext {
    /// A child of `incoming` (or the root of a new trace) with a fresh span id;
    /// `sample` decides when the request carried no decision.
    pub fn child_of(incoming: &Incoming, sample: impl FnOnce() -> bool) -> Self {
        let (trace_id, parent_span_id) = match incoming.parent {
            Some((t, s)) => (t, Some(s)),
            None => (new_trace_id(), None),
        };
        TraceContext {
            trace_id,
            span_id: new_span_id(),
            parent_span_id,
            sampled: incoming.sampling.decided().unwrap_or_else(sample),
            debug: incoming.sampling == Sampling::Debug,
        }
    }

    /// The incoming context unchanged (a side that creates no span), or a
    /// new root when there was none.
    pub fn passed_through(incoming: &Incoming, sample: impl FnOnce() -> bool) -> Self {
        match incoming.parent {
            Some((trace_id, span_id)) => TraceContext {
                trace_id,
                span_id,
                parent_span_id: None,
                sampled: incoming.sampling.decided().unwrap_or_else(sample),
                debug: incoming.sampling == Sampling::Debug,
            },
            None => TraceContext::child_of(incoming, sample),
        }
    }
}

/// A random, non-zero 128-bit trace id.
pub fn new_trace_id() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

/// A random, non-zero 64-bit span id.
pub fn new_span_id() -> u64 {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return id;
        }
    }
}

/// Whether `name` is one of the headers [`extract`] reads or [`write`]
/// replaces. A request none of whose names is one needs no look-ups at all.
pub fn is_trace_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "traceparent"
            | "tracestate"
            | "b3"
            | "x-b3-traceid"
            | "x-b3-spanid"
            | "x-b3-parentspanid"
            | "x-b3-sampled"
            | "x-b3-flags"
    )
}

/// Reads the trace context of a request: `traceparent` first, then `b3`,
/// then the `x-b3-*` headers; whatever is malformed counts as absent.
pub fn extract(headers: &HeaderMap) -> Incoming {
    if let Some((trace, span, sampled)) = headers
        .get(TRACEPARENT)
        .and_then(|v| parse_traceparent(v.as_bytes()))
    {
        return Incoming {
            parent: Some((trace, span)),
            sampling: if sampled {
                Sampling::Sampled
            } else {
                Sampling::NotSampled
            },
            w3c: true,
            b3_single: headers.contains_key(B3),
        };
    }
    if let Some(v) = headers.get(B3)
        && let Some((parent, sampling)) = parse_b3_single(v.as_bytes())
    {
        return Incoming {
            parent,
            sampling,
            w3c: false,
            b3_single: true,
        };
    }
    let trace = headers
        .get(B3_TRACE_ID)
        .and_then(|v| parse_b3_trace_id(v.as_bytes()));
    let span = headers
        .get(B3_SPAN_ID)
        .and_then(|v| parse_hex_u64(v.as_bytes()));
    let debug = headers.get(B3_FLAGS).is_some_and(|v| v.as_bytes() == b"1");
    let sampling = if debug {
        Sampling::Debug
    } else {
        match headers.get(B3_SAMPLED).map(HeaderValue::as_bytes) {
            Some(b"1" | b"true") => Sampling::Sampled,
            Some(b"0" | b"false") => Sampling::NotSampled,
            _ => Sampling::Undecided,
        }
    };
    Incoming {
        parent: trace.zip(span),
        sampling,
        w3c: false,
        b3_single: false,
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>` (later versions may append fields):
/// the trace id, parent span id and the sampled flag.
pub fn parse_traceparent(v: &[u8]) -> Option<(u128, u64, bool)> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = parse_lower_hex(&v[0..2])?;
    // ff is forbidden; version 00 has exactly four fields.
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace = parse_lower_hex(&v[3..35])?;
    let span = u64::try_from(parse_lower_hex(&v[36..52])?).ok()?;
    let flags = parse_lower_hex(&v[53..55])?;
    if trace == 0 || span == 0 {
        return None;
    }
    Some((trace, span, flags & 1 == 1))
}

/// `b3: {trace}-{span}[-{sampling}[-{parent}]]`, or a bare sampling decision.
pub fn parse_b3_single(v: &[u8]) -> Option<(Option<(u128, u64)>, Sampling)> {
    let sampling = |s: &[u8]| match s {
        b"1" => Some(Sampling::Sampled),
        b"0" => Some(Sampling::NotSampled),
        b"d" => Some(Sampling::Debug),
        _ => None,
    };
    let mut parts = v.split(|b| *b == b'-');
    let first = parts.next()?;
    let Some(second) = parts.next() else {
        return Some((None, sampling(first)?));
    };
    let trace = parse_b3_trace_id(first)?;
    let span = parse_hex_u64(second)?;
    let decision = match parts.next() {
        Some(s) => sampling(s)?,
        None => Sampling::Undecided,
    };
    if let Some(parent) = parts.next() {
        parse_hex_u64(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some((Some((trace, span)), decision))
}

/// A B3 trace id: 16 or 32 hex digits, not all zero.
fn parse_b3_trace_id(v: &[u8]) -> Option<u128> {
    if v.len() != 16 && v.len() != 32 {
        return None;
    }
    parse_any_hex(v).filter(|t| *t != 0)
}

/// A B3 span id: exactly 16 hex digits, not all zero.
fn parse_hex_u64(v: &[u8]) -> Option<u64> {
    if v.len() != 16 {
        return None;
    }
    parse_any_hex(v)
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s != 0)
}

fn parse_lower_hex(v: &[u8]) -> Option<u128> {
    parse_hex(v, &LOWER_HEX_DIGITS)
}

fn parse_any_hex(v: &[u8]) -> Option<u128> {
    parse_hex(v, &ANY_HEX_DIGITS)
}

/// Not a digit in a [`hex_digits`] table.
const NOT_HEX: u8 = 0xff;

/// Byte → hex digit value ([`NOT_HEX`] for other bytes); `upper` admits `A`–`F`.
const fn hex_digits(upper: bool) -> [u8; 256] {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        if upper {
            t[b'A' as usize + i] = 10 + i as u8;
        }
        i += 1;
    }
    t
}

static LOWER_HEX_DIGITS: [u8; 256] = hex_digits(false);
static ANY_HEX_DIGITS: [u8; 256] = hex_digits(true);

/// Up to 32 hex digits (every request carries two trace ids: a table lookup
/// per digit instead of a `char` conversion).
fn parse_hex(v: &[u8], digits: &[u8; 256]) -> Option<u128> {
    if v.is_empty() || v.len() > 32 {
        return None;
    }
    let mut acc = 0u128;
    for b in v {
        let d = digits[usize::from(*b)];
        if d == NOT_HEX {
            return None;
        }
        acc = (acc << 4) | u128::from(d);
    }
    Some(acc)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_into(out: &mut [u8], value: u128) {
    let n = out.len();
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 4 * (n - 1 - i);
        *slot = HEX[((value >> shift) & 0xf) as usize];
    }
}

/// A header value of hex digits; unique per request, so kept out of HPACK's table.
fn id_value(bytes: Bytes) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_maybe_shared(bytes).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Where each id sits in the one buffer [`write`] fills: `traceparent`
/// first (the trace and span ids are slices of it), then the parent span id,
/// then the single `b3` header.
const TP: std::ops::Range<usize> = 0..55;
const TRACE: std::ops::Range<usize> = 3..35;
const SPAN: std::ops::Range<usize> = 36..52;
const PARENT: std::ops::Range<usize> = 55..71;
const B3_SINGLE: std::ops::Range<usize> = 71..122;

/// Replaces the request's trace headers with `ctx`: `traceparent` (keeping
/// `tracestate` only when `keep_tracestate`), the `x-b3-*` set, and `b3` when
/// the caller used it.
///
/// Every value is a slice of one buffer: one allocation per request, and a
/// copy of the header map (kept for retries) shares it instead of copying.
///
/// `traced` says whether the request had any trace header ([`is_trace_header`]);
/// without one there is nothing stale to remove.
pub fn write(
    headers: &mut HeaderMap,
    ctx: &TraceContext,
    keep_tracestate: bool,
    b3_single: bool,
    traced: bool,
) {
    let mut buf = [b'-'; B3_SINGLE.end];
    buf[TP].copy_from_slice(b"00-00000000000000000000000000000000-0000000000000000-00");
    hex_into(&mut buf[TRACE], ctx.trace_id);
    hex_into(&mut buf[SPAN], u128::from(ctx.span_id));
    if ctx.sampled {
        buf[TP.end - 1] = b'1';
    }
    if let Some(parent) = ctx.parent_span_id {
        hex_into(&mut buf[PARENT], u128::from(parent));
    }
    if b3_single {
        // trace-span-sampling: 32 + 1 + 16 + 1 + 1 bytes.
        let (head, b3) = buf.split_at_mut(B3_SINGLE.start);
        b3[..32].copy_from_slice(&head[TRACE]);
        b3[33..49].copy_from_slice(&head[SPAN]);
        b3[50] = match (ctx.debug, ctx.sampled) {
            (true, _) => b'd',
            (false, true) => b'1',
            (false, false) => b'0',
        };
    }
    let ids = Bytes::from_owner(buf);
    if let Some(v) = id_value(ids.slice(TP)) {
        headers.insert(TRACEPARENT, v);
    }
    if traced && !keep_tracestate {
        headers.remove(TRACESTATE);
    }
    if let Some(v) = id_value(ids.slice(TRACE)) {
        headers.insert(B3_TRACE_ID, v);
    }
    if let Some(v) = id_value(ids.slice(SPAN)) {
        headers.insert(B3_SPAN_ID, v);
    }
    match ctx.parent_span_id {
        Some(_) => {
            if let Some(v) = id_value(ids.slice(PARENT)) {
                headers.insert(B3_PARENT_SPAN_ID, v);
            }
        }
        None if traced => {
            headers.remove(B3_PARENT_SPAN_ID);
        }
        None => {}
    }
    let sampled = if ctx.sampled { "1" } else { "0" };
    headers.insert(B3_SAMPLED, HeaderValue::from_static(sampled));
    if ctx.debug {
        headers.insert(B3_FLAGS, HeaderValue::from_static("1"));
    } else if traced {
        headers.remove(B3_FLAGS);
    }
    if b3_single && let Some(v) = id_value(ids.slice(B3_SINGLE)) {
        headers.insert(B3, v);
    }
}

/// Lower-case hex of a trace id (32 digits).
pub fn trace_id_hex(id: u128) -> String {
    format!("{id:032x}")
}

#[cfg(test)]
mod tests;
