use super::*;
use crate::model::{CorsValues, StringMatch};

fn policy(origins: Vec<StringMatch>) -> CorsPolicy {
    CorsPolicy {
        allow_origins: origins,
        allow_methods: vec!["POST".into(), "GET".into()],
        allow_headers: vec!["x-custom".into()],
        expose_headers: vec!["x-trace".into(), "x-total".into()],
        max_age_s: Some(86400),
        allow_credentials: true,
        ignore_unmatched_preflights: false,
        values: CorsValues {
            allow_methods: Some(HeaderValue::from_static("POST,GET")),
            allow_headers: Some(HeaderValue::from_static("x-custom")),
            expose_headers: Some(HeaderValue::from_static("x-trace,x-total")),
            max_age: Some(HeaderValue::from_static("86400")),
        },
    }
}

fn request(method: Method, pairs: &[(&str, &str)]) -> (Method, HeaderMap) {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    (method, h)
}

fn count(m: &Metrics, outcome: &'static str) -> u64 {
    m.cors.get_or_create(&CorsLabels { outcome }).get()
}

#[test]
fn requests_without_origin_are_not_cors_requests() {
    let m = Metrics::new();
    let p = policy(vec![StringMatch::Exact("https://example.com".into())]);
    let (method, h) = request(
        Method::OPTIONS,
        &[("access-control-request-method", "POST")],
    );
    assert!(matches!(check(&p, &method, &h, &m), Verdict::Pass));
    let (method, h) = request(Method::GET, &[("origin", "")]);
    assert!(matches!(check(&p, &method, &h, &m), Verdict::Pass));
    assert_eq!(count(&m, "origin_not_allowed") + count(&m, "allowed"), 0);
}

#[test]
fn a_preflight_from_an_allowed_origin_is_answered_with_the_policy() {
    let m = Metrics::new();
    let p = policy(vec![
        StringMatch::Exact("https://example.com".into()),
        StringMatch::Prefix("https://shop.".into()),
    ]);
    let (method, h) = request(
        Method::OPTIONS,
        &[
            ("origin", "https://shop.example.org"),
            ("access-control-request-method", "PUT"),
        ],
    );
    let Verdict::Answer(resp) = check(&p, &method, &h, &m) else {
        panic!("preflight not answered");
    };
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.org");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-allow-methods"], "POST,GET");
    assert_eq!(h["access-control-allow-headers"], "x-custom");
    assert_eq!(h["access-control-max-age"], "86400");
    // The answer to an allowed origin, this one included, exposes headers too.
    assert_eq!(h["access-control-expose-headers"], "x-trace,x-total");
    assert_eq!(count(&m, "preflight"), 1);
}

#[test]
fn an_allowed_origin_gets_headers_on_the_answer_and_others_get_none() {
    let m = Metrics::new();
    let p = policy(vec![StringMatch::Exact("https://example.com".into())]);
    let (method, h) = request(Method::POST, &[("origin", "https://example.com")]);
    let Verdict::Allowed(origin) = check(&p, &method, &h, &m) else {
        panic!("origin not allowed");
    };
    let mut answer = HeaderMap::new();
    decorate(&p, origin, &mut answer);
    assert_eq!(answer["access-control-allow-origin"], "https://example.com");
    assert_eq!(answer["access-control-allow-credentials"], "true");
    assert_eq!(answer["access-control-expose-headers"], "x-trace,x-total");
    assert!(answer.get("access-control-allow-methods").is_none());
    // Exact matching is case-sensitive, as Istio's StringMatch.
    let (method, h) = request(Method::POST, &[("origin", "https://EXAMPLE.com")]);
    assert!(matches!(check(&p, &method, &h, &m), Verdict::Pass));
    // An OPTIONS without Access-Control-Request-Method is a plain request.
    let (method, h) = request(Method::OPTIONS, &[("origin", "https://example.com")]);
    assert!(matches!(check(&p, &method, &h, &m), Verdict::Allowed(_)));
    assert_eq!(count(&m, "allowed"), 2);
    assert_eq!(count(&m, "origin_not_allowed"), 1);
}

#[test]
fn unmatched_preflights_are_forwarded_unless_ignored() {
    let m = Metrics::new();
    let mut p = policy(vec![StringMatch::Exact("https://example.com".into())]);
    let preflight = request(
        Method::OPTIONS,
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "DELETE"),
        ],
    );
    assert!(matches!(
        check(&p, &preflight.0, &preflight.1, &m),
        Verdict::Pass
    ));
    assert_eq!(count(&m, "preflight_forwarded"), 1);
    p.ignore_unmatched_preflights = true;
    let Verdict::Answer(resp) = check(&p, &preflight.0, &preflight.1, &m) else {
        panic!("IGNORE answers the preflight");
    };
    // Envoy's answer names no origin, and still carries the other headers.
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert!(
        resp.headers()
            .get("access-control-expose-headers")
            .is_none()
    );
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    assert_eq!(resp.headers()["access-control-allow-methods"], "POST,GET");
    assert_eq!(count(&m, "preflight_origin_not_allowed"), 1);
}

#[test]
fn a_star_origin_allows_all_and_star_lists_echo_the_request() {
    let m = Metrics::new();
    let mut p = policy(vec![StringMatch::Exact("*".into())]);
    p.values.allow_methods = Some(HeaderValue::from_static("*"));
    p.values.allow_headers = Some(HeaderValue::from_static("*"));
    p.values.max_age = None;
    p.allow_credentials = false;
    let (method, h) = request(
        Method::OPTIONS,
        &[
            ("origin", "https://anyone.example"),
            ("access-control-request-method", "PATCH"),
            ("access-control-request-headers", "x-a, x-b"),
        ],
    );
    let Verdict::Answer(resp) = check(&p, &method, &h, &m) else {
        panic!("preflight not answered");
    };
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://anyone.example");
    assert_eq!(h["access-control-allow-methods"], "PATCH");
    assert_eq!(h["access-control-allow-headers"], "x-a, x-b");
    assert!(h.get("access-control-allow-credentials").is_none());
    assert!(h.get("access-control-max-age").is_none());
    // A regex origin match is a full match.
    let p = policy(vec![StringMatch::Regex(
        crate::model::Pattern::full(r"https://.*\.example\.com").unwrap(),
    )]);
    let (method, h) = request(Method::GET, &[("origin", "https://a.example.com")]);
    assert!(matches!(check(&p, &method, &h, &m), Verdict::Allowed(_)));
    let (method, h) = request(Method::GET, &[("origin", "https://a.example.com.evil")]);
    assert!(matches!(check(&p, &method, &h, &m), Verdict::Pass));
}
