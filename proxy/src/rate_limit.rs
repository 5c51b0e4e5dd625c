//! Inbound local rate limits: which requests a limit covers (ports, route
//! matches, callers), sampling (`enabled`/`enforced` shares) and the token
//! bucket each request draws from (one shared, or one per caller).

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::matching::RequestView;
use crate::model::{RouteMatch, Text};
use crate::token_bucket::{Decision, TokenBucket};

/// Per-caller buckets kept per limit; past this the oldest-looking one goes.
const MAX_CALLER_BUCKETS: usize = 10_000;

/// Which callers a limit applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Callers {
    /// Every caller, one bucket for all.
    Shared,
    /// Every caller, each its own bucket.
    Each,
    /// Only these principals (without `spiffe://`), each its own bucket.
    Listed(Vec<String>),
}

/// Which inbound check a limit runs before, in the order a request meets them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Stage {
    /// Before JWT authentication and authorization.
    BeforeAuthentication,
    /// After JWT authentication, before authorization.
    BeforeAuthorization,
    /// After authorization (refused requests never reach it).
    #[default]
    AfterAuthorization,
}

/// What adding a header does when the message has it already (Envoy's
/// `append_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderAction {
    /// Add a value after those present, or the header.
    AppendIfExistsOrAdd,
    /// Add the header only when absent.
    AddIfAbsent,
    /// Replace the values present, or add the header.
    OverwriteIfExistsOrAdd,
    /// Replace the values present; nothing when absent.
    OverwriteIfExists,
}

/// A header a limit adds to a refusal or to a request it let through unenforced.
#[derive(Clone, Debug, Serialize)]
pub struct HeaderToAdd {
    #[serde(serialize_with = "ser_name")]
    pub name: http::HeaderName,
    #[serde(serialize_with = "ser_value")]
    pub value: http::HeaderValue,
    pub append: HeaderAction,
}

impl HeaderToAdd {
    /// Adds the header to `headers` as its `append` says.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        let present = headers.contains_key(&self.name);
        match self.append {
            HeaderAction::AppendIfExistsOrAdd => {
                headers.append(self.name.clone(), self.value.clone());
            }
            HeaderAction::AddIfAbsent if !present => {
                headers.insert(self.name.clone(), self.value.clone());
            }
            HeaderAction::OverwriteIfExistsOrAdd => {
                headers.insert(self.name.clone(), self.value.clone());
            }
            HeaderAction::OverwriteIfExists if present => {
                headers.insert(self.name.clone(), self.value.clone());
            }
            HeaderAction::AddIfAbsent | HeaderAction::OverwriteIfExists => {}
        }
    }
}

/// One token-bucket limit on the inbound.
#[derive(Debug, Serialize)]
pub struct RateLimit {
    pub name: Text,
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    pub fill_interval_ms: u64,
    pub matches: Vec<RouteMatch>,
    pub enabled_percent: f64,
    pub enforced_percent: f64,
    pub callers: Callers,
    pub ports: Vec<u16>,
    /// Whether answers carry `x-ratelimit-*` (`RateLimitPolicy` always;
    /// an EnvoyFilter's limit only with `enable_x_ratelimit_headers`).
    pub x_ratelimit_headers: bool,
    /// Where among the inbound checks it runs.
    pub stage: Stage,
    /// Status of refusals (429 unless an EnvoyFilter's `status` says otherwise).
    #[serde(serialize_with = "ser_status")]
    pub status: http::StatusCode,
    /// Added to refusals (`response_headers_to_add`).
    pub response_headers: Vec<HeaderToAdd>,
    /// Added to requests the bucket would refuse but that enforcement
    /// sampled out (`request_headers_to_add_when_not_enforced`).
    pub request_headers_when_not_enforced: Vec<HeaderToAdd>,
    /// Application ports it never covers (a per-route config replaces it there).
    pub except_ports: Vec<u16>,
    #[serde(skip)]
    shared: Arc<TokenBucket>,
    #[serde(skip)]
    per_caller: Arc<Mutex<HashMap<String, Arc<TokenBucket>>>>,
}

