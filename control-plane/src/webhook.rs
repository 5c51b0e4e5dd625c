//! Admission webhooks (`admission.k8s.io/v1`), served over HTTPS with a
//! certificate from the mesh CA: `POST /validate` refuses Istio and Sluice
//! objects that `sluicectl analyze` would report, `POST /inject` adds the
//! sidecar to pods in opted-in namespaces.

pub mod ca_bundle;
pub mod mutate;
pub mod review;
pub mod tls;
pub mod validate;

#[cfg(test)]
mod tests;

use crate::ca::CertificateAuthority;
use crate::inject::InjectConfig;
use crate::metrics::ControllerMetrics;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::encoding::EncodeLabelSet;
use review::{AdmissionResponse, parse_review, review_body};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest request body read; the API server's own limit for an object is
/// about 1.5 MiB, and a review can carry it twice (object, oldObject).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// Longest TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the webhooks could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The serving certificate or TLS settings.
    #[error("webhook TLS: {0}")]
    Tls(String),
}

/// How one request ended, as counted by `sluice_webhook_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Let through (possibly patched).
    Allowed,
    /// Refused: the object is invalid or cannot be injected.
    Denied,
    /// The review could not be read or answered.
    Error,
}

impl Outcome {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// Label set of `sluice_webhook_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `validate` or `inject`.
    pub webhook: &'static str,
    /// `allowed`, `denied` or `error`.
    pub outcome: &'static str,
}

/// What the handlers read.
#[derive(Clone)]
pub struct Webhooks {
    /// Namespace labels; `None` outside a cluster (every namespace unlabelled).
    pub namespaces: Option<mutate::Namespaces>,
    /// Settings of injected sidecars.
    pub inject: Arc<InjectConfig>,
    /// Where requests are counted.
    pub metrics: Arc<ControllerMetrics>,
}

/// Everything [`start`] needs besides the cluster.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Names in the serving certificate.
    pub names: tls::Names,
    /// ValidatingWebhookConfiguration to keep `caBundle` in (empty: none).
    pub validating_config: String,
    /// MutatingWebhookConfiguration to keep `caBundle` in (empty: none).
    pub mutating_config: String,
    /// Settings of injected sidecars.
    pub inject: InjectConfig,
}

/// Serves the webhooks on `listener` and keeps the webhook configurations'
/// `caBundle` and the serving certificate current, all in background tasks.
pub fn start(
    listener: TcpListener,
    client: kube::Client,
    ca: Arc<CertificateAuthority>,
    metrics: Arc<ControllerMetrics>,
    options: WebhookOptions,
) -> Result<(), WebhookError> {
    let (cert, renew_in) = tls::ServingCert::issue(&ca, &options.names)?;
    let tls = cert.server_config()?;
    ca_bundle::spawn(
        client.clone(),
        options.validating_config,
        options.mutating_config,
        ca_bundle::bundle_of(ca.roots()),
    );
    tokio::spawn(cert.renew_forever(ca, options.names, renew_in));
    let hooks = Webhooks {
        namespaces: Some(mutate::Namespaces::watch(client)),
        inject: Arc::new(options.inject),
        metrics,
    };
    tokio::spawn(serve(listener, tls, hooks));
    Ok(())
}

/// Accepts TLS connections on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, hooks: Webhooks) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!("webhook accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let hooks = hooks.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!("webhook TLS handshake: {e}");
                        return;
                    }
                    Err(_) => return,
                };
            let svc = service_fn(move |req| {
                let hooks = hooks.clone();
                async move { Ok::<_, Infallible>(handle(req, &hooks).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, hooks: &Webhooks) -> Response<Full<Bytes>> {
    let webhook = match req.uri().path() {
        "/validate" => "validate",
        "/inject" => "inject",
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "endpoints: POST /validate, POST /inject\n",
            );
        }
    };
    if req.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only POST\n");
    }
    let count = |outcome: Outcome| {
        hooks
            .metrics
            .webhook_requests
            .get_or_create(&WebhookLabels {
                webhook,
                outcome: outcome.as_str(),
            })
            .inc();
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            count(Outcome::Error);
            return if e.is::<http_body_util::LengthLimitError>() {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request body larger than {MAX_BODY} bytes\n"),
                )
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request: {e}\n"),
                )
            };
        }
    };
    let (api_version, request) = match parse_review(&body) {
        Ok(r) => r,
        Err(e) => {
            count(Outcome::Error);
            tracing::warn!(%webhook, "{e}");
            return text(StatusCode::BAD_REQUEST, &format!("{e}\n"));
        }
    };
    let response = match webhook {
        "validate" => validate::review(&request),
        _ => {
            let labels = match &hooks.namespaces {
                None => Ok(Default::default()),
                Some(ns) => ns.labels(request.namespace_or_default()).await,
            };
            match labels {
                Ok(labels) => mutate::review(&request, &labels, &hooks.inject),
                Err(e) => AdmissionResponse::deny(
                    &request.uid,
                    500,
                    format!(
                        "reading the labels of namespace {}: {e}",
                        request.namespace_or_default()
                    ),
                ),
            }
        }
    };
    let outcome = response.outcome();
    count(outcome);
    if outcome != Outcome::Allowed {
        let message = response
            .status
            .as_ref()
            .map(|s| s.message.as_str())
            .unwrap_or("");
        tracing::info!(%webhook, kind = %request.kind.kind, namespace = ?request.namespace, name = ?request.name, "denied: {message}");
    }
    match serde_json::to_vec(&review_body(&api_version, &response)) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r
}
