//! "Which route would this request take": the sample request, answered by the
//! sidecar's own `/debug/route` code on the translated config, and by a live
//! sidecar's admin port, with the differences between the two.

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde_json::Value;
use sluice_api::config as pb;
use sluice_proxy::admin::debug_route::{self, Described};
use std::fmt::Write as _;
use std::net::SocketAddr;

/// Why a sample request cannot be described or answered.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request text or flags do not describe a request.
    #[error("sample request: {0}")]
    Invalid(String),
    /// The translated config is not one the proxy accepts.
    #[error("the proxy would refuse this config: {0}")]
    Refused(String),
    /// The sidecar's admin port did not answer as expected.
    #[error("sidecar admin {addr}: {why}")]
    Admin {
        /// Admin address.
        addr: SocketAddr,
        /// What went wrong.
        why: String,
    },
}

/// A request to explain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SampleRequest {
    /// Method.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Host and port as sent.
    pub authority: String,
    /// Path.
    pub path: String,
    /// Query, without `?`.
    pub query: Option<String>,
    /// Headers, `name: value`.
    pub headers: Vec<(String, String)>,
}

fn invalid(why: impl Into<String>) -> RequestError {
    RequestError::Invalid(why.into())
}

fn header(text: &str) -> Result<(String, String), RequestError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| invalid(format!("header {text:?} is not name:value")))?;
    let name = name.trim().to_ascii_lowercase();
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(format!("bad header name {name:?}")))?;
    Ok((name, value.trim().to_owned()))
}

/// A standard method in any case, or an all-uppercase token (an extension
/// method); anything else is taken for the URL, so a bare `reviews` is a host.
fn is_method(w: &str) -> bool {
    const KNOWN: &[&str] = &[
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.iter().any(|k| k.eq_ignore_ascii_case(w))
        || (!w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase()))
}

impl SampleRequest {
    /// From `--request 'GET http://host:port/path -H k:v'`, or `--url`,
    /// `--method` and `-H` (which add to or override the request text).
    pub fn from_flags(
        request: Option<&str>,
        url: Option<&str>,
        method: Option<&str>,
        headers: &[String],
    ) -> Result<Option<Self>, RequestError> {
        if request.is_none() && url.is_none() {
            if method.is_some() || !headers.is_empty() {
                return Err(invalid("--method and -H need --url or --request"));
            }
            return Ok(None);
        }
        let (mut m, mut u, mut hs) = (None, None, Vec::new());
        let mut words = request.unwrap_or_default().split_whitespace();
        while let Some(w) = words.next() {
            match w {
                "-H" | "--header" => {
                    let h = words.next().ok_or_else(|| invalid("-H needs name:value"))?;
                    hs.push(header(h)?);
                }
                _ if m.is_none() && u.is_none() && is_method(w) => {
                    m = Some(w.to_ascii_uppercase());
                }
                _ if u.is_none() => u = Some(w.to_owned()),
                _ => return Err(invalid(format!("unexpected {w:?} in --request"))),
            }
        }
        for h in headers {
            hs.push(header(h)?);
        }
        let url = url
            .map(str::to_owned)
            .or(u)
            .ok_or_else(|| invalid("no URL in --request"))?;
        let url = if url.contains("://") {
            url
        } else {
            format!("http://{url}")
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| invalid(format!("URL {url:?}: {e}")))?;
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(|| invalid(format!("URL {url:?} has no host")))?;
        Ok(Some(Self {
            method: method
                .map(str::to_ascii_uppercase)
                .or(m)
                .unwrap_or_else(|| "GET".into()),
            scheme: uri.scheme_str().unwrap_or("http").to_owned(),
            authority,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: hs,
        }))
    }

    /// One line, curl-like.
    pub fn line(&self) -> String {
        let mut out = format!(
            "{} {}://{}{}",
            self.method, self.scheme, self.authority, self.path
        );
        if let Some(q) = &self.query {
            let _ = write!(out, "?{q}");
        }
        for (k, v) in &self.headers {
            let _ = write!(out, " -H {k}:{v}");
        }
        out
    }

