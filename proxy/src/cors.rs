//! VirtualService `corsPolicy`, applied on the caller's sidecar as Envoy's
//! CORS filter applies the policy Istio gives a route:
//!
//! - a request without `Origin` is not a CORS request and passes untouched;
//! - the origin is allowed when an `allowOrigins` entry matches it, or
//!   matches `*` itself (an exact `*` allows every origin);
//! - a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   from an allowed origin is answered here with `200` and the policy's
//!   headers, and never reaches the app; one from another origin is forwarded
//!   (`unmatchedPreflights: FORWARD`, the default) or answered without
//!   `access-control-allow-origin` (`IGNORE`);
//! - the answer to any other request from an allowed origin gets
//!   `access-control-allow-origin` (the request's origin),
//!   `access-control-allow-credentials` and `access-control-expose-headers`;
//! - routes that redirect or answer directly are not CORS routes (Envoy's
//!   filter skips them), so only forwarding routes apply a policy.

#[cfg(test)]
mod tests;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::metrics::{CorsLabels, Metrics};
use crate::model::CorsPolicy;

/// What a route's CORS policy makes of a request.
pub enum Verdict {
    /// No `Origin`, or an origin the policy does not allow: nothing to add.
    Pass,
    /// A preflight answered by the proxy.
    Answer(Response<Body>),
    /// A request from an allowed origin: its answer gets the CORS headers of
    /// [`decorate`], naming this origin.
    Allowed(HeaderValue),
}

/// Whether `policy` allows `origin`.
fn allows(policy: &CorsPolicy, origin: &str) -> bool {
    policy
        .allow_origins
        .iter()
        .any(|m| m.matches(Some("*"), false) || m.matches(Some(origin), false))
}

/// Applies `policy` to a request, counting the outcome.
pub fn check(
    policy: &CorsPolicy,
    method: &Method,
    headers: &HeaderMap,
    metrics: &Metrics,
) -> Verdict {
    let Some(origin) = headers.get(header::ORIGIN).filter(|o| !o.is_empty()) else {
        return Verdict::Pass;
    };
    let allowed = origin.to_str().is_ok_and(|o| allows(policy, o));
    let count = |outcome| {
        metrics.cors.get_or_create(&CorsLabels { outcome }).inc();
    };
    let requested_method = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .filter(|m| !m.is_empty());
    let preflight = *method == Method::OPTIONS && requested_method.is_some();
    match (preflight, allowed) {
        (false, true) => {
            count("allowed");
            return Verdict::Allowed(origin.clone());
        }
        (false, false) => {
            count("origin_not_allowed");
            return Verdict::Pass;
        }
        // Forwarded to the app, which may answer it itself.
        (true, false) if !policy.ignore_unmatched_preflights => {
            count("preflight_forwarded");
            return Verdict::Pass;
        }
        (true, true) => count("preflight"),
        (true, false) => count("preflight_origin_not_allowed"),
    }
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    let out = resp.headers_mut();
    if allowed {
        // Envoy's answer passes its own CORS filter on the way out too.
        decorate(policy, origin.clone(), out);
    } else if policy.allow_credentials {
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let values = &policy.values;
    // `*` echoes what the preflight asks for, as Envoy does.
    let echo = |value: &Option<HeaderValue>, asked: Option<&HeaderValue>| match value {
        Some(v) if v == "*" => asked.cloned(),
        other => other.clone(),
    };
    if let Some(v) = echo(&values.allow_methods, requested_method) {
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    let requested_headers = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS);
    if let Some(v) = echo(&values.allow_headers, requested_headers) {
        out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(v) = &values.max_age {
        out.insert(header::ACCESS_CONTROL_MAX_AGE, v.clone());
    }
    Verdict::Answer(resp)
}

/// Adds the CORS headers for an allowed `origin` to the answer of a request.
pub fn decorate(policy: &CorsPolicy, origin: HeaderValue, headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    if policy.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(v) = &policy.values.expose_headers {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
    }
}
