use super::*;

fn collect(f: impl FnOnce(&mut FieldErrors)) -> Vec<String> {
    let mut errors = FieldErrors::new();
    f(&mut errors);
    errors.into_vec().iter().map(ToString::to_string).collect()
}

#[test]
fn dns1123_label_rules_hold() {
    for ok in ["a", "v1", "my-svc", "A1", &"x".repeat(63)] {
        assert!(is_dns1123_label(ok), "{ok}");
    }
    for bad in ["", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
        assert!(!is_dns1123_label(bad), "{bad}");
    }
}

#[test]
fn wildcard_domain_allows_only_a_leading_wildcard() {
    for ok in [
        "*",
        "*.example.com",
        "*example.com",
        "*-foo.example.com",
        "reviews",
        "reviews.default.svc.cluster.local",
        "a.b.",
    ] {
        assert_eq!(wildcard_domain(ok), Ok(()), "{ok}");
    }
    assert_eq!(
        wildcard_domain(""),
        Err("empty domain name not allowed".into())
    );
    assert_eq!(
        wildcard_domain("a.*.com"),
        Err("domain name `a.*.com` invalid (label `*` invalid)".into())
    );
    assert_eq!(
        wildcard_domain("**.com"),
        Err("domain name `**.com` invalid (label `**` invalid)".into())
    );
    for bad in [
        "*-.example.com",
        "*--foo.example.com",
        "*-foo-.example.com",
        "-foo.example.com",
    ] {
        assert!(wildcard_domain(bad).is_err(), "{bad}");
    }
    assert!(wildcard_domain(&format!("{}.com", "a".repeat(260))).is_err());
}

#[test]
fn fqdn_refuses_wildcards() {
    assert_eq!(fqdn("api.example.com"), Ok(()));
    assert!(fqdn("*.example.com").is_err());
}

#[test]
fn port_range_is_1_to_65535() {
    assert_eq!(port(1), Ok(()));
    assert_eq!(port(65535), Ok(()));
    assert_eq!(
        port(0),
        Err("port number 0 must be in the range 1..65535".into())
    );
    assert!(port(65536).is_err());
}

#[test]
fn ip_or_cidr_checks_address_and_prefix() {
    for ok in ["10.0.0.1", "10.0.0.0/8", "::1", "fd00::/64"] {
        assert_eq!(ip_or_cidr(ok), Ok(()), "{ok}");
    }
    for bad in [
        "10.0.0",
        "10.0.0.0/33",
        "fd00::/129",
        "host",
        "10.0.0.0/x",
        "10.0.0.0/+8",
        "10.0.0.0/",
    ] {
        assert!(ip_or_cidr(bad).is_err(), "{bad}");
    }
}

#[test]
fn header_names_must_be_tokens() {
    assert_eq!(header_name("x-request-id"), Ok(()));
    assert_eq!(header_name(""), Err("header name cannot be empty".into()));
    assert_eq!(
        header_name("a b"),
        Err("`a b` is not a valid header name".into())
    );
    assert_eq!(
        header_name("a:b"),
        Err("`a:b` is not a valid header name".into())
    );
}

#[test]
fn editable_header_allows_authority_only_where_asked() {
    assert_eq!(editable_header("host", true), Ok(()));
    assert_eq!(editable_header(":authority", true), Ok(()));
    assert!(editable_header("host", false).is_err());
    assert!(editable_header(":path", true).is_err());
    assert_eq!(editable_header("x-a", false), Ok(()));
}

#[test]
fn header_values_refuse_line_breaks() {
    assert_eq!(header_value("a b"), Ok(()));
    assert_eq!(
        header_value("a\r\nInjected: 1"),
        Err("header value must not contain CR, LF or NUL".into())
    );
}

#[test]
fn regex_must_compile_and_be_bounded() {
    assert_eq!(regex("^/api/v[0-9]+$"), Ok(()));
    assert_eq!(
        regex(""),
        Err("regex string match should not be empty".into())
    );
    assert!(regex("a(").unwrap_err().starts_with("invalid regex"));
    assert_eq!(
        regex(&"a".repeat(1025)),
        Err("regex is too large, max length allowed is 1024".into())
    );
}

#[test]
fn host_subset_of_follows_wildcards() {
    assert!(host_subset_of("a.example.com", "*.example.com"));
    assert!(host_subset_of("*.a.example.com", "*.example.com"));
    assert!(host_subset_of("x", "*"));
    assert!(!host_subset_of("*.example.com", "a.example.com"));
    assert!(!host_subset_of("a.other.com", "*.example.com"));
}

#[test]
fn export_to_refuses_duplicates_and_bad_names() {
    let lines = collect(|e| {
        check_export_to(
            e,
            "spec.exportTo",
            &[".".into(), ".".into(), "Bad_NS".into()],
        )
    });
    assert_eq!(
        lines,
        [
            "spec.exportTo[1]: duplicate entry `.`",
            "spec.exportTo[2]: invalid namespace `Bad_NS`",
        ]
    );
}

#[test]
fn gateways_accept_mesh_namespaced_and_fqdn() {
    let ok = collect(|e| {
        check_gateways(
            e,
            "g",
            &[
                "mesh".into(),
                "ns/gw".into(),
                "gw.ns.svc.cluster.local".into(),
            ],
        )
    });
    assert!(ok.is_empty(), "{ok:?}");
    let bad = collect(|e| check_gateways(e, "g", &["/gw".into()]));
    assert_eq!(
        bad,
        ["g[0]: config namespace and gateway name cannot be empty"]
    );
}

#[test]
fn labels_keys_and_values_are_checked() {
    let labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/name".to_string(), "shop".to_string()),
        ("bad key".to_string(), "v".to_string()),
        ("ok".to_string(), "-bad".to_string()),
        ("empty".to_string(), String::new()),
    ]
    .into_iter()
    .collect();
    let lines = collect(|e| check_labels(e, "l", &labels));
    assert_eq!(
        lines,
        [
            "l.bad key: invalid label key `bad key`",
            "l.ok: invalid label value `-bad`"
        ]
    );
}

#[test]
fn enum_values_name_the_allowed_set() {
    assert_eq!(
        one_of("X", &["A", "B"]),
        Err("unknown value `X` (expected one of A, B)".into())
    );
    assert_eq!(one_of("A", &["A", "B"]), Ok(()));
}
