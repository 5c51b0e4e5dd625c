use super::*;
use std::collections::BTreeMap;

#[derive(Default)]
struct Req {
    attrs: BTreeMap<&'static str, Value>,
    headers: BTreeMap<&'static str, &'static str>,
}

impl Attributes for Req {
    fn attribute(&self, name: &str) -> Option<Value> {
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
