//! Key sets of RequestAuthentication rules, fetched by the controller (as
//! istiod does by default) so proxies receive them inline and never reach out
//! themselves. A rule names its keys inline (`jwks`), by URL (`jwksUri`), or
//! not at all: then the issuer's OpenID discovery document says where they are.
//!
//! Each wanted source has one task: it fetches at once, then every 20 minutes;
//! after a failure it retries after 1 s, doubling up to a minute. A source
//! that has never been fetched has no keys, and proxies refuse the tokens of
//! its issuer (Istio's behaviour); a later failure keeps the last keys.
//! Every change of what is known wakes the config source, which publishes a
//! new revision.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};

use crate::metrics::{ControllerMetrics, OutcomeLabels};

/// istiod's default refresh period.
const REFRESH: Duration = Duration::from_secs(20 * 60);
/// First retry after a failure; doubles up to `MAX_RETRY`.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Default fetch timeout (a rule's `timeout` overrides it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest document read.
const MAX_BODY: usize = 1 << 20;

/// Where a rule's keys come from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// `jwksUri`.
    Uri(String),
    /// `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery(String),
}

/// What is known about one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    /// The key set document.
    Fetched(Arc<str>),
    /// Never fetched: why (still pending, or the last error).
    Unavailable(String),
}

/// Every wanted source's keys at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Changes whenever any entry does.
    pub version: u64,
    pub keys: Arc<BTreeMap<Source, Keys>>,
}

impl Snapshot {
    /// The keys of `source`; unavailable when it is not (yet) wanted.
    pub fn get(&self, source: &Source) -> Keys {
        self.keys
            .get(source)
            .cloned()
            .unwrap_or_else(|| Keys::Unavailable("key set not fetched yet".into()))
    }
}

struct Entry {
    timeout: Duration,
    task: Option<tokio::task::AbortHandle>,
}

struct Inner {
    entries: BTreeMap<Source, Entry>,
    snapshot: Snapshot,
    /// Keys of sources no longer wanted, with when they were fetched: a
    /// policy deleted and made again gets them back at once.
    retired: BTreeMap<Source, (Arc<str>, std::time::Instant)>,
}

/// Shared between the config source (which says what is wanted and reads
/// snapshots) and the fetch tasks.
pub struct JwksStore {
    inner: Mutex<Inner>,
    changed: tokio::sync::watch::Sender<u64>,
    metrics: Option<Arc<ControllerMetrics>>,
}

impl std::fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStore").finish_non_exhaustive()
    }
}

