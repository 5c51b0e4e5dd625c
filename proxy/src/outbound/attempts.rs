//! The upstream exchange of a forwarded request: endpoint choice (skipping
//! ejected and, when asked, already tried endpoints), circuit breaking,
//! per-try and route timeouts, retries with backoff and budgets, outlier
//! bookkeeping.

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http::request::Parts;
use http::{Request, Response, StatusCode};
use tokio::time::Instant;

use crate::balance::{Choice, HashInput, pick_endpoint};
use crate::body::{self, Body, Replay};
use crate::circuit::{Admission, Held};
use crate::http_util::{BadTarget, UpstreamTarget};
use crate::metrics::RetryOutcome;
use crate::model::{Cluster, PoolSettings, RetryPolicy};
use crate::outlier::Outcome;
use crate::report::InFlight;
use crate::retry::{self, Failure};
use crate::state::Shared;
use crate::tls::Alpn;
use crate::upstream::{ConnSettings, Target, UpstreamError};

/// Where the request body of each attempt comes from.
pub(super) enum Source {
    /// Sent at most once (no retry policy, or nothing to replay).
    Once(Option<Body>),
    /// Kept for retries up to `body::REPLAY_CAP`.
    Replay(Replay),
}

impl Source {
    fn take(&mut self) -> Option<Body> {
        match self {
            Source::Once(b) => b.take(),
            Source::Replay(r) => r.replayable().then(|| r.reader()),
        }
    }
}

/// One forwarded request's upstream exchange.
pub(super) struct Exchange<'a> {
    pub shared: &'a Arc<Shared>,
    pub cluster: &'a Cluster,
    pub policy: Option<&'a RetryPolicy>,
    /// The request after rewrites and header ops, not yet shaped for a protocol.
    pub parts: Parts,
    /// Where every attempt goes (checked once; a bad one fails each attempt).
    pub target: Result<UpstreamTarget, BadTarget>,
    pub hash: HashKeys,
    /// The `Upgrade` value of a WebSocket upgrade request: every attempt
    /// goes over HTTP/1.1 on a connection of its own, with the upgrade asked.
    pub upgrade: Option<http::HeaderValue>,
    /// When the route timeout ends the exchange, if the route has one: it
    /// covers every attempt and backoff, until response headers.
    pub deadline: Option<Instant>,
    /// Where the latest attempt went, for the request's metrics.
    pub picked: &'a Picked,
}

/// The endpoint the latest attempt of an exchange went to, and whether it
/// has a mesh mTLS connection to it; readable after the exchange was dropped
/// (route timeout, or the caller went away).
#[derive(Debug)]
pub(super) struct Picked(AtomicUsize);

impl Picked {
    /// Nothing picked; else `(index + 1) << 2 | connected << 1 | mesh mTLS`.
    const NONE: usize = 0;
    const CONNECTED: usize = 0b10;

    pub(super) fn new() -> Self {
        Picked(AtomicUsize::new(Self::NONE))
    }

    /// An attempt picked `endpoint`, not connected yet.
    fn set(&self, endpoint: usize, mesh_tls: bool) {
        let packed = endpoint.saturating_add(1) << 2 | usize::from(mesh_tls);
        self.0.store(packed, Ordering::Relaxed);
    }

    /// The latest attempt has its connection (Envoy's "pool ready").
    fn connected(&self) {
        self.0.fetch_or(Self::CONNECTED, Ordering::Relaxed);
    }

    /// The endpoint's index in its cluster and whether the attempt has a
    /// mesh mTLS connection to it (the connection's principals are known),
    /// if an attempt picked one.
    pub(super) fn get(&self) -> Option<(usize, bool)> {
        let packed = self.0.load(Ordering::Relaxed);
        let mtls = packed & 1 == 1 && packed & Self::CONNECTED != 0;
        (packed != Self::NONE).then(|| ((packed >> 2) - 1, mtls))
    }
}

/// What hashing load balancers look at, owned.
pub(super) struct HashKeys {
    pub headers: http::HeaderMap,
    pub source_ip: std::net::IpAddr,
    pub query: Option<String>,
}

