use http::HeaderMap;

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn trace() -> u128 {
    u128::from_str_radix(TRACE, 16).unwrap()
}

fn span() -> u64 {
    u64::from_str_radix(SPAN, 16).unwrap()
}

#[test]
fn traceparent_sampled_is_parsed_with_its_decision() {
    let h = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-01"))]);
    let got = extract(&h);
    assert_eq!(got.parent, Some((trace(), span())));
    assert_eq!(got.sampling, Sampling::Sampled);
    assert!(got.w3c);
}

#[test]
fn traceparent_unsampled_flag_is_kept_as_not_sampled() {
    let h = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]);
    assert_eq!(extract(&h).sampling, Sampling::NotSampled);
}

#[test]
fn traceparent_malformed_values_are_ignored() {
    let zero_trace = format!("00-{}-{SPAN}-01", "0".repeat(32));
    let zero_span = format!("00-{TRACE}-{}-01", "0".repeat(16));
    let upper = format!("00-{}-{SPAN}-01", TRACE.to_uppercase());
    let ff = format!("ff-{TRACE}-{SPAN}-01");
    let long_v0 = format!("00-{TRACE}-{SPAN}-01-extra");
    let bad = [
        "",
        "garbage",
        "00-xyz",
        zero_trace.as_str(),
        zero_span.as_str(),
        upper.as_str(),
        ff.as_str(),
        long_v0.as_str(),
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ];
    for v in bad {
        assert_eq!(parse_traceparent(v.as_bytes()), None, "{v:?}");
        let got = extract(&headers(&[("traceparent", v)]));
        assert_eq!(got.parent, None, "{v:?}");
        assert_eq!(got.sampling, Sampling::Undecided, "{v:?}");
    }
}

#[test]
fn traceparent_future_version_with_more_fields_is_accepted() {
    let v = format!("01-{TRACE}-{SPAN}-01-whatever");
    assert_eq!(
        parse_traceparent(v.as_bytes()),
        Some((trace(), span(), true))
    );
}

#[test]
fn b3_multi_headers_are_parsed() {
    let h = headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-parentspanid", "0000000000000001"),
        ("x-b3-sampled", "1"),
    ]);
    let got = extract(&h);
    assert_eq!(got.parent, Some((trace(), span())));
    assert_eq!(got.sampling, Sampling::Sampled);
    assert!(!got.w3c && !got.b3_single);
}

#[test]
fn b3_multi_64bit_trace_id_is_widened() {
    let h = headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", SPAN),
        ("x-b3-sampled", "0"),
    ]);
    let got = extract(&h);
    assert_eq!(got.parent, Some((0xa3ce929d0e0e4736, span())));
    assert_eq!(got.sampling, Sampling::NotSampled);
}

#[test]
fn b3_flags_debug_means_sampled() {
    let h = headers(&[("x-b3-flags", "1"), ("x-b3-sampled", "0")]);
    let got = extract(&h);
    assert_eq!(got.sampling, Sampling::Debug);
    assert_eq!(got.sampling.decided(), Some(true));
    assert_eq!(got.parent, None);
}

#[test]
fn b3_sampled_without_ids_keeps_only_the_decision() {
    let got = extract(&headers(&[("x-b3-sampled", "true")]));
    assert_eq!(got.parent, None);
    assert_eq!(got.sampling, Sampling::Sampled);
}

#[test]
fn b3_single_header_forms_are_parsed() {
    let full = format!("{TRACE}-{SPAN}-1-0000000000000001");
    assert_eq!(
        parse_b3_single(full.as_bytes()),
        Some((Some((trace(), span())), Sampling::Sampled))
    );
    let no_sampling = format!("{TRACE}-{SPAN}");
    assert_eq!(
        parse_b3_single(no_sampling.as_bytes()),
        Some((Some((trace(), span())), Sampling::Undecided))
    );
    assert_eq!(parse_b3_single(b"0"), Some((None, Sampling::NotSampled)));
    assert_eq!(parse_b3_single(b"d"), Some((None, Sampling::Debug)));
    let got = extract(&headers(&[("b3", &format!("{TRACE}-{SPAN}-d"))]));
    assert_eq!(got.sampling, Sampling::Debug);
    assert!(got.b3_single);
}

#[test]
fn b3_single_malformed_values_are_ignored() {
    let bad_sampling = format!("{TRACE}-{SPAN}-x");
    let short_span = format!("{TRACE}-00f067");
    let too_many = format!("{TRACE}-{SPAN}-1-{SPAN}-{SPAN}");
    let zero = format!("{}-{SPAN}-1", "0".repeat(32));
    for v in [
        "",
        "2",
        "-",
        bad_sampling.as_str(),
        short_span.as_str(),
        too_many.as_str(),
        zero.as_str(),
    ] {
        assert_eq!(parse_b3_single(v.as_bytes()), None, "{v:?}");
    }
}

#[test]
fn b3_malformed_ids_start_a_new_trace() {
    let h = headers(&[
        ("x-b3-traceid", "not-hex-at-all!!"),
        ("x-b3-spanid", "123"),
        ("x-b3-sampled", "maybe"),
    ]);
    let got = extract(&h);
    assert_eq!(got.parent, None);
    assert_eq!(got.sampling, Sampling::Undecided);
}

#[test]
fn traceparent_wins_over_b3() {
    let h = headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-00")),
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", "0000000000000002"),
        ("x-b3-sampled", "1"),
    ]);
    let got = extract(&h);
    assert_eq!(got.parent, Some((trace(), span())));
    assert_eq!(got.sampling, Sampling::NotSampled);
}

