//! HTTPRoute rules of a VirtualService: conflicts between route, redirect,
//! direct response and delegate; matches; retries; faults; mirrors; CORS;
//! header edits.

use super::FieldErrors;
use super::field::{
    at, check_duration_field, check_enum, check_gateways, check_int_percent, check_labels,
    check_percent, check_string_match, editable_header, header_name, header_value, item, port,
    regex,
};
use super::virtual_service::{check_destination, check_source_namespace, check_weights};
use crate::crd::{
    CorsPolicy, Headers, HttpDirectResponse, HttpFaultInjection, HttpMatchRequest, HttpRedirect,
    HttpRetry, HttpRewrite, HttpRoute, StringMatch,
};

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Checks one `spec.http[i]`.
pub(crate) fn check_http_route(
    errors: &mut FieldErrors,
    path: &str,
    r: &HttpRoute,
    in_delegate: bool,
) {
    check_conflicts(errors, path, r, in_delegate);
    // Delegation merges matches across objects, which Istio allows only without regexes.
    let delegating = in_delegate || r.delegate.is_some();
    for (i, m) in r.match_.iter().enumerate() {
        check_match(errors, &item(path, "match", i), m, delegating);
    }
    if let Some(h) = &r.headers {
        check_headers(errors, &at(path, "headers"), h);
    }
    check_authority_rewrite(errors, path, r);
    if let Some(cors) = &r.cors_policy {
        check_cors(errors, &at(path, "corsPolicy"), cors);
    }
    if let Some(fault) = &r.fault {
        check_fault(errors, &at(path, "fault"), fault);
    }
    if r.mirror.is_some() && !r.mirrors.is_empty() {
        errors.push(
            at(path, "mirrors"),
            "cannot specify both mirror and mirrors",
        );
    }
    if let Some(v) = r.mirror_percent
        && v > 100
    {
        errors.push(
            at(path, "mirrorPercent"),
            format!("mirrorPercent must have a max value of 100 (it has {v})"),
        );
    }
    check_percent(
        errors,
        at(path, "mirrorPercentage"),
        r.mirror_percentage.as_ref(),
    );
    if let Some(m) = &r.mirror {
        check_destination(errors, &at(path, "mirror"), m);
    }
    for (i, m) in r.mirrors.iter().enumerate() {
        let p = item(path, "mirrors", i);
        check_destination(errors, &at(&p, "destination"), &m.destination);
        check_percent(errors, at(&p, "percentage"), m.percentage.as_ref());
    }
    if let Some(redirect) = &r.redirect {
        check_redirect(errors, &at(path, "redirect"), redirect);
    }
    if let Some(d) = &r.direct_response {
        check_direct_response(errors, &at(path, "directResponse"), d);
    }
    if let Some(retries) = &r.retries {
        check_retries(errors, &at(path, "retries"), retries);
    }
    if let Some(rewrite) = &r.rewrite {
        check_rewrite(errors, &at(path, "rewrite"), rewrite);
    }
    if let Some(delegate) = &r.delegate {
        let p = at(path, "delegate");
        match delegate.name.as_deref() {
            None | Some("") => errors.push(at(&p, "name"), "delegate name is required"),
            Some(name) if !super::field::is_dns1123_label(name) => {
                errors.push(at(&p, "name"), format!("invalid delegate name `{name}`"))
            }
            Some(_) => {}
        }
        if let Some(ns) = &delegate.namespace
            && !super::field::is_dns1123_label(ns)
        {
            errors.push(
                at(&p, "namespace"),
                format!("invalid delegate namespace `{ns}`"),
            );
        }
    }
    let routes = at(path, "route");
    for (i, d) in r.route.iter().enumerate() {
        let p = format!("{routes}[{i}]");
        check_destination(errors, &at(&p, "destination"), &d.destination);
        if let Some(h) = &d.headers {
            check_headers(errors, &at(&p, "headers"), h);
        }
    }
    check_weights(errors, &routes, r.route.iter().map(|d| d.weight));
    check_duration_field(errors, at(path, "timeout"), r.timeout.as_deref());
}

