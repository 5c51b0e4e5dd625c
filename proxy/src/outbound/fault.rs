//! Fault injection (Istio `HTTPFaultInjection`): delay and/or abort a share of
//! the requests of a route before they reach the upstream.

#[cfg(test)]
mod tests;

use std::time::Duration;

use http::header::HeaderValue;
use http::{Response, StatusCode};

use super::mirror::hit;

use crate::body::{self, Body};
use crate::model::Fault;

/// What fault injection did to a request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// The request was delayed (Envoy flag `DI`).
    pub delayed: bool,
    /// The request is answered with this instead of being forwarded (`FI`).
    pub abort: Option<Abort>,
}

/// An injected answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Abort {
    Http(StatusCode),
    /// gRPC status code, answered as a trailers-only response.
    Grpc(u32),
}

/// gRPC status names (as Istio accepts them) to codes.
fn grpc_code(name: &str) -> Option<u32> {
    const NAMES: [&str; 17] = [
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
    name.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| u32::try_from(i).ok())
    })
}

/// Decides (by the configured percentages) what to inject into one request.
pub fn decide(fault: &Fault) -> Injected {
    let delayed = fault.delay_ms > 0 && hit(fault.delay_percent);
    let abort = if hit(fault.abort_percent) {
        if let Some(code) = Some(fault.abort_grpc_status.as_str())
            .filter(|s| !s.is_empty())
            .and_then(grpc_code)
        {
            Some(Abort::Grpc(code))
        } else {
            u16::try_from(fault.abort_http_status)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .map(Abort::Http)
        }
    } else {
        None
    };
    Injected { delayed, abort }
}

/// Waits out an injected delay.
pub async fn delay(fault: &Fault) {
    tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
}

/// The response of an injected abort.
pub fn abort_response(abort: &Abort) -> Response<Body> {
    match abort {
        Abort::Http(status) => {
            let mut resp = Response::new(body::full("fault filter abort\n"));
            *resp.status_mut() = *status;
            resp
        }
        Abort::Grpc(code) => {
            let mut resp = Response::new(body::empty());
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert("grpc-status", HeaderValue::from(*code));
            h.insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
            resp
        }
    }
}
