//! Controller HTTP endpoints (`:15014`): `/metrics`, `/debug/syncz`,
//! `/debug/configz`, `/ready`.

use crate::index::MeshIndex;
use crate::metrics::ControllerMetrics;
use crate::sync::SyncRegistry;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// State the endpoints read.
#[derive(Clone)]
pub struct AdminState {
    /// Latest index.
    pub index: watch::Receiver<Arc<MeshIndex>>,
    /// Proxy sync state.
    pub registry: Arc<SyncRegistry>,
    /// Metrics.
    pub metrics: Arc<ControllerMetrics>,
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: AdminState) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(req, &state)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn handle(req: Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
    }
    match req.uri().path() {
        "/metrics" | "/stats/prometheus" => {
            state.metrics.revision.set(state.index.borrow().revision);
            let mut r = text(StatusCode::OK, state.metrics.encode());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/debug/syncz" => {
            let revision = state.index.borrow().revision;
            let mut view = state.registry.view(revision);
            view.pending = state.metrics.config_pending.get() != 0;
            json(&view)
        }
        "/debug/configz" => {
            let index = state.index.borrow().clone();
            let accepted: Vec<String> = index.resources.keys().map(|k| k.to_string()).collect();
            json(&serde_json::json!({
                "revision": index.revision,
                "accepted": accepted,
                "rejected": index.rejected,
            }))
        }
        "/ready" | "/healthz/ready" => text(StatusCode::OK, "ready\n".into()),
        _ => text(
            StatusCode::NOT_FOUND,
            "endpoints: /metrics /debug/syncz /debug/configz /ready\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

fn json<T: serde::Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}
