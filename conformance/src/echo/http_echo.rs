//! The HTTP side of the echo: httpbin-compatible paths, a JSON description of any other request,
//! a gRPC-shaped answer for `application/grpc*`, and the `x-echo-*` headers on every response.
use super::Echo;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// Request bodies above this are refused; the echo is a test tool, not a sink.
const MAX_BODY: usize = 16 << 20;
/// Upper bound for `/delay/{seconds}`, as httpbin caps it.
const MAX_DELAY: Duration = Duration::from_secs(10);
/// Upper bound for `/bytes/{n}`.
const MAX_BYTES: usize = 1 << 20;

/// Accepts connections forever, each served as HTTP/1.1 or h2c (detected from the preface).
pub(super) async fn serve(listener: TcpListener, echo: Arc<Echo>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let echo = echo.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let echo = echo.clone();
                async move { Ok::<_, Infallible>(answer(req, &echo, peer).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
}

/// What the echo knows about one request.
struct Seen {
    method: String,
    path_and_query: String,
    path: String,
    query: String,
    host: String,
    headers: HeaderMap,
    body: Bytes,
    peer: SocketAddr,
}

impl Seen {
    /// Header names sorted, so the JSON is stable whatever serde_json's map flavour.
    fn headers_json(&self) -> Value {
        let sorted: BTreeMap<&str, String> = self
            .headers
            .keys()
            .map(|name| {
                let joined = self
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                (name.as_str(), joined)
            })
            .collect();
        Value::Object(
            sorted
                .into_iter()
                .map(|(k, v)| (k.to_string(), Value::String(v)))
                .collect::<Map<_, _>>(),
        )
    }

    /// The headers as httpbin shows them: names in canonical Title-Case
    /// (`X-Forwarded-Client-Cert`), as both httpbin implementations print
    /// them, so a check copied from an Istio task's `/headers` output matches.
    fn canonical_headers_json(&self) -> Value {
        match self.headers_json() {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (canonical_name(&k), v))
                    .collect::<Map<_, _>>(),
            ),
            other => other,
        }
    }

    fn args_json(&self) -> Value {
        let mut map = Map::new();
        for pair in self.query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(k.to_string(), Value::String(v.to_string()));
        }
        Value::Object(map)
    }

    fn describe(&self, echo: &Echo) -> Value {
        json!({
            "service": echo.config.service,
            "version": echo.config.version,
            "instance": echo.config.instance,
            "namespace": echo.config.namespace,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "host": self.host,
            "headers": self.headers_json(),
            "bodyLength": self.body.len(),
        })
    }

    fn httpbin_get(&self) -> Value {
        json!({
            "args": self.args_json(),
            "headers": self.headers_json(),
            "canonicalHeaders": self.canonical_headers_json(),
            "origin": self.peer.ip().to_string(),
            "url": format!("http://{}{}", self.host, self.path_and_query),
        })
    }
}

async fn answer(req: http::Request<Incoming>, echo: &Echo, peer: SocketAddr) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string());
    let host = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return finish(
                echo,
                None,
                plain(StatusCode::BAD_REQUEST, "unreadable body"),
            );
        }
    };
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        path_and_query,
        host,
        headers: parts.headers,
        body,
        peer,
    };
    let delay = echo.behaviour.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = if is_grpc(&seen.headers) {
        match echo.behaviour.grpc_status() {
            Some(code) => grpc_error(code),
            None => grpc(&seen),
        }
    } else {
        route(&seen, echo).await
    };
    if let Some(forced) = echo.behaviour.status()
        && let Ok(code) = StatusCode::from_u16(forced)
    {
        *resp.status_mut() = code;
    }
    finish(echo, Some(&seen), resp)
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