#[test]
fn child_of_keeps_trace_and_decision_with_a_new_span() {
    let incoming = Incoming {
        parent: Some((trace(), span())),
        sampling: Sampling::Sampled,
        w3c: true,
        b3_single: false,
    };
    let ctx = TraceContext::child_of(&incoming, || panic!("decision was given"));
    assert_eq!(ctx.trace_id, trace());
    assert_eq!(ctx.parent_span_id, Some(span()));
    assert_ne!(ctx.span_id, span());
    assert!(ctx.sampled);
}

#[test]
fn child_of_nothing_starts_a_trace_and_asks_the_sampler() {
    let a = TraceContext::child_of(&Incoming::default(), || true);
    let b = TraceContext::child_of(&Incoming::default(), || false);
    assert_ne!(a.trace_id, b.trace_id);
    assert_ne!(a.trace_id, 0);
    assert_eq!(a.parent_span_id, None);
    assert!(a.sampled && !b.sampled);
    // 128-bit: the high half is used too (a 64-bit id would leave it zero).
    let highs = (0..8).filter(|_| new_trace_id() >> 64 != 0).count();
    assert!(highs > 0);
}

#[test]
fn write_sets_w3c_and_b3_headers_of_the_context() {
    let mut h = headers(&[
        ("tracestate", "vendor=1"),
        ("x-b3-flags", "1"),
        ("x-b3-parentspanid", "0000000000000009"),
    ]);
    let ctx = TraceContext {
        trace_id: trace(),
        span_id: 0x1122334455667788,
        parent_span_id: Some(span()),
        sampled: true,
        debug: false,
    };
    write(&mut h, &ctx, true, false, true);
    let get = |k: &str| h.get(k).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        get("traceparent").as_deref(),
        Some(format!("00-{TRACE}-1122334455667788-01").as_str())
    );
    assert_eq!(get("tracestate").as_deref(), Some("vendor=1"));
    assert_eq!(get("x-b3-traceid").as_deref(), Some(TRACE));
    assert_eq!(get("x-b3-spanid").as_deref(), Some("1122334455667788"));
    assert_eq!(get("x-b3-parentspanid").as_deref(), Some(SPAN));
    assert_eq!(get("x-b3-sampled").as_deref(), Some("1"));
    assert_eq!(get("x-b3-flags"), None);
    assert_eq!(get("b3"), None);
    // What was written reads back as the same context.
    let back = extract(&h);
    assert_eq!(back.parent, Some((trace(), 0x1122334455667788)));
}

#[test]
fn write_drops_foreign_tracestate_and_mirrors_b3_single() {
    let mut h = headers(&[("tracestate", "vendor=1"), ("b3", "1")]);
    let ctx = TraceContext {
        trace_id: 7,
        span_id: 8,
        parent_span_id: None,
        sampled: false,
        debug: true,
    };
    write(&mut h, &ctx, false, true, true);
    assert!(h.get("tracestate").is_none());
    assert!(h.get("x-b3-parentspanid").is_none());
    assert_eq!(h.get("x-b3-flags").unwrap(), "1");
    assert_eq!(
        h.get("b3").unwrap().to_str().unwrap(),
        format!("{:032x}-{:016x}-d", 7, 8)
    );
    let (parent, sampling) = parse_b3_single(h.get("b3").unwrap().as_bytes()).unwrap();
    assert_eq!(parent, Some((7, 8)));
    assert_eq!(sampling, Sampling::Debug);
}

#[test]
fn every_trace_header_is_known_and_an_untraced_request_gets_the_same_set() {
    for name in [
        TRACEPARENT,
        TRACESTATE,
        B3,
        B3_TRACE_ID,
        B3_SPAN_ID,
        B3_PARENT_SPAN_ID,
        B3_SAMPLED,
        B3_FLAGS,
    ] {
        assert!(is_trace_header(&name), "{name}");
    }
    assert!(!is_trace_header(&HeaderName::from_static("x-request-id")));
    for (parent, debug, single) in [(None, false, false), (Some(3), true, true)] {
        let ctx = TraceContext {
            trace_id: trace(),
            span_id: 5,
            parent_span_id: parent,
            sampled: true,
            debug,
        };
        let (mut fast, mut full) = (headers(&[("accept", "*/*")]), headers(&[("accept", "*/*")]));
        write(&mut fast, &ctx, false, single, false);
        write(&mut full, &ctx, false, single, true);
        assert_eq!(fast, full);
        assert!(fast.keys().all(|k| k == "accept" || is_trace_header(k)));
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 1u64;
    for len in 0..80 {
        for _ in 0..50 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    b"0123456789abcdefABCDEF-xd "[(seed >> 33) as usize % 26]
                })
                .collect();
            let _ = parse_traceparent(&v);
            let _ = parse_b3_single(&v);
        }
    }
}

#[test]
fn hex_parsing_matches_char_digits_for_every_byte() {
    for b in 0..=255u8 {
        let want = (b as char).to_digit(16).map(u128::from);
        assert_eq!(super::parse_any_hex(&[b]), want, "byte {b:#x}");
        let lower = want.filter(|_| !b.is_ascii_uppercase());
        assert_eq!(super::parse_lower_hex(&[b]), lower, "byte {b:#x}");
    }
    let max = [b'f'; 32];
    assert_eq!(super::parse_lower_hex(&max), Some(u128::MAX));
    assert_eq!(super::parse_lower_hex(&[b'0'; 33]), None);
    assert_eq!(super::parse_any_hex(b""), None);
    assert_eq!(super::parse_any_hex(b"0aF9"), Some(0x0af9));
}
