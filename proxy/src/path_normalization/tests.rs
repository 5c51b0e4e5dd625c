use super::*;
use PathNormalization::{Base, DecodeAndMergeSlashes, MergeSlashes, None as Off};

const MODES: [PathNormalization; 4] = [Off, Base, MergeSlashes, DecodeAndMergeSlashes];

/// What `path` becomes under `mode` (itself when unchanged), or the refusal.
fn norm(path: &str, mode: PathNormalization) -> Result<String, InvalidPath> {
    normalize(path, mode).map(|n| n.unwrap_or_else(|| path.to_owned()))
}

/// Checks a table of `(input, [NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES])`.
fn check(table: &[(&str, [&str; 4])]) {
    for (input, want) in table {
        for (mode, want) in MODES.iter().zip(want) {
            assert_eq!(
                norm(input, *mode).as_deref(),
                Ok(*want),
                "{mode:?} of {input:?}"
            );
        }
    }
}

#[test]
fn normalize_dot_segments_resolved_never_above_root() {
    check(&[
        ("/a/b/../c", ["/a/b/../c", "/a/c", "/a/c", "/a/c"]),
        ("/a/b/./c", ["/a/b/./c", "/a/b/c", "/a/b/c", "/a/b/c"]),
        (
            "/public/../admin/x",
            ["/public/../admin/x", "/admin/x", "/admin/x", "/admin/x"],
        ),
        (
            "/a/b/../../../../c",
            ["/a/b/../../../../c", "/c", "/c", "/c"],
        ),
        ("/..", ["/..", "/", "/", "/"]),
        ("/../a/b", ["/../a/b", "/a/b", "/a/b", "/a/b"]),
        ("/./a/b", ["/./a/b", "/a/b", "/a/b", "/a/b"]),
        ("/a/.", ["/a/.", "/a/", "/a/", "/a/"]),
        ("/a/..", ["/a/..", "/", "/", "/"]),
        ("/a/b/..", ["/a/b/..", "/a/", "/a/", "/a/"]),
        ("/a/b/.", ["/a/b/.", "/a/b/", "/a/b/", "/a/b/"]),
        // Dots inside names are names.
        (
            "/.well-known/x",
            [
                "/.well-known/x",
                "/.well-known/x",
                "/.well-known/x",
                "/.well-known/x",
            ],
        ),
        (
            "/a/..b/c.",
            ["/a/..b/c.", "/a/..b/c.", "/a/..b/c.", "/a/..b/c."],
        ),
        ("/a/.../b", ["/a/.../b", "/a/.../b", "/a/.../b", "/a/.../b"]),
        // Envoy: a path without a leading slash gets one.
        ("a/b/../c", ["a/b/../c", "/a/c", "/a/c", "/a/c"]),
        ("..", ["..", "/", "/", "/"]),
    ]);
}

#[test]
fn normalize_encoded_dots_any_case_are_dots() {
    check(&[
        ("/a/b/%2e%2e/c", ["/a/b/%2e%2e/c", "/a/c", "/a/c", "/a/c"]),
        ("/a/b/%2E%2E/c", ["/a/b/%2E%2E/c", "/a/c", "/a/c", "/a/c"]),
        ("/a/b/%2E./c", ["/a/b/%2E./c", "/a/c", "/a/c", "/a/c"]),
        ("/a/b/.%2e/c", ["/a/b/.%2e/c", "/a/c", "/a/c", "/a/c"]),
        ("/a/b/%2e/c", ["/a/b/%2e/c", "/a/b/c", "/a/b/c", "/a/b/c"]),
        (
            "/public/%2e%2e/admin",
            ["/public/%2e%2e/admin", "/admin", "/admin", "/admin"],
        ),
        (
            "/file%2Ejson",
            ["/file%2Ejson", "/file.json", "/file.json", "/file.json"],
        ),
        // `%2f` is a slash only once decoded.
        ("/a/..%2fb", ["/a/..%2fb", "/a/..%2fb", "/a/..%2fb", "/b"]),
        (
            "/a/%2e%2e%2fb",
            ["/a/%2e%2e%2fb", "/a/..%2fb", "/a/..%2fb", "/b"],
        ),
    ]);
}

