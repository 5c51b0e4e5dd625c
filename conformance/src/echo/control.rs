//! The echo's control listener: `POST /behave {"status": 503|null, "delayMs": n}` changes how the
//! application listener answers; `GET /behave` shows the current behaviour.
use super::Echo;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Body of `POST /behave`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BehaveRequest {
    /// Status to answer with; `null` = normal answers.
    #[serde(default)]
    pub status: Option<u16>,
    /// Delay before answering.
    #[serde(default)]
    pub delay_ms: u64,
    /// gRPC status to answer gRPC requests with (trailers-only); `null` = normal answers.
    #[serde(default)]
    pub grpc_status: Option<u32>,
}

/// Serves the control API forever.
pub(super) async fn serve(listener: TcpListener, echo: Arc<Echo>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let echo = echo.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let echo = echo.clone();
                async move { Ok::<_, Infallible>(handle(req, &echo).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(req: http::Request<hyper::body::Incoming>, echo: &Echo) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/behave" {
        return reply(StatusCode::NOT_FOUND, "only /behave".into());
    }
    let current = |echo: &Echo| {
        let b = BehaveRequest {
            status: echo.behaviour.status(),
            delay_ms: u64::try_from(echo.behaviour.delay().as_millis()).unwrap_or(u64::MAX),
            grpc_status: echo.behaviour.grpc_status(),
        };
        serde_json::to_string(&b).unwrap_or_default()
    };
    match *req.method() {
        Method::GET => reply(StatusCode::OK, current(echo)),
        Method::POST => {
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return reply(StatusCode::BAD_REQUEST, "unreadable body".into()),
            };
            match serde_json::from_slice::<BehaveRequest>(&body) {
                Ok(b) => {
                    echo.behaviour.set(b.status, b.delay_ms);
                    echo.behaviour.set_grpc_status(b.grpc_status);
                    reply(StatusCode::OK, current(echo))
                }
                Err(e) => reply(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        _ => reply(StatusCode::METHOD_NOT_ALLOWED, "GET or POST".into()),
    }
}
