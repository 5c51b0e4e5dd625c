//! Kubelet probes of the application. Injection rewrites each HTTP probe of
//! an app container to `:15021/app-health/<container>/<livez|readyz|startupz>`
//! and records the original in `SLUICE_APP_PROBES` (JSON: path → the probe's
//! `httpGet`, optional `timeoutSeconds`). The proxy answers those paths by
//! sending the original probe to the app over plaintext on the pod's own
//! address, so kubelet probes keep working when the app's ports require mTLS
//! (Istio's `rewriteAppHTTPProbers`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::body::Body;
use crate::http_util::local_reply;

/// The environment variable injection fills.
pub const ENV: &str = "SLUICE_APP_PROBES";
/// Path prefix of rewritten probes on the health port.
pub const PREFIX: &str = "/app-health/";

/// Why the recorded probes cannot be used; names the probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{ENV}: not JSON of path → probe: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{ENV}: {path}: {reason}")]
    Probe { path: String, reason: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedProbe {
    http_get: RecordedHttpGet,
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordedHttpGet {
    #[serde(default)]
    path: Option<String>,
    port: serde_json::Value,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    http_headers: Vec<RecordedHeader>,
}

#[derive(Deserialize)]
struct RecordedHeader {
    name: String,
    value: String,
}

/// One probe, ready to send.
#[derive(Debug)]
struct Probe {
    path: String,
    port: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

/// The app's probes by rewritten path.
#[derive(Debug, Default)]
pub struct AppProbes {
    by_path: HashMap<String, Probe>,
}

impl AppProbes {
    /// Reads [`ENV`]; absent = no probes. A bad value is logged and ignored
    /// (the probes then answer 404, which kubelet reports).
    pub fn from_env() -> Self {
        match std::env::var(ENV) {
            Ok(text) if !text.trim().is_empty() => Self::parse(&text).unwrap_or_else(|e| {
                tracing::warn!("{e}");
                AppProbes::default()
            }),
            _ => AppProbes::default(),
        }
    }

    /// Parses the recorded probes.
    pub fn parse(text: &str) -> Result<Self, ProbeError> {
        let recorded: HashMap<String, RecordedProbe> = serde_json::from_str(text)?;
        let mut by_path = HashMap::new();
        for (path, p) in recorded {
            let bad = |reason: String| ProbeError::Probe {
                path: path.clone(),
                reason,
            };
            if !path.starts_with(PREFIX) {
                return Err(bad(format!("must start with {PREFIX}")));
            }
            let port = match &p.http_get.port {
                serde_json::Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("port {n} is not a port number")))?,
                other => {
                    return Err(bad(format!(
                        "port {other} must be a number (injection resolves named ports)"
                    )));
                }
            };
            if p.http_get
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
            {
                return Err(bad("only HTTP probes are forwarded".to_owned()));
            }
            let mut headers = Vec::new();
            for h in &p.http_get.http_headers {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| bad(format!("bad header name {:?}", h.name)))?;
                let value = HeaderValue::from_str(&h.value)
                    .map_err(|_| bad(format!("bad value for header {:?}", h.name)))?;
                headers.push((name, value));
            }
            let target = p.http_get.path.clone().unwrap_or_else(|| "/".to_owned());
            by_path.insert(
                path.clone(),
                Probe {
                    path: if target.starts_with('/') {
                        target
                    } else {
                        format!("/{target}")
                    },
                    port,
                    headers,
                    // Kubelet's default timeout is 1 s.
                    timeout: Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1)),
                },
            );
        }
        Ok(AppProbes { by_path })
    }

    /// Answers a rewritten probe by asking the app at `app_ip`; `None` when
    /// `path` is not a recorded probe.
    pub async fn answer(&self, path: &str, app_ip: IpAddr) -> Option<Response<Body>> {
        let probe = self.by_path.get(path)?;
        let addr = SocketAddr::new(app_ip, probe.port);
        let outcome = tokio::time::timeout(probe.timeout, send(addr, probe)).await;
        Some(match outcome {
            Ok(Ok(status)) => {
                let mut resp = local_reply(status, &format!("app answered {}", status.as_u16()));
                *resp.status_mut() = status;
                resp
            }
            Ok(Err(e)) => local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("app probe {addr}{}: {e}", probe.path),
            ),
            Err(_) => local_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("app probe {addr}{}: timed out", probe.path),
            ),
        })
    }
}

async fn send(addr: SocketAddr, probe: &Probe) -> Result<StatusCode, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::get(probe.path.as_str())
        .header(http::header::HOST, addr.to_string())
        .header(http::header::USER_AGENT, "kube-probe (via sluice-proxy)")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    for (name, value) in &probe.headers {
        req.headers_mut().insert(name.clone(), value.clone());
    }
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // Drain the body so the app sees a complete exchange.
    let _ = resp.into_body().collect().await;
    Ok(status)
}

#[cfg(test)]
mod tests;
