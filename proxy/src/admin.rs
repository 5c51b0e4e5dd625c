//! Operator endpoints: admin (:15000 `/config_dump`, `/debug/route`,
//! `/quitquitquit`, `/ready`), readiness (:15021) and Prometheus (:15090).

pub mod debug_route;

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{self, Body};
use crate::http_util::local_reply;
use crate::listener;
use crate::state::Shared;

/// Which endpoints a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    Admin,
    Health,
    Stats,
}

/// Runs one operator listener until shutdown.
pub async fn run(
    shared: Arc<Shared>,
    listener: TcpListener,
    surface: Surface,
    quit: Arc<watch::Sender<bool>>,
) {
    let metrics = Arc::clone(&shared.metrics);
    let shutdown = shared.shutdown.clone();
    let probes = Arc::new(if surface == Surface::Health {
        crate::app_probe::AppProbes::from_env()
    } else {
        crate::app_probe::AppProbes::default()
    });
    let name = match surface {
        Surface::Admin => "admin",
        Surface::Health => "health",
        Surface::Stats => "stats",
    };
    listener::accept_loop(listener, name, metrics, shutdown, move |stream, _peer| {
        let shared = Arc::clone(&shared);
        let quit = Arc::clone(&quit);
        let probes = Arc::clone(&probes);
        async move {
            let shutdown = shared.shutdown.clone();
            listener::serve_http(stream, shutdown, move |req| {
                let shared = Arc::clone(&shared);
                let quit = Arc::clone(&quit);
                let probes = Arc::clone(&probes);
                async move {
                    let path = req.uri().path();
                    if surface == Surface::Health && path.starts_with(crate::app_probe::PREFIX) {
                        let app_ip = shared.settings.app_ip;
                        if let Some(resp) = probes.answer(path, app_ip).await {
                            let labels = crate::metrics::AppProbeLabels {
                                path: path.to_owned(),
                                code: resp.status().as_u16(),
                            };
                            shared.metrics.app_probes.get_or_create(&labels).inc();
                            return resp;
                        }
                    }
                    route(&shared, surface, &quit, req)
                }
            })
            .await;
        }
    })
    .await;
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    let mut resp = Response::new(body::full(text + "\n"));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn ready(shared: &Shared) -> Response<Body> {
    // With a certificate source configured, serving before the first
    // certificate would talk plaintext to peers that require mTLS (Envoy
    // likewise waits for its SDS secrets before it is ready).
    let wants_certificate =
        shared.settings.ca.is_some() || shared.settings.credentials_dir.is_some();
    if wants_certificate && !shared.tls.has_credentials() {
        return local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no workload certificate yet",
        );
    }
    match shared.current() {
        Some(r) => local_reply(
            StatusCode::OK,
            &format!("ready: config version {}", r.version),
        ),
        None => local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no config received yet",
        ),
    }
}

fn route(
    shared: &Shared,
    surface: Surface,
    quit: &watch::Sender<bool>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path();
    match (surface, req.method(), path) {
        (Surface::Health, _, "/healthz/ready") | (Surface::Admin, _, "/ready") => ready(shared),
        (Surface::Stats, _, "/stats/prometheus") | (Surface::Admin, _, "/stats/prometheus") => {
            let mut resp = Response::new(body::full(shared.metrics.encode()));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        (Surface::Admin, _, "/config_dump") => match shared.current() {
            Some(running) => match serde_json::to_value(&*running) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => local_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot encode config: {e}"),
                ),
            },
            None => json(
                StatusCode::OK,
                &serde_json::json!({"version": null, "config": null}),
            ),
        },
        (Surface::Admin, _, "/debug/route") => {
            let Some(running) = shared.current() else {
                return local_reply(StatusCode::SERVICE_UNAVAILABLE, "no config received yet");
            };
            match debug_route::Described::parse(req.uri().query().unwrap_or("")) {
                Ok(d) => json(StatusCode::OK, &debug_route::explain(&running, &d)),
                Err(e) => local_reply(StatusCode::BAD_REQUEST, &e),
            }
        }
        (Surface::Admin, &Method::POST, "/quitquitquit") => {
            tracing::info!("shutdown requested through /quitquitquit");
            quit.send_replace(true);
            local_reply(StatusCode::OK, "OK")
        }
        (Surface::Admin, _, "/quitquitquit") => {
            local_reply(StatusCode::METHOD_NOT_ALLOWED, "use POST")
        }
        _ => local_reply(StatusCode::NOT_FOUND, "not found"),
    }
}