impl HashKeys {
    /// Copies only what `lb` hashes on: cloning every request's header map for
    /// the default (least-request) balancer was a per-request cost for nothing.
    pub(super) fn of<B>(
        req: &Request<B>,
        source_ip: std::net::IpAddr,
        lb: &crate::model::LoadBalancer,
    ) -> Self {
        use crate::model::LoadBalancer as Lb;
        let headers = match lb {
            Lb::HashHeader(_) | Lb::HashCookie { .. } => req.headers().clone(),
            _ => http::HeaderMap::new(),
        };
        let query = match lb {
            Lb::HashQueryParameter(_) => req.uri().query().map(str::to_owned),
            _ => None,
        };
        HashKeys {
            headers,
            source_ip,
            query,
        }
    }
}

/// Lives as long as the response: in-flight count, pool admission, retry unit.
pub(super) struct Hold {
    _in_flight: InFlight,
    _admission: Admission,
    _retry: Option<Held>,
}

impl Hold {
    /// Gives back the retry unit and keeps the rest: an upgraded connection
    /// stays a request in flight for hours, a retry ends with its answer.
    pub(super) fn without_retry(mut self) -> Self {
        self._retry = None;
        self
    }
}

/// How the exchange ended.
pub(super) enum Ending {
    /// The upstream answered (possibly after retries).
    Answer {
        resp: Response<Body>,
        endpoint: usize,
        hold: Hold,
        set_cookie: Option<String>,
        exhausted: bool,
    },
    /// No answer: connect failure, reset or per-try timeout.
    Failed {
        failure: Failure,
        message: String,
        endpoint: usize,
        exhausted: bool,
    },
    /// The route timeout passed before response headers (504 `UT`).
    RouteTimeout,
    /// A pool limit overflowed (503 `UO`).
    Overflow,
    /// No endpoint to send to (503 `UH`).
    NoHealthy,
    /// The request could not be built for this endpoint.
    Bad(String),
}

enum Attempt {
    Answer(Response<Body>, Hold),
    Failed(Failure, String),
    /// Cut by the route timeout.
    RouteTimeout,
}

/// Which timeout ends an attempt first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    PerTry,
    Route,
}

/// The first of the per-try end and the route deadline, and which it is
/// (the route's on a tie: no retry could follow anyway).
fn first_cut(per_try_end: Option<Instant>, deadline: Option<Instant>) -> Option<(Instant, Cut)> {
    match (per_try_end, deadline) {
        (Some(p), Some(d)) if p < d => Some((p, Cut::PerTry)),
        (_, Some(d)) => Some((d, Cut::Route)),
        (Some(p), None) => Some((p, Cut::PerTry)),
        (None, None) => None,
    }
}

fn ms(v: u64) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v))
}

/// The connection settings of a cluster's pool.
fn conn_settings(p: &PoolSettings) -> ConnSettings {
    ConnSettings {
        connect_timeout: ms(p.connect_timeout_ms),
        max_requests_per_connection: p.max_requests_per_connection,
        idle_timeout: ms(p.idle_timeout_ms),
        max_connection_duration: ms(p.max_connection_duration_ms),
        keepalive: p.tcp_keepalive.map(|(probes, time, interval)| {
            (
                probes,
                Duration::from_millis(time),
                Duration::from_millis(interval),
            )
        }),
    }
}

fn clone_parts(p: &Parts) -> Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = p.method.clone();
    parts.uri = p.uri.clone();
    parts.version = p.version;
    parts.headers = p.headers.clone();
    parts
}

fn classify(e: &UpstreamError) -> Failure {
    if e.is_connect_failure() {
        return Failure::Connect;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>()
            && h2.reason() == Some(h2::Reason::REFUSED_STREAM)
        {
            return Failure::RefusedStream;
        }
        source = err.source();
    }
    Failure::Reset
}

