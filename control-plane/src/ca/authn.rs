//! Who is asking for a certificate: bootstrap tokens (both modes) and, in
//! Kubernetes mode, projected ServiceAccount tokens checked with the API
//! server's TokenReview, as istiod does.
//!
//! Reviews that succeeded are cached briefly, keyed by a SHA-256 of the
//! token, so a fleet of proxies renewing at once costs the API server one
//! review per token per minute, and the token itself is never kept.

use super::{BootstrapTokens, InvalidToken};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Bootstrap tokens start with this; anything else is a Kubernetes token.
const BOOTSTRAP_PREFIX: &str = "sluice-v1.";
/// How long a successful review is trusted without asking again.
pub const REVIEW_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most reviews kept; beyond it, expired ones go first, then all.
pub const REVIEW_CACHE_CAPACITY: usize = 10_000;
/// Longest wait for the API server's answer.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Username prefix of ServiceAccount tokens.
const SA_USER_PREFIX: &str = "system:serviceaccount:";

/// Why a token proves no identity.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// A bootstrap token that does not verify.
    #[error(transparent)]
    Bootstrap(#[from] InvalidToken),
    /// Local mode only accepts bootstrap tokens.
    #[error("not a bootstrap token (Kubernetes token review is off in local mode)")]
    NotBootstrap,
    /// The API server did not authenticate the token.
    #[error("token review rejected the token: {0}")]
    Rejected(String),
    /// The token is valid but not for any of our audiences.
    #[error("token audiences {got:?} do not include any of {want:?}")]
    WrongAudience {
        /// Audiences the API server reported.
        got: Vec<String>,
        /// Audiences the controller accepts.
        want: Vec<String>,
    },
    /// The token belongs to a user, not a ServiceAccount.
    #[error("token user {0:?} is not a ServiceAccount (system:serviceaccount:NS:SA)")]
    NotServiceAccount(String),
    /// The API server could not be asked; the caller should retry.
    #[error("token review unavailable: {0}")]
    Unavailable(String),
}

impl AuthnError {
    /// Whether the caller should retry later rather than fix its token.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthnError::Unavailable(_))
    }
}

/// Checks bearer tokens; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    bootstrap: Arc<BootstrapTokens>,
    kubernetes: Option<Arc<TokenReviewer>>,
}

impl Authenticator {
    /// Bootstrap tokens only (local mode).
    pub fn bootstrap(tokens: Arc<BootstrapTokens>) -> Self {
        Self {
            bootstrap: tokens,
            kubernetes: None,
        }
    }

    /// Also accepts ServiceAccount tokens for `audiences`, reviewed by `client`'s API server.
    pub fn with_token_review(mut self, client: kube::Client, audiences: Vec<String>) -> Self {
        self.kubernetes = Some(Arc::new(TokenReviewer::new(client, audiences)));
        self
    }

    /// The (namespace, service account) `token` proves.
    pub async fn authenticate(&self, token: &str) -> Result<(String, String), AuthnError> {
        let token = token.trim();
        if token.starts_with(BOOTSTRAP_PREFIX) {
            return Ok(self.bootstrap.verify(token)?);
        }
        match &self.kubernetes {
            Some(reviewer) => reviewer.review(token).await,
            None => Err(AuthnError::NotBootstrap),
        }
    }
}

/// The token of an `authorization: Bearer <token>` header (certificate
/// requests and config streams); the error says what the caller got wrong.
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Result<&str, &'static str> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing authorization: Bearer <token>")?;
    header
        .strip_prefix("Bearer ")
        .ok_or("authorization must be `Bearer <token>`")
}

/// Asks the API server about ServiceAccount tokens.
pub struct TokenReviewer {
    client: kube::Client,
    audiences: Vec<String>,
    cache: ReviewCache,
}

impl TokenReviewer {
    /// A reviewer accepting tokens for any of `audiences`.
    pub fn new(client: kube::Client, audiences: Vec<String>) -> Self {
        Self {
            client,
            audiences,
            cache: ReviewCache::new(REVIEW_CACHE_TTL, REVIEW_CACHE_CAPACITY),
        }
    }

    async fn review(&self, token: &str) -> Result<(String, String), AuthnError> {
        let key = ReviewCache::key(token);
        if let Some(hit) = self.cache.get(&key, Instant::now()) {
            return Ok(hit);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(self.audiences.clone()),
            },
            ..Default::default()
        };
        let api = kube::Api::<TokenReview>::all(self.client.clone());
        let answer = tokio::time::timeout(
            REVIEW_TIMEOUT,
            api.create(&kube::api::PostParams::default(), &review),
        )
        .await
        .map_err(|_| AuthnError::Unavailable(format!("no answer in {REVIEW_TIMEOUT:?}")))?
        .map_err(|e| {
            // kube errors describe the request and the server's reply, never the body we sent.
            tracing::warn!("token review failed: {e}");
            AuthnError::Unavailable(e.to_string())
        })?;
        let status = answer.status.unwrap_or_default();
        let who = identity_from_status(&status, &self.audiences)?;
        self.cache.insert(key, who.clone(), Instant::now());
        Ok(who)
    }
}

/// The identity an API server's review grants, if it is for us.
pub fn identity_from_status(
    status: &TokenReviewStatus,
    audiences: &[String],
) -> Result<(String, String), AuthnError> {
    if status.authenticated != Some(true) {
        return Err(AuthnError::Rejected(
            status
                .error
                .clone()
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "not authenticated".to_owned()),
        ));
    }
    let got = status.audiences.clone().unwrap_or_default();
    if !got.iter().any(|a| audiences.contains(a)) {
        return Err(AuthnError::WrongAudience {
            got,
            want: audiences.to_vec(),
        });
    }
    let username = status
        .user
        .as_ref()
        .and_then(|u| u.username.as_deref())
        .unwrap_or_default();
    parse_service_account(username)
        .ok_or_else(|| AuthnError::NotServiceAccount(username.to_owned()))
}

/// `system:serviceaccount:<ns>:<sa>` → (ns, sa); names are non-empty and
/// free of `:` and `/`, so they cannot bend the SPIFFE path.
pub fn parse_service_account(username: &str) -> Option<(String, String)> {
    let rest = username.strip_prefix(SA_USER_PREFIX)?;
    let (ns, sa) = rest.split_once(':')?;
    let ok = |s: &str| !s.is_empty() && !s.contains([':', '/']);
    (ok(ns) && ok(sa)).then(|| (ns.to_owned(), sa.to_owned()))
}

/// When a cached review expires, and the (namespace, service account) it gave.
type CacheEntry = (Instant, (String, String));

/// Recent successful reviews, by SHA-256 of the token.
pub struct ReviewCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<[u8; 32], CacheEntry>>,
}

impl ReviewCache {
    /// A cache keeping entries `ttl` long, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cache key of `token`.
    pub fn key(token: &str) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    /// The identity cached for `key`, if still fresh at `now`.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<(String, String)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(expires, _)| now < *expires)
            .map(|(_, who)| who.clone())
    }

    /// Remembers `who` for `key` from `now` on.
    pub fn insert(&self, key: [u8; 32], who: (String, String), now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (expires, _)| now < *expires);
            // Still full of fresh entries: a burst of distinct tokens; start
            // over rather than grow without bound (misses only cost a review).
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (now + self.ttl, who));
    }

    /// Entries held, fresh or not.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