fn check_conflicts(errors: &mut FieldErrors, path: &str, r: &HttpRoute, in_delegate: bool) {
    if r.delegate.is_some() {
        if in_delegate {
            errors.push(
                at(path, "delegate"),
                "delegate HTTP route cannot contain delegate",
            );
        }
        if r.redirect.is_some() {
            errors.push(
                at(path, "redirect"),
                "root HTTP route must not specify redirect",
            );
        }
        if !r.route.is_empty() {
            errors.push(at(path, "route"), "root HTTP route must not specify route");
        }
        if r.direct_response.is_some() {
            errors.push(
                at(path, "directResponse"),
                "root HTTP route must not specify directResponse",
            );
        }
        return;
    }
    if r.redirect.is_some() {
        if !r.route.is_empty() {
            errors.push(
                at(path, "redirect"),
                "HTTP route cannot contain both route and redirect",
            );
        }
        if r.fault.is_some() {
            errors.push(
                at(path, "redirect"),
                "HTTP route cannot contain both fault and redirect",
            );
        }
        if r.rewrite.is_some() {
            errors.push(
                at(path, "redirect"),
                "HTTP route rule cannot contain both rewrite and redirect",
            );
        }
        if r.direct_response.is_some() {
            errors.push(
                at(path, "directResponse"),
                "HTTP route cannot contain both redirect and direct response",
            );
        }
    } else if r.direct_response.is_some() {
        if !r.route.is_empty() {
            errors.push(
                at(path, "directResponse"),
                "HTTP route cannot contain both route and direct response",
            );
        }
    } else if r.route.is_empty() {
        errors.push(path, "HTTP route, redirect or direct response is required");
    }
}

fn check_match(errors: &mut FieldErrors, path: &str, m: &HttpMatchRequest, delegating: bool) {
    let string_match = |errors: &mut FieldErrors, p: String, sm: &StringMatch| {
        check_string_match(errors, &p, sm);
        if delegating && sm.regex.is_some() {
            errors.push(p, "regex match is not supported with delegation");
        }
    };
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(errors, at(path, field), sm);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let p = format!("{path}.{field}.{name}");
            errors.check(p.clone(), header_name(name));
            string_match(errors, p, sm);
        }
    }
    for (name, sm) in &m.query_params {
        string_match(errors, format!("{path}.queryParams.{name}"), sm);
    }
    if let Some(p) = m.port {
        errors.check(at(path, "port"), port(p));
    }
    check_labels(errors, &at(path, "sourceLabels"), &m.source_labels);
    check_gateways(errors, &at(path, "gateways"), &m.gateways);
    check_source_namespace(errors, path, m.source_namespace.as_deref());
}

/// Header edits: request set/add may write the authority, nothing may touch pseudo-headers.
pub(crate) fn check_headers(errors: &mut FieldErrors, path: &str, h: &Headers) {
    for (side, ops, authority_allowed) in [
        ("request", &h.request, true),
        ("response", &h.response, false),
    ] {
        let Some(ops) = ops else { continue };
        let p = at(path, side);
        for (op, map) in [("set", &ops.set), ("add", &ops.add)] {
            for (name, value) in map {
                let field = format!("{p}.{op}.{name}");
                errors.check(field.clone(), editable_header(name, authority_allowed));
                errors.check(field, header_value(value));
            }
        }
        for (i, name) in ops.remove.iter().enumerate() {
            errors.check(item(&p, "remove", i), editable_header(name, false));
        }
    }
}

fn check_authority_rewrite(errors: &mut FieldErrors, path: &str, r: &HttpRoute) {
    let mut writers = 0;
    if r.rewrite
        .as_ref()
        .and_then(|w| w.authority.as_ref())
        .is_some()
    {
        writers += 1;
    }
    if let Some(req) = r.headers.as_ref().and_then(|h| h.request.as_ref()) {
        writers += req
            .set
            .keys()
            .chain(req.add.keys())
            .filter(|k| k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case(":authority"))
            .count();
    }
    if writers > 1 {
        errors.push(
            at(path, "headers.request"),
            "authority header cannot be set multiple times",
        );
    }
}