async fn route(seen: &Seen, echo: &Echo) -> Response<Body> {
    let segments: Vec<&str> = seen.path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["status", codes] => {
            // httpbin picks one at random from a comma-separated list.
            let choices: Vec<&str> = codes.split(',').collect();
            let pick = choices[fastrand::usize(..choices.len())];
            match pick
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(code) => json_response(code, &seen.describe(echo)),
                None => plain(StatusCode::BAD_REQUEST, "invalid status code"),
            }
        }
        ["delay", secs] => match secs.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => {
                tokio::time::sleep(Duration::from_secs_f64(s).min(MAX_DELAY)).await;
                json_response(StatusCode::OK, &seen.httpbin_get())
            }
            _ => plain(StatusCode::BAD_REQUEST, "invalid delay"),
        },
        ["headers"] => json_response(
            StatusCode::OK,
            &json!({
                "headers": seen.headers_json(),
                "canonicalHeaders": seen.canonical_headers_json(),
            }),
        ),
        ["get"] => json_response(StatusCode::OK, &seen.httpbin_get()),
        ["post"] if seen.method == "POST" => {
            let mut v = seen.httpbin_get();
            v["data"] = Value::String(String::from_utf8_lossy(&seen.body).into_owned());
            json_response(StatusCode::OK, &v)
        }
        ["post"] => plain(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
        ["bytes", n] => match n.parse::<usize>() {
            Ok(n) => {
                let bytes: Vec<u8> = (0..n.min(MAX_BYTES)).map(|_| fastrand::u8(..)).collect();
                let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                r
            }
            Err(_) => plain(StatusCode::BAD_REQUEST, "invalid byte count"),
        },
        ["ip"] => json_response(
            StatusCode::OK,
            &json!({"origin": seen.peer.ip().to_string()}),
        ),
        _ => json_response(StatusCode::OK, &seen.describe(echo)),
    }
}

/// A gRPC answer: the request's message frames echoed back (or one empty message), then
/// `grpc-status: 0` in the trailers, which is all a gRPC client needs to see success.
fn grpc(seen: &Seen) -> Response<Body> {
    let data = if seen.body.is_empty() {
        Bytes::from_static(&[0, 0, 0, 0, 0])
    } else {
        seen.body.clone()
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let frames = [Ok(Frame::data(data)), Ok(Frame::trailers(trailers))];
    let body = StreamBody::new(futures::stream::iter(frames)).boxed();
    let mut r = Response::new(body);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    r
}

/// A trailers-only gRPC answer carrying `code` (what servers send for an error with no message).
fn grpc_error(code: u32) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = status;
    r
}

/// Adds the `x-echo-*` identity headers that the runner reads.
fn finish(echo: &Echo, seen: Option<&Seen>, mut resp: Response<Body>) -> Response<Body> {
    let c = &echo.config;
    let mut pairs: Vec<(&'static str, String)> = vec![
        ("x-echo-service", c.service.clone()),
        ("x-echo-version", c.version.clone()),
        ("x-echo-instance", c.instance.clone()),
        ("x-echo-namespace", c.namespace.clone()),
    ];
    if let Some(seen) = seen {
        pairs.push(("x-echo-method", seen.method.clone()));
        pairs.push(("x-echo-path", seen.path_and_query.clone()));
        pairs.push(("x-echo-host", seen.host.clone()));
        if let Some(p) = peer_principal(&seen.headers) {
            pairs.push(("x-echo-peer-principal", p));
        }
    }
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// The SPIFFE URI of the caller from `x-forwarded-client-cert` (`...;URI=spiffe://...;...`).
pub(super) fn peer_principal(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all("x-forwarded-client-cert")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([';', ',']))
        .filter_map(|field| {
            let (k, v) = field.trim().split_once('=')?;
            k.eq_ignore_ascii_case("uri")
                .then(|| v.trim_matches('"').to_string())
        })
        .find(|uri| uri.starts_with("spiffe://"))
}

/// `x-b3-traceid` → `X-B3-Traceid`: each dash-separated word capitalized, the
/// rest lower-case (Go's canonical header key).
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        if upper {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        upper = c == '-';
    }
    out
}
