use super::*;
use std::collections::BTreeMap;

#[derive(Default)]
struct Req {
    attrs: BTreeMap<&'static str, Value>,
    headers: BTreeMap<&'static str, &'static str>,
}

impl Attributes for Req {
    fn attribute(&self, name: &str) -> Option<Value> {
        if PEERS.contains(&name) {
            // A peer is there when any of its fields is.
            let prefix = format!("{name}.");
            return self
                .attrs
                .keys()
                .any(|k| k.starts_with(&prefix))
                .then_some(Value::Bool(true));
        }
        self.attrs.get(name).cloned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_string())
    }
}

fn req(code: i64, path: &str) -> Req {
    let mut r = Req::default();
    r.attrs.insert("response.code", Value::Int(code));
    r.attrs.insert("request.url_path", Value::Str(path.into()));
    r.attrs.insert("request.method", Value::Str("GET".into()));
    r.attrs.insert("connection.mtls", Value::Bool(true));
    r
}

fn logs(expr: &str, r: &Req) -> bool {
    parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .matches(r)
}

#[test]
fn cel_istio_doc_filter_response_code_at_least_400() {
    assert!(logs("response.code >= 400", &req(503, "/")));
    assert!(!logs("response.code >= 400", &req(200, "/")));
    assert!(logs("response.code >= 400u", &req(404, "/")));
}

#[test]
fn cel_string_methods_headers_and_logic() {
    let mut r = req(200, "/api/login");
    r.headers.insert("x-user-type", "dev");
    assert!(logs(
        "request.url_path.contains('login') && request.headers['X-User-Type'] == 'dev'",
        &r
    ));
    assert!(logs("request.url_path.startsWith(\"/api\")", &r));
    assert!(!logs("request.url_path.endsWith('/logout')", &r));
    assert!(logs(
        "!(response.code >= 200 && response.code < 300) || 'x-user-type' in request.headers",
        &r
    ));
    assert!(logs(
        "connection.mtls == true && request.method != 'POST'",
        &r
    ));
}

#[test]
fn cel_missing_header_is_an_error_absorbed_only_by_and_false_or_true() {
    let r = req(200, "/");
    assert!(!logs("request.headers['x-missing'] == 'a'", &r));
    assert!(
        !logs("!(request.headers['x-missing'] == 'a')", &r),
        "error, not true"
    );
    assert!(logs(
        "request.headers['x-missing'] == 'a' || response.code == 200",
        &r
    ));
    assert!(!logs(
        "request.headers['x-missing'] == 'a' && response.code == 200",
        &r
    ));
    assert!(!logs(
        "response.code == 500 && request.headers['x-missing'] == 'a'",
        &r
    ));
}

#[test]
fn cel_unsupported_input_is_refused_with_a_reason() {
    for (expr, why) in [
        (
            "response.code >= '400'",
            "compares an integer with a string",
        ),
        ("request.time > 0", "unsupported attribute `request.time`"),
        (
            "request.url_path.matches('a.*')",
            "unsupported function `matches`",
        ),
        ("response.code", "must be a boolean"),
        ("response.code >= ", "unexpected end"),
        ("(response.code == 200", "expected `)`"),
        ("'abc", "unterminated"),
        (
            "response.code == 200 && 5",
            "an integer used where a boolean is needed",
        ),
        ("request.headers[x] == 'a'", "takes a string literal"),
        ("response.code == 99999999999999999999", "out of range"),
        ("response.code @ 2", "unexpected character"),
        ("true < false", "does not apply to booleans"),
    ] {
        let e = parse(expr).expect_err(expr);
        assert!(e.0.contains(why), "{expr}: {e}");
    }
}

#[test]
fn cel_depth_and_length_are_bounded() {
    let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
    assert!(parse(&deep).unwrap_err().0.contains("nested deeper"));
    let nots = format!("{}true", "!".repeat(100));
    assert!(parse(&nots).is_err());
    let long = format!("request.id == '{}'", "a".repeat(MAX_LEN));
    assert!(parse(&long).unwrap_err().0.contains("longer than"));
}