/// What a limit decided for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed(Decision),
    /// Refused: answer 429.
    Limited(Decision),
    /// The bucket was empty but enforcement sampled this request out.
    Shadow(Decision),
}

impl Verdict {
    /// The metric label of the decision.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Allowed(_) => "allowed",
            Verdict::Limited(_) => "limited",
            Verdict::Shadow(_) => "shadow",
        }
    }

    /// The bucket state behind the decision.
    pub fn decision(&self) -> Decision {
        match *self {
            Verdict::Allowed(d) | Verdict::Limited(d) | Verdict::Shadow(d) => d,
        }
    }
}

fn ser_name<S: serde::Serializer>(n: &http::HeaderName, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(n.as_str())
}

fn ser_value<S: serde::Serializer>(v: &http::HeaderValue, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(v.as_bytes()))
}

fn ser_status<S: serde::Serializer>(v: &http::StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(v.as_u16())
}

fn bare(principal: &str) -> &str {
    principal.strip_prefix("spiffe://").unwrap_or(principal)
}

fn sampled(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && fastrand::f64() * 100.0 < percent)
}

impl RateLimit {
    /// A limit with full buckets.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Text,
        max_tokens: u32,
        tokens_per_fill: u32,
        fill_interval_ms: u64,
        matches: Vec<RouteMatch>,
        enabled_percent: f64,
        enforced_percent: f64,
        callers: Callers,
        ports: Vec<u16>,
    ) -> Self {
        let shared = Arc::new(TokenBucket::new(
            max_tokens,
            tokens_per_fill,
            Duration::from_millis(fill_interval_ms),
        ));
        RateLimit {
            name,
            max_tokens,
            tokens_per_fill,
            fill_interval_ms,
            matches,
            enabled_percent,
            enforced_percent,
            callers,
            ports,
            x_ratelimit_headers: true,
            stage: Stage::default(),
            status: http::StatusCode::TOO_MANY_REQUESTS,
            response_headers: Vec::new(),
            request_headers_when_not_enforced: Vec::new(),
            except_ports: Vec::new(),
            shared,
            per_caller: Arc::default(),
        }
    }

    fn same_bucket_shape(&self, other: &RateLimit) -> bool {
        self.name == other.name
            && self.max_tokens == other.max_tokens
            && self.tokens_per_fill == other.tokens_per_fill
            && self.fill_interval_ms == other.fill_interval_ms
            && self.callers == other.callers
            && self.ports == other.ports
            && self.except_ports == other.except_ports
    }

    /// Keeps `prev`'s buckets when this is the same limit, so a config push
    /// does not hand out a fresh burst.
    pub fn inherit(&mut self, prev: &RateLimit) {
        if self.same_bucket_shape(prev) {
            self.shared = Arc::clone(&prev.shared);
            self.per_caller = Arc::clone(&prev.per_caller);
        }
    }

    /// Whether the limit covers a request to application `port` from `principal`.
    pub fn covers(&self, port: Option<u16>, req: &RequestView<'_>, principal: &str) -> bool {
        if !self.ports.is_empty() && !port.is_some_and(|p| self.ports.contains(&p)) {
            return false;
        }
        if port.is_some_and(|p| self.except_ports.contains(&p)) {
            return false;
        }
        if let Callers::Listed(list) = &self.callers
            && !list.iter().any(|p| p == bare(principal))
        {
            return false;
        }
        self.matches.is_empty() || self.matches.iter().any(|m| m.check(req).is_ok())
    }

    fn bucket(&self, principal: &str) -> Arc<TokenBucket> {
        if self.callers == Callers::Shared {
            return Arc::clone(&self.shared);
        }
        let key = bare(principal);
        let mut map = self.per_caller.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(key) {
            return Arc::clone(b);
        }
        if map.len() >= MAX_CALLER_BUCKETS
            && let Some(victim) = map.keys().next().cloned()
        {
            map.remove(&victim);
        }
        let b = Arc::new(TokenBucket::new(
            self.max_tokens,
            self.tokens_per_fill,
            Duration::from_millis(self.fill_interval_ms),
        ));
        map.insert(key.to_owned(), Arc::clone(&b));
        b
    }

    /// Draws from the caller's bucket; `None` when this request is sampled out.
    pub fn check(&self, principal: &str) -> Option<Verdict> {
        if !sampled(self.enabled_percent) {
            return None;
        }
        let d = self.bucket(principal).acquire();
        Some(if d.allowed {
            Verdict::Allowed(d)
        } else if sampled(self.enforced_percent) {
            Verdict::Limited(d)
        } else {
            Verdict::Shadow(d)
        })
    }

    /// `x-ratelimit-*` headers for `d`, as Envoy's local rate limit sends
    /// them: the bucket size, the tokens left, and seconds until the next fill.
    pub fn headers(&self, d: Decision, headers: &mut http::HeaderMap) {
        if !self.x_ratelimit_headers {
            return;
        }
        let limit = self.max_tokens.to_string();
        let reset = d.reset.as_millis().div_ceil(1000) as u64;
        let pairs = [
            ("x-ratelimit-limit", limit),
            ("x-ratelimit-remaining", d.remaining.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
        ];
        for (name, value) in pairs {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
}

/// What the inbound does with a request after its rate limits.
pub enum Gate<'a> {
    /// Forward it; the first covering limit's state goes into response headers.
    Pass(Option<(&'a RateLimit, Decision)>),
    /// Answer 429.
    Refuse(&'a RateLimit, Decision),
}

/// Runs the limits of `stage` in order for a request to application `port`
/// from `principal`.
#[cfg(test)]
pub fn gate<'a>(
    limits: &'a [RateLimit],
    stage: Stage,
    port: Option<u16>,
    req: &RequestView<'_>,
    principal: &str,
    metrics: &crate::metrics::ResilienceMetrics,
) -> Gate<'a> {
    gate_noting(
        limits,
        stage,
        port,
        req,
        principal,
        metrics,
        &mut Vec::new(),
    )
}

/// [`gate`], also noting in `unenforced` the limits whose bucket was empty
/// but that let the request through (enforcement sampled it out).
pub fn gate_noting<'a>(
    limits: &'a [RateLimit],
    stage: Stage,
    port: Option<u16>,
    req: &RequestView<'_>,
    principal: &str,
    metrics: &crate::metrics::ResilienceMetrics,
    unenforced: &mut Vec<&'a RateLimit>,
) -> Gate<'a> {
    let mut shown = None;
    for limit in limits {
        if limit.stage != stage || !limit.covers(port, req, principal) {
            continue;
        }
        let Some(verdict) = limit.check(principal) else {
            continue;
        };
        metrics.rate_limit(&limit.name, verdict.label());
        match verdict {
            Verdict::Limited(d) => return Gate::Refuse(limit, d),
            Verdict::Shadow(_) if !limit.request_headers_when_not_enforced.is_empty() => {
                unenforced.push(limit);
            }
            Verdict::Shadow(_) | Verdict::Allowed(_) => {}
        }
        shown.get_or_insert((limit, verdict.decision()));
    }
    Gate::Pass(shown)
}

/// Envoy's local rate limit answer: `local_rate_limited`, 429 or the
/// limit's status, with the `x-ratelimit-*` headers when asked for and the
/// limit's `response_headers_to_add`.
pub fn refused(limit: &RateLimit, d: Decision) -> http::Response<crate::body::Body> {
    let mut resp = http::Response::new(crate::body::full("local_rate_limited"));
    *resp.status_mut() = limit.status;
    resp.extensions_mut()
        .insert(crate::report::LocalMessage(std::sync::Arc::from(
            "local_rate_limited",
        )));
    limit.headers(d, resp.headers_mut());
    // Envoy marks every answer its rate limiters refused.
    resp.headers_mut().insert(
        "x-envoy-ratelimited",
        http::HeaderValue::from_static("true"),
    );
    for h in &limit.response_headers {
        h.apply(resp.headers_mut());
    }
    resp
}