#[test]
fn normalize_unreserved_decoded_others_kept_as_sent() {
    check(&[
        ("/%61dmin", ["/%61dmin", "/admin", "/admin", "/admin"]),
        (
            "/%41%5a%30%39%2d%5f%7e",
            ["/%41%5a%30%39%2d%5f%7e", "/AZ09-_~", "/AZ09-_~", "/AZ09-_~"],
        ),
        // Mixed-case hex decodes alike.
        ("/%6D%6f%6E", ["/%6D%6f%6E", "/mon", "/mon", "/mon"]),
        // Reserved and non-ASCII escapes stay, hex case untouched (Envoy does not uppercase).
        (
            "/a%2fb%2Fc",
            ["/a%2fb%2Fc", "/a%2fb%2Fc", "/a%2fb%2Fc", "/a/b/c"],
        ),
        ("/%c0%af", ["/%c0%af", "/%c0%af", "/%c0%af", "/%c0%af"]),
        ("/%5c%25", ["/%5c%25", "/%5c%25", "/%5c%25", "/%25"]),
        (
            "/a%3fb%23c%20d",
            [
                "/a%3fb%23c%20d",
                "/a%3fb%23c%20d",
                "/a%3fb%23c%20d",
                "/a%3fb%23c%20d",
            ],
        ),
        // No double decoding: `%25` stays, so `%2561` is not `a`.
        (
            "/%2561dmin",
            ["/%2561dmin", "/%2561dmin", "/%2561dmin", "/%2561dmin"],
        ),
        ("/%252f", ["/%252f", "/%252f", "/%252f", "/%252f"]),
        // A `%` starting no escape is kept.
        ("/100%", ["/100%", "/100%", "/100%", "/100%"]),
        ("/%zz/%4", ["/%zz/%4", "/%zz/%4", "/%zz/%4", "/%zz/%4"]),
    ]);
}

#[test]
fn normalize_percent_decoding_never_forms_a_new_escape() {
    check(&[
        // `%` + decoded `4` + decoded `1` would read `%41`.
        ("/%%34%31", ["/%%34%31", "/%2541", "/%2541", "/%2541"]),
        // `%` + decoded `6` + raw `1`.
        (
            "/%%361dmin",
            ["/%%361dmin", "/%2561dmin", "/%2561dmin", "/%2561dmin"],
        ),
        // `%` + raw `a` + decoded `b`.
        ("/%a%62", ["/%a%62", "/%25ab", "/%25ab", "/%25ab"]),
        // Would read `%00`.
        ("/%%30%30", ["/%%30%30", "/%2500", "/%2500", "/%2500"]),
        // Nothing hex follows: kept.
        ("/%%61", ["/%%61", "/%a", "/%a", "/%a"]),
        ("/%%61/", ["/%%61/", "/%a/", "/%a/", "/%a/"]),
    ]);
}

#[test]
fn normalize_backslash_is_a_slash() {
    check(&[
        ("/a\\b", ["/a\\b", "/a/b", "/a/b", "/a/b"]),
        ("\\da", ["\\da", "/da", "/da", "/da"]),
        ("/a/..\\c", ["/a/..\\c", "/c", "/c", "/c"]),
        ("/a\\..\\..\\c", ["/a\\..\\..\\c", "/c", "/c", "/c"]),
        // Only DECODE_AND_MERGE_SLASHES decodes `%5C`, which then is a slash.
        ("/a%5cb", ["/a%5cb", "/a%5cb", "/a%5cb", "/a/b"]),
        (
            "/a/..%5Cadmin",
            ["/a/..%5Cadmin", "/a/..%5Cadmin", "/a/..%5Cadmin", "/admin"],
        ),
    ]);
}