#[test]
fn cel_headers_lists_the_headers_read() {
    let e = parse(
        "request.headers['A'] == 'x' || 'b' in request.headers || request.headers['a'] == 'y'",
    )
    .unwrap();
    assert_eq!(e.headers(), ["a", "b"]);
}

#[test]
fn cel_random_bytes_never_panic() {
    let alphabet: Vec<char> = "()[]!&|=<>.'\" abcrequsthd01_,".chars().collect();
    let mut seed: u64 = 0x2545F4914F6CDD1D;
    for _ in 0..5000 {
        let mut s = String::new();
        for _ in 0..(seed % 40) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        if let Ok(e) = parse(&s) {
            let _ = e.matches(&req(200, "/"));
        }
    }
}

fn label(expr: &str, r: &Req) -> Option<String> {
    parse_value(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .label(r)
}

#[test]
fn cel_values_of_istio_doc_tag_overrides() {
    let mut r = req(200, "/");
    r.attrs
        .insert("request.host", Value::Str("reviews:9080".into()));
    r.attrs.insert("destination.port", Value::Int(9080));
    r.attrs.insert(
        "filter_state.upstream_peer.app",
        Value::Str("reviews".into()),
    );
    assert_eq!(label("request.host", &r).as_deref(), Some("reviews:9080"));
    assert_eq!(
        label("string(destination.port)", &r).as_deref(),
        Some("9080")
    );
    // An integer or boolean value is printed as the label.
    assert_eq!(label("destination.port", &r).as_deref(), Some("9080"));
    assert_eq!(label("connection.mtls", &r).as_deref(), Some("true"));
    assert_eq!(
        label("filter_state.upstream_peer.app", &r).as_deref(),
        Some("reviews")
    );
    // Older Istio's name of the same peer field.
    assert_eq!(label("upstream_peer.app", &r).as_deref(), Some("reviews"));
    // A missing attribute is an error: the label becomes `unknown` upstream.
    assert_eq!(label("filter_state.downstream_peer.app", &r), None);
    assert_eq!(label("request.headers['x-missing']", &r), None);
}

#[test]
fn cel_values_conditional_has_and_conversions() {
    let mut r = req(503, "/");
    r.headers.insert("x-tier", "gold");
    r.attrs.insert(
        "filter_state.downstream_peer.namespace",
        Value::Str("bookinfo".into()),
    );
    assert_eq!(
        label("response.code >= 500 ? 'error' : 'ok'", &r).as_deref(),
        Some("error")
    );
    assert_eq!(
        label(
            "has(filter_state.downstream_peer) ? filter_state.downstream_peer.namespace : 'none'",
            &r
        )
        .as_deref(),
        Some("bookinfo")
    );
    assert_eq!(
        label(
            "has(request.headers['x-tier']) ? request.headers['x-tier'] : 'free'",
            &r
        )
        .as_deref(),
        Some("gold")
    );
    assert_eq!(label("int('42')", &r).as_deref(), Some("42"));
    assert_eq!(label("int('x')", &r), None);
    assert_eq!(
        label("string(response.code == 503)", &r).as_deref(),
        Some("true")
    );
}

#[test]
fn cel_values_refused_with_the_reason() {
    let e = parse_value("request.hostname").unwrap_err();
    assert!(
        e.0.contains("unsupported attribute `request.hostname`"),
        "{e}"
    );
    assert!(e.0.contains("filter_state.upstream_peer.app"), "{e}");
    let e = parse_value("response.code > 1 ? 'a' : 2").unwrap_err();
    assert!(e.0.contains("branches"), "{e}");
    let e = parse_value("lower(request.host)").unwrap_err();
    assert!(e.0.contains("unsupported function `lower`"), "{e}");
    assert!(parse_value("  ").is_err());
    // Filters keep their narrower language.
    assert!(parse("destination.port == 80").is_err());
    assert!(parse("response.code > 1 ? true : false").is_err());
}
