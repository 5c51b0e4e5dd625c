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
pub fn gate<'a>(
    limits: &'a [RateLimit],
    stage: Stage,
    port: Option<u16>,
    req: &RequestView<'_>,
    principal: &str,
    metrics: &crate::metrics::ResilienceMetrics,
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
        if let Verdict::Limited(d) = verdict {
            return Gate::Refuse(limit, d);
        }
        shown.get_or_insert((limit, verdict.decision()));
    }
    Gate::Pass(shown)
}

/// Envoy's local rate limit answer: 429 `local_rate_limited` with the headers.
pub fn refused(limit: &RateLimit, d: Decision) -> http::Response<crate::body::Body> {
    let mut resp = http::Response::new(crate::body::full("local_rate_limited"));
    *resp.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
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
    resp
}