fn grpc_status(resp: &Response<Body>) -> Option<u8> {
    resp.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl Exchange<'_> {
    fn retry_on(&self) -> Option<&crate::retry::RetryOn> {
        self.policy.map(|p| &p.on)
    }

    /// Picks an endpoint, steering away from ejected ones and (for retries that
    /// ask for it) from ones already tried, when any other is left.
    fn choose(&self, tried: &[usize]) -> Option<Choice> {
        let cluster = self.cluster;
        let now = Instant::now();
        let mut ejecting = false;
        if let Some(detector) = &cluster.outlier {
            for ep in &cluster.endpoints {
                if ep.health.return_if_due(now) {
                    self.shared.metrics.resilience.returned(&cluster.name);
                }
            }
            let pool = cluster.endpoints.iter().map(|e| &*e.health);
            ejecting = !detector.panicking(pool, now);
        }
        let input = HashInput {
            headers: &self.hash.headers,
            source_ip: self.hash.source_ip,
            query: self.hash.query.as_deref(),
        };
        let first = pick_endpoint(cluster, &input)?;
        let avoid_tried = self.policy.is_some_and(|p| p.retry_ignore_previous_hosts);
        let ejected = |i: usize| {
            ejecting
                && cluster
                    .endpoints
                    .get(i)
                    .is_some_and(|e| e.health.is_ejected_at(now))
        };
        let fresh = |i: &usize| !(avoid_tried && tried.contains(i));
        if !ejected(first.index) && fresh(&first.index) {
            return Some(first);
        }
        let healthy: Vec<usize> = (0..cluster.endpoints.len())
            .filter(|i| !ejected(*i))
            .collect();
        let untried: Vec<usize> = healthy.iter().copied().filter(fresh).collect();
        let pool = if untried.is_empty() { healthy } else { untried };
        if pool.is_empty() {
            return None;
        }
        // The less loaded of two candidates (drawn by weight), as
        // least-request does.
        Some(Choice {
            index: crate::balance::least_request_among(cluster, &pool),
            set_cookie: first.set_cookie,
        })
    }

    fn record(&self, endpoint: usize, outcome: Outcome) {
        let cluster = self.cluster;
        let (Some(detector), Some(ep)) = (&cluster.outlier, cluster.endpoints.get(endpoint)) else {
            return;
        };
        let pool = cluster.endpoints.iter().map(|e| &*e.health);
        if detector.record(&ep.health, outcome, pool, Instant::now()) {
            tracing::info!(cluster = %cluster.name, endpoint = %SocketAddr::new(ep.address, ep.port), "outlier ejected");
            self.shared.metrics.resilience.ejected(&cluster.name);
        }
    }

    async fn attempt(
        &self,
        endpoint: usize,
        body: Body,
        admission: Admission,
        retry_unit: Option<Held>,
    ) -> Result<Attempt, String> {
        let cluster = self.cluster;
        let ep = cluster
            .endpoints
            .get(endpoint)
            .ok_or_else(|| "endpoint vanished".to_owned())?;
        let has_credentials = self.shared.tls.has_credentials();
        // The cluster's protocol rules decide, peer sidecars included (their
        // inbound takes either); TLS origination offers only HTTP/1.1, and
        // an upgrade is carried only by HTTP/1.1.
        let upgrade = self.upgrade.as_ref();
        let h2 = upgrade.is_none() && cluster.upstream_h2(self.parts.version);
        let target = Target::endpoint(cluster, ep, has_credentials, Alpn::for_http(h2));
        self.picked.set(endpoint, target.is_mesh_tls());
        let h2 = h2 && !target.forces_h1();
        let mut parts = clone_parts(&self.parts);
        if !ep.sidecar {
            // Set once on the request for peer sidecars (adding it here would
            // grow every attempt's copy of the header map); others get none.
            parts.headers.remove(crate::source_meta::SOURCE_META);
        }
        let upstream = self.target.as_ref().map_err(ToString::to_string)?;
        upstream.shape(&mut parts, h2).map_err(|e| e.to_string())?;
        if let Some(protocol) = upgrade {
            crate::upgrade::restore(&mut parts.headers, protocol.clone());
        }
        let req = Request::from_parts(parts, body);
        let in_flight = InFlight::start(&ep.in_flight);
        let pools = &self.shared.pools;
        let settings = conn_settings(&cluster.pool);
        // Envoy's router knows the attempt's host from "pool ready" on: only
        // then does a timeout count against the endpoint (a request still
        // waiting for a connection is the pool's, not the endpoint's).
        let connected = AtomicBool::new(false);
        let on_connected = || {
            connected.store(true, Ordering::Relaxed);
            self.picked.connected();
            self.record(endpoint, Outcome::Connected);
        };
        let send = async {
            if h2 {
                let resp = pools
                    .send_h2_with(target, req, &settings, &on_connected)
                    .await;
                resp.map(|r| r.map(body::boxed))
            } else if upgrade.is_some() {
                pools
                    .send_upgrade(target, req, &settings, &on_connected)
                    .await
            } else {
                pools
                    .send_h1_with(target, req, &settings, &on_connected)
                    .await
            }
        };
        let per_try = self.policy.map_or(0, |p| p.per_try_timeout_ms);
        let per_try_end = (per_try > 0).then(|| Instant::now() + Duration::from_millis(per_try));
        let result = match first_cut(per_try_end, self.deadline) {
            Some((at, cut)) => match tokio::time::timeout_at(at, send).await {
                Ok(r) => r,
                Err(_) => {
                    // A connect the timeout cut short counts as failed, as
                    // Envoy's pool records a connect that never completes.
                    let outcome = if connected.load(Ordering::Relaxed) {
                        Outcome::Timeout
                    } else {
                        Outcome::ConnectFailed
                    };
                    self.record(endpoint, outcome);
                    return Ok(match cut {
                        Cut::Route => Attempt::RouteTimeout,
                        Cut::PerTry => {
                            let msg = "upstream per-try timeout".to_owned();
                            Attempt::Failed(Failure::PerTryTimeout, msg)
                        }
                    });
                }
            },
            None => send.await,
        };
        Ok(match result {
            Ok(resp) => {
                self.record(endpoint, Outcome::Status(resp.status().as_u16()));
                let hold = Hold {
                    _in_flight: in_flight,
                    _admission: admission,
                    _retry: retry_unit,
                };
                Attempt::Answer(resp, hold)
            }
            Err(e) => {
                tracing::debug!(error = %e, "upstream request failed");
                self.record(endpoint, Outcome::ConnectFailed);
                Attempt::Failed(classify(&e), format!("sluice-proxy: {e}"))
            }
        })
    }

    /// Whether the attempt's result is one the policy retries.
    fn retriable(&self, attempt: &Attempt) -> bool {
        let Some(on) = self.retry_on() else {
            return false;
        };
        match attempt {
            Attempt::Answer(resp, _) => {
                on.retries_status(resp.status().as_u16(), grpc_status(resp))
            }
            Attempt::Failed(f, _) => on.retries_failure(*f),
            Attempt::RouteTimeout => false,
        }
    }

    /// Whether one more retry may go out; counts why not.
    fn may_retry(&self, retries: u32, source: &Source) -> Result<Held, RetryOutcome> {
        let Some(policy) = self.policy else {
            return Err(RetryOutcome::Exhausted);
        };
        if retries >= policy.attempts {
            return Err(RetryOutcome::Exhausted);
        }
        let replayable = match source {
            Source::Replay(r) => r.replayable(),
            Source::Once(_) => false,
        };
        if !replayable {
            return Err(RetryOutcome::Failure);
        }
        let m = &self.shared.metrics.resilience;
        let unit = self.cluster.circuit.try_retry().map_err(|o| {
            m.overflow(&self.cluster.name, o.kind());
            RetryOutcome::Failure
        })?;
        if let Some(budget) = &policy.budget
            && !budget.try_retry()
        {
            m.budget_exhausted(&self.cluster.name);
            return Err(RetryOutcome::Failure);
        }
        Ok(unit)
    }

    /// `fut`'s output, or `None` when the route deadline passes first.
    async fn before_deadline<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        match self.deadline {
            Some(at) => tokio::time::timeout_at(at, fut).await.ok(),
            None => Some(fut.await),
        }
    }

    /// Runs attempts, with request bodies from `source`, until one is not
    /// retried or the route deadline passes.
    pub(super) async fn run(self, mut source: Source) -> Ending {
        if let Some(budget) = self.policy.and_then(|p| p.budget.as_ref()) {
            budget.record_request();
        }
        let metrics = &self.shared.metrics.resilience;
        // Counts the request as retried even when the route timeout (or the
        // caller going away) ends it between attempts.
        let mut record = RetryRecord {
            metrics,
            cluster: &self.cluster.name,
            retried: false,
        };
        let mut tried: Vec<usize> = Vec::new();
        let mut retries = 0u32;
        let mut retry_unit = None;
        loop {
            let Some(choice) = self.choose(&tried) else {
                return Ending::NoHealthy;
            };
            // Before admission: a pool overflow, as Envoy's, has a host.
            self.picked.set(choice.index, false);
            // Waiting for a connection slot: no endpoint has the request yet.
            let admission = match self.before_deadline(self.cluster.circuit.admit()).await {
                None => return Ending::RouteTimeout,
                Some(Ok(a)) => a,
                Some(Err(o)) => {
                    metrics.overflow(&self.cluster.name, o.kind());
                    record.finish(RetryOutcome::Failure);
                    return Ending::Overflow;
                }
            };
            let Some(body) = source.take() else {
                return Ending::Bad("request body can no longer be sent".to_owned());
            };
            let endpoint = choice.index;
            tried.push(endpoint);
            let attempt = match self
                .attempt(endpoint, body, admission, retry_unit.take())
                .await
            {
                Ok(Attempt::RouteTimeout) => return Ending::RouteTimeout,
                Ok(a) => a,
                Err(msg) => return Ending::Bad(msg),
            };
            let verdict = if self.retriable(&attempt) {
                self.may_retry(retries, &source)
            } else {
                Err(RetryOutcome::Success)
            };
            match verdict {
                Ok(unit) => {
                    drop(attempt);
                    retries += 1;
                    record.retried = true;
                    retry_unit = Some(unit);
                    let base = self.policy.map_or(0, |p| p.backoff_base_ms);
                    let wait = retry::backoff(Duration::from_millis(base), retries);
                    if self
                        .before_deadline(tokio::time::sleep(wait))
                        .await
                        .is_none()
                    {
                        return Ending::RouteTimeout;
                    }
                }
                Err(outcome) => {
                    record.finish(outcome);
                    let exhausted = retries > 0 && outcome == RetryOutcome::Exhausted;
                    return match attempt {
                        Attempt::Answer(resp, hold) => Ending::Answer {
                            resp,
                            endpoint,
                            hold,
                            set_cookie: choice.set_cookie,
                            exhausted,
                        },
                        Attempt::Failed(failure, message) => Ending::Failed {
                            failure,
                            message,
                            endpoint,
                            exhausted,
                        },
                        Attempt::RouteTimeout => Ending::RouteTimeout,
                    };
                }
            }
        }
    }
}

/// Counts a retried request once, however its exchange ends.
struct RetryRecord<'a> {
    metrics: &'a crate::metrics::ResilienceMetrics,
    cluster: &'a str,
    retried: bool,
}

impl RetryRecord<'_> {
    fn finish(&mut self, outcome: RetryOutcome) {
        if std::mem::take(&mut self.retried) {
            self.metrics.retried(self.cluster, outcome);
        }
    }
}

impl Drop for RetryRecord<'_> {
    fn drop(&mut self) {
        // Ended mid-way: the route timeout stopped the retries.
        self.finish(RetryOutcome::Failure);
    }
}

/// The overload reply (Envoy's circuit-breaker answer).
pub(super) fn overloaded() -> Response<Body> {
    let mut resp = crate::http_util::local_reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow",
    );
    resp.headers_mut().insert(
        http::HeaderName::from_static("x-envoy-overloaded"),
        http::HeaderValue::from_static("true"),
    );
    resp
}