#[test]
fn normalize_merging_slashes_only_in_merge_modes() {
    check(&[
        ("/a//b", ["/a//b", "/a//b", "/a/b", "/a/b"]),
        ("//a/b", ["//a/b", "//a/b", "/a/b", "/a/b"]),
        ("/a/b//", ["/a/b//", "/a/b//", "/a/b/", "/a/b/"]),
        ("/a///b/c", ["/a///b/c", "/a///b/c", "/a/b/c", "/a/b/c"]),
        ("//", ["//", "//", "/", "/"]),
        // Dot segments go first: `..` climbs over the empty segment.
        ("/a//../b", ["/a//../b", "/a/b", "/a/b", "/a/b"]),
        ("/a/.//b", ["/a/.//b", "/a//b", "/a/b", "/a/b"]),
        ("/a%2f%2Fb", ["/a%2f%2Fb", "/a%2f%2Fb", "/a%2f%2Fb", "/a/b"]),
        ("/a\\\\b", ["/a\\\\b", "/a//b", "/a/b", "/a/b"]),
    ]);
}

#[test]
fn normalize_raw_bytes_a_url_may_not_carry_are_encoded() {
    check(&[
        ("/a{b}", ["/a{b}", "/a%7Bb%7D", "/a%7Bb%7D", "/a%7Bb%7D"]),
        (
            "/\"x\"|^",
            [
                "/\"x\"|^",
                "/%22x%22%7C%5E",
                "/%22x%22%7C%5E",
                "/%22x%22%7C%5E",
            ],
        ),
        ("/café", ["/café", "/caf%C3%A9", "/caf%C3%A9", "/caf%C3%A9"]),
        ("/a b", ["/a b", "/a%20b", "/a%20b", "/a%20b"]),
    ]);
}

#[test]
fn normalize_nul_refused_except_with_none() {
    for path in [
        "/a%00b",
        "/%00",
        "/xyz/.%00../abc",
        "/xyz/%00.%00./abc",
        "/xyz/AAAAA%%0000/abc",
        "/a\0b",
    ] {
        assert_eq!(norm(path, Off).as_deref(), Ok(path), "NONE keeps {path:?}");
        for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
            assert_eq!(
                norm(path, mode),
                Err(InvalidPath::Nul),
                "{mode:?} of {path:?}"
            );
        }
    }
    // Other controls are encoded, not refused.
    assert_eq!(norm("/a%01b", Base).as_deref(), Ok("/a%01b"));
    assert_eq!(norm("/a\u{1}b", Base).as_deref(), Ok("/a%01b"));
}

#[test]
fn normalize_normal_paths_asterisk_and_empty_are_left_alone() {
    for path in [
        "/",
        "/a",
        "/x/y/z",
        "/A/B/C",
        "/a/b/",
        "/api/v1/items;v=2",
        "/%c0%af",
        "/a-b_c.d~e!$&'()*+,;=:@[]",
        "*",
        "",
    ] {
        for mode in MODES {
            assert_eq!(normalize(path, mode), Ok(None), "{mode:?} of {path:?}");
        }
    }
    // Normal in BASE, not once slashes merge or decode.
    assert_eq!(normalize("/a%2Fb%5C", Base), Ok(None));
    assert_eq!(normalize("/a//b", Base), Ok(None));
    assert_eq!(normalize("/a%2fb", MergeSlashes), Ok(None));
    assert_eq!(
        normalize("/a%2fb", DecodeAndMergeSlashes),
        Ok(Some("/a/b".to_owned()))
    );
}

#[test]
fn normalize_uri_keeps_query_scheme_and_authority() {
    let mut uri: Uri = "/public/../admin/%61?x=/../y&z=%61".parse().unwrap();
    assert_eq!(normalize_uri(&mut uri, Base), Ok(true));
    assert_eq!(uri.to_string(), "/admin/a?x=/../y&z=%61");

    // Absolute form (HTTP/1 to an explicit proxy, HTTP/2's :scheme and :authority).
    let mut uri: Uri = "http://reviews:9080/a/./b/..//c?q".parse().unwrap();
    assert_eq!(normalize_uri(&mut uri, MergeSlashes), Ok(true));
    assert_eq!(uri.to_string(), "http://reviews:9080/a/c?q");
    assert_eq!(uri.authority().map(|a| a.as_str()), Some("reviews:9080"));

    let mut uri: Uri = "http://reviews:9080".parse().unwrap();
    assert_eq!(normalize_uri(&mut uri, Base), Ok(false));

    // OPTIONS * and CONNECT's authority form.
    let mut uri: Uri = "*".parse().unwrap();
    assert_eq!(normalize_uri(&mut uri, Base), Ok(false));
    let mut uri: Uri = "reviews:9080".parse().unwrap();
    assert_eq!(normalize_uri(&mut uri, Base), Ok(false));

    let mut uri: Uri = "/a%00?b".parse().unwrap();
    assert_eq!(normalize_uri(&mut uri, Base), Err(InvalidPath::Nul));
    let mut uri: Uri = "/public/../admin".parse().unwrap();
    assert_eq!(normalize_uri(&mut uri, Off), Ok(false));
    assert_eq!(uri.path(), "/public/../admin");
}