fn check_cors(errors: &mut FieldErrors, path: &str, c: &CorsPolicy) {
    for (i, origin) in c.allow_origins.iter().enumerate() {
        let p = item(path, "allowOrigins", i);
        let value = origin
            .exact
            .as_ref()
            .or(origin.prefix.as_ref())
            .or(origin.regex.as_ref());
        if value.is_none_or(|v| v.is_empty()) {
            errors.push(
                p.clone(),
                "allow origin must set a non-empty exact, prefix or regex",
            );
        }
        check_string_match(errors, &p, origin);
    }
    for (i, method) in c.allow_methods.iter().enumerate() {
        if !CORS_METHODS.contains(&method.as_str()) {
            errors.push(
                item(path, "allowMethods", i),
                format!("`{method}` is not a supported HTTP method"),
            );
        }
    }
    for (field, names) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, name) in names.iter().enumerate() {
            errors.check(item(path, field, i), header_name(name));
        }
    }
    if let Some(age) = &c.max_age {
        match super::duration::check_duration(age) {
            Ok(d) if d.subsec_nanos() != 0 => errors.push(
                at(path, "maxAge"),
                "max_age duration is accurate only to seconds precision",
            ),
            Ok(_) => {}
            Err(e) => errors.push(at(path, "maxAge"), e),
        }
    }
    check_enum(
        errors,
        at(path, "unmatchedPreflights"),
        c.unmatched_preflights.as_deref(),
        &["UNSPECIFIED", "FORWARD", "IGNORE"],
    );
}

fn check_fault(errors: &mut FieldErrors, path: &str, f: &HttpFaultInjection) {
    if f.abort.is_none() && f.delay.is_none() {
        errors.push(
            path,
            "HTTP fault injection must have an abort and/or a delay",
        );
    }
    if let Some(a) = &f.abort {
        let p = at(path, "abort");
        check_percent(errors, at(&p, "percentage"), a.percentage.as_ref());
        let kinds = [
            a.http_status.is_some(),
            a.grpc_status.is_some(),
            a.http2_error.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            errors.push(
                p.clone(),
                "only one of httpStatus, grpcStatus or http2Error may be set",
            );
        }
        if let Some(status) = a.http_status
            && !(200..=599).contains(&status)
        {
            errors.push(
                at(&p, "httpStatus"),
                format!("HTTP status {status} is not in range 200-599"),
            );
        }
        if let Some(status) = &a.grpc_status {
            check_enum(errors, at(&p, "grpcStatus"), Some(status), GRPC_STATUS);
        }
        if a.http2_error.is_some() {
            errors.push(
                at(&p, "http2Error"),
                "HTTP/2 abort fault injection not supported yet",
            );
        }
    }
    if let Some(d) = &f.delay {
        let p = at(path, "delay");
        check_percent(errors, at(&p, "percentage"), d.percentage.as_ref());
        check_int_percent(errors, at(&p, "percent"), d.percent);
        if d.fixed_delay.is_some() && d.exponential_delay.is_some() {
            errors.push(
                p.clone(),
                "only one of fixedDelay or exponentialDelay may be set",
            );
        }
        check_duration_field(errors, at(&p, "fixedDelay"), d.fixed_delay.as_deref());
        if d.exponential_delay.is_some() {
            errors.push(
                at(&p, "exponentialDelay"),
                "exponentialDelay not supported yet",
            );
        }
    }
}

