use crate::validation::tests::problems;

fn route(http: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r}}\nspec: {{hosts: [r], http: [{http}]}}\n"
    ))
}

const D: &str = "route: [{destination: {host: r}}]";

fn one(http: &str, expected: &str) {
    assert_eq!(
        route(http),
        [format!("VirtualService default/r: {expected}")],
        "http: {http}"
    );
}

#[test]
fn http_route_without_action_is_refused() {
    one(
        "{name: x}",
        "spec.http[0]: HTTP route, redirect or direct response is required",
    );
}

#[test]
fn http_route_redirect_with_route_is_refused() {
    one(
        &format!("{{{D}, redirect: {{uri: /x}}}}"),
        "spec.http[0].redirect: HTTP route cannot contain both route and redirect",
    );
}

#[test]
fn http_route_redirect_with_rewrite_is_refused() {
    one(
        "{redirect: {uri: /x}, rewrite: {uri: /y}}",
        "spec.http[0].redirect: HTTP route rule cannot contain both rewrite and redirect",
    );
}

#[test]
fn http_route_redirect_with_fault_is_refused() {
    one(
        "{redirect: {uri: /x}, fault: {abort: {httpStatus: 500}}}",
        "spec.http[0].redirect: HTTP route cannot contain both fault and redirect",
    );
}

#[test]
fn http_route_direct_response_with_route_is_refused() {
    one(
        &format!("{{{D}, directResponse: {{status: 200}}}}"),
        "spec.http[0].directResponse: HTTP route cannot contain both route and direct response",
    );
}

#[test]
fn http_route_direct_response_bad_status_is_refused() {
    one(
        "{directResponse: {status: 99}}",
        "spec.http[0].directResponse.status: HTTP status 99 is not in range 200-599",
    );
}

#[test]
fn http_route_direct_response_body_oneof_is_enforced() {
    one(
        "{directResponse: {status: 200, body: {string: a, bytes: YQ==}}}",
        "spec.http[0].directResponse.body: only one of string or bytes may be set",
    );
}

#[test]
fn http_route_redirect_code_must_be_3xx() {
    one(
        "{redirect: {uri: /x, redirectCode: 200}}",
        "spec.http[0].redirect.redirectCode: 200 is not a valid redirect code, must be 3xx",
    );
}

#[test]
fn http_route_redirect_needs_a_target() {
    one(
        "{redirect: {redirectCode: 301}}",
        "spec.http[0].redirect: redirect must specify URI, authority, scheme, or port",
    );
}

#[test]
fn http_route_redirect_unknown_derive_port_is_refused() {
    one(
        "{redirect: {uri: /x, derivePort: FROM_NOWHERE}}",
        "spec.http[0].redirect.derivePort: unknown value `FROM_NOWHERE` (expected one of FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT)",
    );
}

#[test]
fn http_route_redirect_bad_scheme_is_refused() {
    one(
        "{redirect: {scheme: ftp}}",
        "spec.http[0].redirect.scheme: invalid redirect scheme, must be \"http\" or \"https\"",
    );
}

#[test]
fn http_route_bad_regex_is_refused() {
    let lines = route(&format!(
        "{{match: [{{uri: {{regex: '(unclosed'}}}}], {D}}}"
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "VirtualService default/r: spec.http[0].match[0].uri.regex: invalid regex:"
        ),
        "{lines:?}"
    );
}

#[test]
fn http_route_string_match_with_two_kinds_is_refused() {
    one(
        &format!("{{match: [{{uri: {{exact: /a, prefix: /b}}}}], {D}}}"),
        "spec.http[0].match[0].uri: only one of exact, prefix or regex may be set",
    );
}

#[test]
fn http_route_presence_header_match_is_valid() {
    assert!(
        route(&format!(
            "{{match: [{{headers: {{x-canary: {{}}}}}}], {D}}}"
        ))
        .is_empty()
    );
}

#[test]
fn http_route_invalid_header_name_is_refused() {
    one(
        &format!("{{match: [{{headers: {{'bad header': {{exact: a}}}}}}], {D}}}"),
        "spec.http[0].match[0].headers.bad header: `bad header` is not a valid header name",
    );
}

#[test]
fn http_route_delegate_regex_match_is_refused() {
    one(
        "{match: [{uri: {regex: '/a.*'}}], delegate: {name: child}}",
        "spec.http[0].match[0].uri: regex match is not supported with delegation",
    );
}

#[test]
fn http_route_root_with_route_and_delegate_is_refused() {
    one(
        &format!("{{{D}, delegate: {{name: child}}}}"),
        "spec.http[0].route: root HTTP route must not specify route",
    );
}

#[test]
fn http_route_mirror_and_mirrors_are_exclusive() {
    one(
        &format!("{{{D}, mirror: {{host: m}}, mirrors: [{{destination: {{host: m}}}}]}}"),
        "spec.http[0].mirrors: cannot specify both mirror and mirrors",
    );
}

#[test]
fn http_route_mirror_percentage_over_100_is_refused() {
    one(
        &format!("{{{D}, mirror: {{host: m}}, mirrorPercentage: {{value: 150}}}}"),
        "spec.http[0].mirrorPercentage.value: percentage must be in [0, 100]",
    );
}

#[test]
fn http_route_negative_retry_attempts_are_refused() {
    one(
        &format!("{{{D}, retries: {{attempts: -1}}}}"),
        "spec.http[0].retries.attempts: must be >= 0",
    );
}

