use super::*;
use http::StatusCode;

fn text_reply(status: StatusCode, message: &str) -> Response<Body> {
    crate::http_util::local_reply(status, message)
}

#[test]
fn grpc_local_maps_status_and_keeps_the_message_and_headers() {
    let mut denied = text_reply(StatusCode::FORBIDDEN, "RBAC: access denied");
    denied.headers_mut().insert(
        "x-envoy-ratelimited",
        http::HeaderValue::from_static("true"),
    );
    let g = grpc_local(denied);
    assert_eq!(g.status(), StatusCode::OK);
    assert_eq!(g.headers()["content-type"], "application/grpc");
    assert_eq!(g.headers()["grpc-status"], "7");
    assert_eq!(g.headers()["grpc-message"], "RBAC: access denied");
    assert_eq!(g.headers()["x-envoy-ratelimited"], "true");
    assert_eq!(g.body().size_hint().exact(), Some(0));
    for (status, code) in [
        (StatusCode::BAD_REQUEST, "13"),
        (StatusCode::UNAUTHORIZED, "16"),
        (StatusCode::NOT_FOUND, "12"),
        (StatusCode::TOO_MANY_REQUESTS, "14"),
        (StatusCode::BAD_GATEWAY, "14"),
        (StatusCode::SERVICE_UNAVAILABLE, "14"),
        (StatusCode::GATEWAY_TIMEOUT, "14"),
        (StatusCode::INTERNAL_SERVER_ERROR, "2"),
    ] {
        let g = grpc_local(text_reply(status, "x"));
        assert_eq!(g.headers()["grpc-status"], code, "{status}");
    }
}

#[test]
fn grpc_local_leaves_successes_and_grpc_answers_alone_and_escapes_messages() {
    let ok = grpc_local(text_reply(StatusCode::OK, "fine"));
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(!ok.headers().contains_key("grpc-status"));
    let mut already = text_reply(StatusCode::SERVICE_UNAVAILABLE, "x");
    already
        .headers_mut()
        .insert("grpc-status", http::HeaderValue::from_static("4"));
    assert_eq!(grpc_local(already).headers()["grpc-status"], "4");
    // Without a kept message, the status's reason; `%` and non-ASCII escaped.
    let mut bare = Response::new(body::empty());
    *bare.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(
        grpc_local(bare).headers()["grpc-message"],
        "Service Unavailable"
    );
    let g = grpc_local(text_reply(StatusCode::FORBIDDEN, "100% é"));
    assert_eq!(g.headers()["grpc-message"], "100%25 %C3%A9");
}