fn check_redirect(errors: &mut FieldErrors, path: &str, r: &HttpRedirect) {
    if r.uri.is_none()
        && r.authority.is_none()
        && r.port.is_none()
        && r.derive_port.is_none()
        && r.scheme.is_none()
    {
        errors.push(
            path,
            "redirect must specify URI, authority, scheme, or port",
        );
    }
    if let Some(code) = r.redirect_code
        && code != 0
        && !(300..=399).contains(&code)
    {
        errors.push(
            at(path, "redirectCode"),
            format!("{code} is not a valid redirect code, must be 3xx"),
        );
    }
    if let Some(scheme) = &r.scheme
        && scheme != "http"
        && scheme != "https"
    {
        errors.push(
            at(path, "scheme"),
            "invalid redirect scheme, must be \"http\" or \"https\"",
        );
    }
    if let Some(p) = r.port {
        errors.check(at(path, "port"), port(p));
    }
    if r.port.is_some() && r.derive_port.is_some() {
        errors.push(path, "only one of port or derivePort may be set");
    }
    check_enum(
        errors,
        at(path, "derivePort"),
        r.derive_port.as_deref(),
        &["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"],
    );
}

fn check_direct_response(errors: &mut FieldErrors, path: &str, d: &HttpDirectResponse) {
    if !(200..=599).contains(&d.status) {
        errors.push(
            at(path, "status"),
            format!("HTTP status {} is not in range 200-599", d.status),
        );
    }
    let Some(body) = &d.body else { return };
    let p = at(path, "body");
    if body.string.is_some() && body.bytes.is_some() {
        errors.push(p.clone(), "only one of string or bytes may be set");
    }
    let size = body
        .string
        .as_ref()
        .or(body.bytes.as_ref())
        .map_or(0, String::len);
    if size > 1024 * 1024 {
        errors.push(
            p.clone(),
            "large direct_responses may impact control plane performance, must be less than 1MB",
        );
    }
    if let Some(b) = &body.bytes {
        let alphabet = b
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c));
        if !alphabet || b.len() % 4 != 0 {
            errors.push(at(&p, "bytes"), "bytes must be base64-encoded");
        }
    }
}

fn check_retries(errors: &mut FieldErrors, path: &str, r: &HttpRetry) {
    if r.attempts < 0 {
        errors.push(at(path, "attempts"), "must be >= 0");
    }
    if r.attempts == 0
        && (r.per_try_timeout.is_some()
            || r.retry_on.is_some()
            || r.retry_remote_localities.is_some())
    {
        errors.push(
            path,
            "http retry policy configured when attempts are set to 0 (disabled)",
        );
    }
    check_duration_field(
        errors,
        at(path, "perTryTimeout"),
        r.per_try_timeout.as_deref(),
    );
    if let Some(retry_on) = &r.retry_on {
        for policy in retry_on.split(',') {
            let status = policy
                .parse::<u16>()
                .is_ok_and(|s| (100..=599).contains(&s));
            if !status && !RETRY_ON.contains(&policy) {
                errors.push(
                    at(path, "retryOn"),
                    format!("`{policy}` is not a valid retryOn policy"),
                );
            }
        }
    }
    check_duration_field(errors, at(path, "backoff"), r.backoff.as_deref());
}

fn check_rewrite(errors: &mut FieldErrors, path: &str, r: &HttpRewrite) {
    if r.uri.is_some() && r.uri_regex_rewrite.is_some() {
        errors.push(
            path,
            "rewrite may only contain one of uri or uriRegexRewrite",
        );
    }
    if r.uri.is_none() && r.uri_regex_rewrite.is_none() && r.authority.is_none() {
        errors.push(
            path,
            "rewrite must specify at least one of uri, uriRegexRewrite or authority",
        );
    }
    if let Some(rr) = &r.uri_regex_rewrite {
        let p = at(path, "uriRegexRewrite");
        if rr.match_.is_empty() || rr.rewrite.is_empty() {
            errors.push(p.clone(), "uriRegexRewrite requires both match and rewrite");
        }
        if !rr.match_.is_empty() {
            errors.check(at(&p, "match"), regex(&rr.match_));
        }
    }
}

#[cfg(test)]
mod tests;