#[test]
fn at_entry_counts_normalized_and_rejected_per_reporter() {
    let metrics = crate::metrics::Metrics::new();
    let security = &metrics.security;
    let mut uri: Uri = "/ok".parse().unwrap();
    assert_eq!(at_entry(&mut uri, Base, security, Side::Outbound), Ok(()));
    let mut uri: Uri = "/a/../b".parse().unwrap();
    assert_eq!(at_entry(&mut uri, Base, security, Side::Outbound), Ok(()));
    let mut uri: Uri = "/%00".parse().unwrap();
    assert_eq!(
        at_entry(&mut uri, Base, security, Side::Inbound),
        Err(InvalidPath::Nul)
    );
    let text = metrics.encode();
    let line = |labels: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("sluice_path_normalizations_total{{{labels}}}")))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
    };
    assert_eq!(
        line("reporter=\"source\",outcome=\"normalized\"").as_deref(),
        Some("1")
    );
    assert_eq!(
        line("reporter=\"destination\",outcome=\"rejected\"").as_deref(),
        Some("1")
    );
    assert_eq!(line("reporter=\"source\",outcome=\"rejected\""), None);
}

#[test]
fn rejected_is_400_without_body() {
    use http_body::Body as _;
    let resp = rejected();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.body().is_end_stream());
}

#[test]
fn path_normalization_from_istio_names_default_is_base() {
    assert_eq!(PathNormalization::default(), Base);
    for (name, mode) in [
        ("DEFAULT", Base),
        ("NONE", Off),
        ("BASE", Base),
        ("MERGE_SLASHES", MergeSlashes),
        ("DECODE_AND_MERGE_SLASHES", DecodeAndMergeSlashes),
    ] {
        assert_eq!(name.parse::<PathNormalization>().ok(), Some(mode), "{name}");
    }
    assert!("base".parse::<PathNormalization>().is_err());
    assert_eq!(
        serde_json::to_string(&DecodeAndMergeSlashes)
            .ok()
            .as_deref(),
        Some("\"DECODE_AND_MERGE_SLASHES\"")
    );
}

/// Random paths over the bytes that matter: for every mode the result is
/// normal (idempotent), and the fast scan agrees exactly with the rewrite.
#[test]
fn normalize_random_paths_idempotent_and_scan_exact() {
    const PIECES: &[&str] = &[
        "/", "/", ".", ".", "%", "2", "e", "E", "f", "F", "5", "c", "a", "0", "%2e", "%2F", "%5c",
        "%61", "%00", "%25", "\\", "?", "{", "é", "..", "//", "x",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..50_000 {
        let mut path = String::new();
        for _ in 0..rng.usize(0..10) {
            path.push_str(PIECES[rng.usize(..PIECES.len())]);
        }
        for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
            let raw = path.as_bytes();
            let unchanged = rewrite(raw, mode).is_ok_and(|out| out == raw);
            assert_eq!(
                is_normal(raw, mode),
                unchanged,
                "{mode:?}: scan of {path:?}"
            );
            if let Ok(Some(n)) = normalize(&path, mode) {
                assert_eq!(normalize(&n, mode), Ok(None), "{mode:?}: {path:?} → {n:?}");
                assert!(
                    http::uri::PathAndQuery::try_from(n.as_str()).is_ok(),
                    "{n:?}"
                );
            }
        }
    }
}