    fn described(&self) -> Result<Described, RequestError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| invalid(format!("bad header name {k:?}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| invalid(format!("bad value for header {k}")))?;
            headers.append(name, value);
        }
        Ok(Described {
            authority: self.authority.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            method: self.method.clone(),
            scheme: self.scheme.clone(),
            headers,
        })
    }

    /// The `/debug/route` query string describing this request.
    pub fn admin_query(&self) -> String {
        let mut q = format!(
            "host={}&method={}&scheme={}&path={}",
            encode(&self.authority),
            encode(&self.method),
            encode(&self.scheme),
            encode(&self.path)
        );
        if let Some(query) = &self.query {
            let _ = write!(q, "&query={}", encode(query));
        }
        for (k, v) in &self.headers {
            let _ = write!(q, "&header={}", encode(&format!("{k}:{v}")));
        }
        q
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What the sidecar with `config` would do with `request`, exactly as its
/// `/debug/route` explains it (the same code).
pub fn simulate(
    config: pb::ProxyConfig,
    version: &str,
    request: &SampleRequest,
) -> Result<Value, RequestError> {
    let snapshot = pb::Snapshot {
        version: version.to_owned(),
        config: Some(config),
        delta: None,
    };
    debug_route::explain_snapshot(&snapshot, &request.described()?).map_err(RequestError::Refused)
}

/// Asks a live sidecar's admin port.
pub async fn ask_sidecar(
    admin: SocketAddr,
    request: &SampleRequest,
) -> Result<Value, RequestError> {
    let path = format!("/debug/route?{}", request.admin_query());
    let err = |why: String| RequestError::Admin { addr: admin, why };
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sluice_conformance::client::http_get(admin, &path),
    )
    .await
    .map_err(|_| err("no answer within 5 s".into()))?
    .map_err(|e| err(format!("cannot reach it ({e})")))?;
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    if resp.status != 200 {
        return Err(err(format!("answered {}: {}", resp.status, body.trim())));
    }
    serde_json::from_str(&body).map_err(|e| err(format!("answer is not JSON: {e}")))
}

/// Where two explanations differ, as `path: simulated != live` lines; the
/// config versions are expected to differ and are left out.
pub fn differences(simulated: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", simulated, live, &mut out);
    out.retain(|d| !d.starts_with("config_version"));
    out
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 10 {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff(
                    &join(k),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ if a != b => out.push(format!("{path}: simulated {a} != sidecar {b}")),
        _ => {}
    }
}

/// One line saying where the request goes, from an explanation.
pub fn summary(explained: &Value) -> String {
    if let Some(result) = explained.get("result").and_then(Value::as_str) {
        return result.to_owned();
    }
    let vhost = explained["virtual_host"]["name"].as_str().unwrap_or("?");
    let route = &explained["route"];
    let mut out = format!(
        "virtual host {vhost}, route {} ({}), {}",
        route["index"],
        route["route"].as_str().unwrap_or("?"),
        route["matched_by"].as_str().unwrap_or("?")
    );
    let action = &explained["action"];
    if let Some(forward) = action.get("forward") {
        let dests: Vec<String> = forward["destinations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let eps: Vec<String> = d["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| e["address"].as_str().unwrap_or("?").to_owned())
                    .collect();
                let problem = d["problem"]
                    .as_str()
                    .map(|p| format!(" [{p}]"))
                    .unwrap_or_default();
                format!(
                    "{} {}% -> [{}]{problem}",
                    d["cluster"].as_str().unwrap_or("?"),
                    d["share_percent"],
                    eps.join(", ")
                )
            })
            .collect();
        let _ = write!(out, " => {}", dests.join("; "));
    } else if let Some(d) = action.get("direct_response") {
        let _ = write!(out, " => direct response {}", d["status"]);
    } else if let Some(r) = action.get("redirect") {
        let _ = write!(out, " => redirect {} {}", r["status"], r["location"]);
    }
    out
}
