use super::request::{SampleRequest, differences};
use serde_json::json;

#[test]
fn request_text_with_headers_parses_method_url_and_headers() {
    let r = SampleRequest::from_flags(
        Some("post http://reviews:9080/a/b?x=1 -H end-user:jason -H X-Two: "),
        None,
        None,
        &[],
    );
    // "X-Two:" with an empty value is still name:value.
    let r = r.expect("parses").expect("some");
    assert_eq!(r.method, "POST");
    assert_eq!(r.authority, "reviews:9080");
    assert_eq!(r.path, "/a/b");
    assert_eq!(r.query.as_deref(), Some("x=1"));
    assert_eq!(
        r.headers,
        vec![
            ("end-user".to_owned(), "jason".to_owned()),
            ("x-two".to_owned(), String::new())
        ]
    );
}

#[test]
fn request_flags_override_request_text() {
    let r = SampleRequest::from_flags(
        Some("GET http://a:1/"),
        Some("ratings:9080/x"),
        Some("delete"),
        &["k: v".to_owned()],
    )
    .expect("parses")
    .expect("some");
    assert_eq!(r.method, "DELETE");
    assert_eq!(r.scheme, "http");
    assert_eq!(r.authority, "ratings:9080");
    assert_eq!(r.headers, vec![("k".to_owned(), "v".to_owned())]);
}

#[test]
fn request_without_url_is_none_or_an_error() {
    assert!(matches!(
        SampleRequest::from_flags(None, None, None, &[]),
        Ok(None)
    ));
    assert!(SampleRequest::from_flags(None, None, Some("GET"), &[]).is_err());
    assert!(SampleRequest::from_flags(Some("GET -H a:b"), None, None, &[]).is_err());
    assert!(SampleRequest::from_flags(Some("GET http://h/ -H nocolon"), None, None, &[]).is_err());
    assert!(SampleRequest::from_flags(Some("GET http://h/ http://i/"), None, None, &[]).is_err());
}

#[test]
fn request_bare_host_is_the_url_not_a_method() {
    let r = SampleRequest::from_flags(Some("reviews"), None, None, &[])
        .expect("parses")
        .expect("some");
    assert_eq!(
        (r.method.as_str(), r.authority.as_str(), r.path.as_str()),
        ("GET", "reviews", "/")
    );
}

#[test]
fn admin_query_encodes_reserved_characters() {
    let r = SampleRequest::from_flags(
        Some("GET http://h:80/p?q=a&b -H cookie:x=1;y=2"),
        None,
        None,
        &[],
    )
    .expect("parses")
    .expect("some");
    let q = r.admin_query();
    assert!(q.contains("host=h%3A80"), "{q}");
    assert!(q.contains("query=q%3Da%26b"), "{q}");
    assert!(q.contains("header=cookie%3Ax%3D1%3By%3D2"), "{q}");
    // The proxy's own parser reads it back to the same request.
    let d = sluice_proxy::admin::debug_route::Described::parse(&q).expect("proxy parses it");
    assert_eq!(d.authority, "h:80");
    assert_eq!(d.query.as_deref(), Some("q=a&b"));
    assert_eq!(d.headers["cookie"], "x=1;y=2");
}

#[test]
fn differences_ignore_config_version_and_name_paths() {
    let a = json!({"config_version": "3", "route": {"index": 1}, "list": [1, 2]});
    let b = json!({"config_version": "9", "route": {"index": 2}, "list": [1, 3]});
    let d = differences(&a, &b);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].starts_with("list[1]:"), "{d:?}");
    assert!(d[1].starts_with("route.index:"), "{d:?}");
    assert!(
        differences(
            &a,
            &json!({"config_version": "7", "route": {"index": 1}, "list": [1, 2]})
        )
        .is_empty()
    );
}