#[test]
fn http_route_retry_settings_with_zero_attempts_are_refused() {
    one(
        &format!("{{{D}, retries: {{attempts: 0, retryOn: 5xx}}}}"),
        "spec.http[0].retries: http retry policy configured when attempts are set to 0 (disabled)",
    );
}

#[test]
fn http_route_unknown_retry_on_is_refused() {
    one(
        &format!("{{{D}, retries: {{attempts: 2, retryOn: '5xx,503,sometimes'}}}}"),
        "spec.http[0].retries.retryOn: `sometimes` is not a valid retryOn policy",
    );
}

#[test]
fn http_route_per_try_timeout_below_1ms_is_refused() {
    one(
        &format!("{{{D}, retries: {{attempts: 2, perTryTimeout: 100us}}}}"),
        "spec.http[0].retries.perTryTimeout: duration must be >= 1ms",
    );
}

#[test]
fn http_route_malformed_timeout_is_refused() {
    one(
        &format!("{{{D}, timeout: 10 seconds}}"),
        "spec.http[0].timeout: invalid duration `10 seconds` (expected e.g. 1.5s, 100ms, 1m, 1h)",
    );
}

#[test]
fn http_route_fault_without_abort_or_delay_is_refused() {
    one(
        &format!("{{{D}, fault: {{}}}}"),
        "spec.http[0].fault: HTTP fault injection must have an abort and/or a delay",
    );
}

#[test]
fn http_route_fault_percentages_are_bounded() {
    let lines = route(&format!(
        "{{{D}, fault: {{delay: {{fixedDelay: 1s, percentage: {{value: -1}}}}, abort: {{httpStatus: 503, percentage: {{value: 101}}}}}}}}"
    ));
    assert_eq!(
        lines,
        [
            "VirtualService default/r: spec.http[0].fault.abort.percentage.value: percentage must be in [0, 100]",
            "VirtualService default/r: spec.http[0].fault.delay.percentage.value: percentage must be in [0, 100]",
        ]
    );
}

#[test]
fn http_route_fault_abort_status_and_grpc_status_are_checked() {
    one(
        &format!("{{{D}, fault: {{abort: {{httpStatus: 700}}}}}}"),
        "spec.http[0].fault.abort.httpStatus: HTTP status 700 is not in range 200-599",
    );
    one(
        &format!("{{{D}, fault: {{abort: {{grpcStatus: NOPE}}}}}}"),
        "spec.http[0].fault.abort.grpcStatus: unknown value `NOPE` (expected one of OK, CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED)",
    );
}

#[test]
fn http_route_rewrite_uri_and_regex_are_exclusive() {
    one(
        &format!("{{{D}, rewrite: {{uri: /a, uriRegexRewrite: {{match: '^/b', rewrite: /c}}}}}}"),
        "spec.http[0].rewrite: rewrite may only contain one of uri or uriRegexRewrite",
    );
}

#[test]
fn http_route_editing_pseudo_header_is_refused() {
    one(
        &format!("{{{D}, headers: {{response: {{set: {{':status': '200'}}}}}}}}"),
        "spec.http[0].headers.response.set.:status: invalid header `:status`: pseudo-headers and `host` cannot be edited here",
    );
}

#[test]
fn http_route_authority_written_twice_is_refused() {
    one(
        &format!("{{{D}, rewrite: {{authority: a}}, headers: {{request: {{set: {{host: b}}}}}}}}"),
        "spec.http[0].headers.request: authority header cannot be set multiple times",
    );
}

#[test]
fn http_route_cors_unknown_method_is_refused() {
    one(
        &format!("{{{D}, corsPolicy: {{allowMethods: [GET, FETCH]}}}}"),
        "spec.http[0].corsPolicy.allowMethods[1]: `FETCH` is not a supported HTTP method",
    );
}

#[test]
fn http_route_match_port_zero_is_refused() {
    one(
        &format!("{{match: [{{port: 0}}], {D}}}"),
        "spec.http[0].match[0].port: port number 0 must be in the range 1..65535",
    );
}

#[test]
fn http_route_header_value_with_newline_is_refused() {
    one(
        &format!("{{{D}, headers: {{request: {{add: {{x-a: \"a\\nb\"}}}}}}}}"),
        "spec.http[0].headers.request.add.x-a: header value must not contain CR, LF or NUL",
    );
}

#[test]
fn http_route_cors_max_age_needs_whole_seconds() {
    one(
        &format!("{{{D}, corsPolicy: {{maxAge: 1500ms}}}}"),
        "spec.http[0].corsPolicy.maxAge: max_age duration is accurate only to seconds precision",
    );
}

#[test]
fn http_route_mirrors_destination_is_checked() {
    one(
        &format!("{{{D}, mirrors: [{{destination: {{host: ''}}}}]}}"),
        "spec.http[0].mirrors[0].destination.host: destination host is required",
    );
}

#[test]
fn http_route_delegate_needs_name() {
    one(
        "{delegate: {namespace: ns}}",
        "spec.http[0].delegate.name: delegate name is required",
    );
}

#[test]
fn http_route_direct_response_bytes_must_be_base64() {
    one(
        "{directResponse: {status: 200, body: {bytes: 'not base64!'}}}",
        "spec.http[0].directResponse.body.bytes: bytes must be base64-encoded",
    );
}

#[test]
fn http_route_exponential_delay_is_unsupported() {
    one(
        &format!("{{{D}, fault: {{delay: {{exponentialDelay: 1s}}}}}}"),
        "spec.http[0].fault.delay.exponentialDelay: exponentialDelay not supported yet",
    );
}
