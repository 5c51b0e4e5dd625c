use std::net::IpAddr;

use super::{IpBlock, PathMatch, StrMatch};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn str_match_istio_forms_match_as_documented() {
    // (pattern, value, expected) from the istio/api Rule doc's examples.
    let cases = [
        ("abc", "abc", true),
        ("abc", "abcd", false),
        ("abc*", "abc", true),
        ("abc*", "abcd", true),
        ("abc*", "xabc", false),
        ("*abc", "abc", true),
        ("*abc", "xabc", true),
        ("*abc", "abcd", false),
        ("*", "x", true),
        ("*", "", false),
    ];
    for (pattern, value, want) in cases {
        let m = StrMatch::parse(pattern);
        assert_eq!(m.matches(value.as_bytes()), want, "{pattern} vs {value}");
    }
}

#[test]
fn str_match_ignore_case_lowered_pattern_matches_any_case() {
    let cases = [
        ("Orders.Default", "orders.DEFAULT", true),
        ("*.Example.com", "API.EXAMPLE.COM", true),
        ("api.*", "API.example", true),
        ("api.*", "ap", false),
        ("*.example.com", "com", false),
        ("*", "", false),
    ];
    for (pattern, value, want) in cases {
        let m = StrMatch::parse_lowercase(pattern);
        assert_eq!(
            m.matches_ignore_case(value.as_bytes()),
            want,
            "{pattern} vs {value}"
        );
    }
}

#[test]
fn ip_block_v4_and_v6_contain_their_addresses() {
    let cases = [
        ("10.0.0.0/8", "10.200.1.1", true),
        ("10.0.0.0/8", "11.0.0.1", false),
        ("10.1.2.3", "10.1.2.3", true),
        ("10.1.2.3", "10.1.2.4", false),
        ("10.1.2.3/8", "10.9.9.9", true),
        ("0.0.0.0/0", "192.168.1.1", true),
        ("0.0.0.0/0", "::1", false),
        ("2001:db8::/32", "2001:db8:ffff::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("::1", "::1", true),
        ("::/0", "fe80::1", true),
        ("10.0.0.0/8", "::ffff:10.1.1.1", true),
        ("2001:db8::/32", "10.1.1.1", false),
    ];
    for (block, addr, want) in cases {
        let b = IpBlock::parse(block).unwrap();
        assert_eq!(b.contains(ip(addr)), want, "{block} contains {addr}");
    }
}

#[test]
fn ip_block_malformed_is_refused_with_reason() {
    for bad in [
        "",
        "10.0.0",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/+8",
        "host/8",
    ] {
        let err = IpBlock::parse(bad).unwrap_err();
        assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
    }
}

#[test]
fn path_plain_values_use_string_matching() {
    let m = PathMatch::parse("/orders/*").unwrap();
    assert!(m.matches(b"/orders/1"));
    assert!(m.matches(b"/orders/"));
    assert!(!m.matches(b"/orders"));
    assert!(PathMatch::parse("*.js").unwrap().matches(b"/a/b.js"));
}

#[test]
fn path_template_single_segment_matches_one_segment_only() {
    let m = PathMatch::parse("/foo/{*}/bar").unwrap();
    assert!(m.matches(b"/foo/x/bar"));
    assert!(!m.matches(b"/foo/x/y/bar"));
    assert!(!m.matches(b"/foo//bar"));
    let m = PathMatch::parse("/foo/{*}").unwrap();
    assert!(m.matches(b"/foo/abc"));
    assert!(!m.matches(b"/foo/abc/"));
    let m = PathMatch::parse("/v{*}.json").unwrap();
    assert!(m.matches(b"/v1.json"));
    assert!(!m.matches(b"/v.json"));
    assert!(!m.matches(b"/v1/2.json"));
    // An 8 KiB segment costs one pass, however the template is written.
    let long = format!("/{}/x", "a".repeat(8192));
    let m = PathMatch::parse("/{*}/y").unwrap();
    assert!(!m.matches(long.as_bytes()));
}

#[test]
fn path_template_rest_matches_any_depth() {
    let m = PathMatch::parse("/foo/{**}").unwrap();
    assert!(m.matches(b"/foo/"));
    assert!(m.matches(b"/foo/a/b/c"));
    assert!(!m.matches(b"/bar/a"));
    let m = PathMatch::parse("/{*}/assets/{**}.js").unwrap();
    assert!(m.matches(b"/app/assets/x/y.js"));
    assert!(!m.matches(b"/app/assets/x/y.css"));
}

#[test]
fn path_template_rest_not_last_is_refused() {
    for bad in ["/{**}/foo", "/{**}/{*}"] {
        let err = PathMatch::parse(bad).unwrap_err();
        assert!(err.contains("last operator"), "{bad}: {err}");
    }
    for bad in ["/{**}{**}", "/{*}{*}", "/{*}-{**}"] {
        let err = PathMatch::parse(bad).unwrap_err();
        assert!(
            err.contains("one operator per path segment"),
            "{bad}: {err}"
        );
    }
}