impl JwksStore {
    /// A store with nothing wanted.
    pub fn new(metrics: Option<Arc<ControllerMetrics>>) -> Arc<Self> {
        Arc::new(JwksStore {
            inner: Mutex::new(Inner {
                entries: BTreeMap::new(),
                snapshot: Snapshot::default(),
                retired: BTreeMap::new(),
            }),
            changed: tokio::sync::watch::channel(0).0,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes when a fetch changed what is known.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// What is known now.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    /// Declares the sources in use (with their fetch timeouts): new ones get
    /// a fetch task (when a runtime is there to run it), others are dropped.
    pub fn want(self: &Arc<Self>, wanted: BTreeMap<Source, Duration>) {
        let mut inner = self.lock();
        let gone: Vec<Source> = inner
            .entries
            .keys()
            .filter(|s| !wanted.contains_key(*s))
            .cloned()
            .collect();
        let mut keys = (*inner.snapshot.keys).clone();
        let mut dropped = false;
        for s in gone {
            if let Some(task) = inner.entries.remove(&s).and_then(|e| e.task) {
                task.abort();
            }
            if let Some(Keys::Fetched(doc)) = keys.remove(&s) {
                inner.retired.insert(s, (doc, std::time::Instant::now()));
            }
            dropped = true;
        }
        inner.retired.retain(|_, (_, at)| at.elapsed() < REFRESH);
        let runtime = tokio::runtime::Handle::try_current().ok();
        for (source, timeout) in wanted {
            if !inner.entries.contains_key(&source)
                && let Some((doc, _)) = inner.retired.remove(&source)
            {
                keys.insert(source.clone(), Keys::Fetched(doc));
                dropped = true;
            }
            let entry = inner.entries.entry(source.clone()).or_insert(Entry {
                timeout,
                task: None,
            });
            let restart = entry.timeout != timeout;
            entry.timeout = timeout;
            if entry.task.is_some() && !restart {
                continue;
            }
            if let Some(task) = entry.task.take() {
                task.abort();
            }
            if let Some(rt) = &runtime {
                let store = Arc::downgrade(self);
                let handle = rt.spawn(refresh(store, source.clone(), timeout));
                entry.task = Some(handle.abort_handle());
            }
        }
        if dropped {
            inner.snapshot = Snapshot {
                version: inner.snapshot.version + 1,
                keys: Arc::new(keys),
            };
        }
        self.count_unavailable(&inner);
    }

    fn count_unavailable(&self, inner: &Inner) {
        if let Some(m) = &self.metrics {
            let fetched = inner
                .entries
                .keys()
                .filter(|s| matches!(inner.snapshot.keys.get(*s), Some(Keys::Fetched(_))))
                .count();
            m.jwks_unavailable
                .set((inner.entries.len() - fetched) as i64);
        }
    }

    /// Records a fetch; wakes the config source when something changed. A
    /// failure after a success keeps the fetched keys.
    fn record(&self, source: &Source, result: Result<Arc<str>, String>) {
        if let Some(m) = &self.metrics {
            let outcome = if result.is_ok() { "success" } else { "failure" };
            m.jwks_fetches
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
        }
        let mut inner = self.lock();
        if !inner.entries.contains_key(source) {
            return;
        }
        let next = match (result, inner.snapshot.keys.get(source)) {
            (Ok(doc), _) => Keys::Fetched(doc),
            // A failed refresh keeps the keys; a failure after a failure
            // changes nothing the proxies act on (no new revision for it).
            (Err(_), Some(Keys::Fetched(_) | Keys::Unavailable(_))) => return,
            (Err(e), None) => Keys::Unavailable(e),
        };
        if inner.snapshot.keys.get(source) == Some(&next) {
            return;
        }
        let mut keys = (*inner.snapshot.keys).clone();
        keys.insert(source.clone(), next);
        inner.snapshot = Snapshot {
            version: inner.snapshot.version + 1,
            keys: Arc::new(keys),
        };
        self.count_unavailable(&inner);
        let version = inner.snapshot.version;
        drop(inner);
        self.changed.send_replace(version);
    }
}

impl Drop for JwksStore {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        for task in inner.entries.values().filter_map(|e| e.task.as_ref()) {
            task.abort();
        }
    }
}

impl JwksStore {
    /// Waits until every wanted source has been tried once, at most the
    /// longest fetch timeout (plus a second); returns whether any is wanted.
    /// The first revision then carries keys instead of refusing every token.
    pub async fn first_fetches(&self) -> bool {
        let mut rx = self.subscribe();
        let limit = {
            let inner = self.lock();
            if inner.entries.is_empty() {
                return false;
            }
            inner
                .entries
                .values()
                .map(|e| e.timeout)
                .max()
                .unwrap_or(DEFAULT_TIMEOUT)
        };
        let all_tried = || {
            let inner = self.lock();
            inner
                .entries
                .keys()
                .all(|s| inner.snapshot.keys.contains_key(s))
        };
        let wait = async {
            while !all_tried() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(limit + Duration::from_secs(1), wait).await;
        true
    }
}

/// Fetches `source` now and then, for as long as it is wanted (and the store
/// is there).
async fn refresh(store: std::sync::Weak<JwksStore>, source: Source, timeout: Duration) {
    let client = client();
    let mut retry = FIRST_RETRY;
    loop {
        let result = fetch_with(&client, &source, timeout).await;
        let wait = match &result {
            Ok(_) => {
                retry = FIRST_RETRY;
                REFRESH
            }
            Err(e) => {
                tracing::warn!(source = ?source, error = %e, "fetching a RequestAuthentication key set failed");
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        let Some(live) = store.upgrade() else { return };
        live.record(&source, result.map(Arc::from));
        drop(live);
        tokio::time::sleep(wait).await;
    }
}

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// An HTTP(S) client trusting the system's CA certificates. Without any
/// (a minimal image), `http` URLs still work and `https` ones fail to verify.
fn client() -> Client {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let https = match builder
        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
    {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(e) => {
            tracing::warn!(error = %e, "no system CA certificates: https jwksUri fetches will fail");
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .build()
        }
    };
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

async fn get(client: &Client, uri: &str, timeout: Duration) -> Result<String, String> {
    let parsed: http::Uri = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
    let request = http::Request::get(parsed)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| format!("{uri}: {e}"))?;
    let work = async {
        let resp = client
            .request(request)
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{uri}: HTTP status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("{uri}: reading the body: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| format!("{uri}: body is not UTF-8"))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("{uri}: no answer within {timeout:?}"))?
}

/// The key set document of `source`, checked to be one.
pub async fn fetch(source: &Source, timeout: Duration) -> Result<String, String> {
    fetch_with(&client(), source, timeout).await
}

async fn fetch_with(client: &Client, source: &Source, timeout: Duration) -> Result<String, String> {
    let uri = match source {
        Source::Uri(u) => u.clone(),
        Source::Discovery(issuer) => {
            let at = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let doc = get(client, &at, timeout).await?;
            let value: serde_json::Value =
                serde_json::from_str(&doc).map_err(|e| format!("{at}: not JSON: {e}"))?;
            value
                .get("jwks_uri")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| format!("{at}: no `jwks_uri`"))?
                .to_owned()
        }
    };
    crate::validation::security::jwks_uri(&uri)?;
    let doc = get(client, &uri, timeout).await?;
    crate::validation::security::jwks_set(&doc).map_err(|e| format!("{uri}: {e}"))?;
    Ok(doc)
}

/// The sources `rules` need (inline key sets need none), with their timeouts.
pub fn sources_of<'a>(
    rules: impl Iterator<Item = &'a crate::crd::request_authentication::JwtRule>,
) -> BTreeMap<Source, Duration> {
    let mut out = BTreeMap::new();
    for r in rules {
        let Some(source) = source_of(r) else { continue };
        let timeout = r
            .timeout
            .as_deref()
            .and_then(|t| crate::validation::parse_duration(t).ok())
            .unwrap_or(DEFAULT_TIMEOUT);
        // Several rules, one source: the longest timeout.
        let slot = out.entry(source).or_insert(timeout);
        *slot = (*slot).max(timeout);
    }
    out
}

/// Where a rule's keys come from; `None` when they are inline.
pub fn source_of(r: &crate::crd::request_authentication::JwtRule) -> Option<Source> {
    if r.jwks.as_deref().is_some_and(|j| !j.is_empty()) {
        return None;
    }
    match r.jwks_uri.as_deref().filter(|u| !u.is_empty()) {
        Some(uri) => Some(Source::Uri(uri.to_owned())),
        None => Some(Source::Discovery(r.issuer.clone())),
    }
}

/// Resolves when the key sets changed; never without a store.
pub async fn changed(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match rx {
        Some(r) => {
            if r.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
