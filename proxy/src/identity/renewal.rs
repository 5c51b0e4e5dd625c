//! Keeps a certificate from the certificate service: first request at start,
//! renewal at half-life with a new key, jittered backoff after failures.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use super::ca_client::CaClient;
use super::{Credentials, publish, unix_seconds};
use crate::config::{CaSettings, Settings};
use crate::metrics::Metrics;

/// First retry delay; doubled per consecutive failure.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Share of the lifetime by which renewal may come early, so proxies that
/// started together do not all renew in the same instant.
const RENEW_JITTER: f64 = 0.05;
/// Floor of the renewal delay, against busy loops on absurdly short lifetimes.
const RENEW_MIN: Duration = Duration::from_millis(500);

/// Requests and renews certificates until shutdown.
pub(super) async fn run(
    settings: Settings,
    ca: CaSettings,
    tx: watch::Sender<Option<Arc<Credentials>>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match CaClient::new(&ca, settings.identity.principal()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!("no workload certificate: {e}");
            let _ = shutdown.wait_for(|quit| *quit).await;
            return;
        }
    };
    let mut failures: u32 = 0;
    loop {
        let roots: Vec<CertificateDer<'static>> = tx
            .borrow()
            .as_ref()
            .map(|current| current.roots.clone())
            .unwrap_or_default();
        let outcome = tokio::select! {
            outcome = client.request(&roots) => outcome,
            _ = shutdown.wait_for(|quit| *quit) => return,
        };
        let wait = match outcome {
            Ok(credentials) => {
                failures = 0;
                metrics.security.certificate_request("success");
                let wait = renew_after(
                    credentials.not_before,
                    credentials.not_after,
                    SystemTime::now(),
                    fastrand::f64(),
                );
                tracing::info!(
                    identity = %credentials.spiffe_id,
                    not_after = unix_seconds(credentials.not_after),
                    roots = credentials.roots.len(),
                    renew_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "workload certificate issued"
                );
                publish(&tx, &metrics, credentials);
                wait
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                metrics.security.certificate_request("failure");
                let wait = backoff(failures, fastrand::f64());
                let serving = tx.borrow().is_some();
                tracing::warn!(
                    identity = %client.spiffe_id(),
                    failures,
                    retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    serving_previous = serving,
                    "workload certificate request failed: {e}"
                );
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|quit| *quit) => return,
        }
    }
}

/// How long to keep a certificate before renewing: half its lifetime, less up
/// to [`RENEW_JITTER`] of it (`random` in [0, 1)). The lifetime counts from
/// `now` when `not_before` is earlier, because CAs backdate `not_before` for
/// clock skew, which would make short certificates renew at once.
pub(super) fn renew_after(
    not_before: SystemTime,
    not_after: SystemTime,
    now: SystemTime,
    random: f64,
) -> Duration {
    let start = not_before.max(now);
    let life = not_after.duration_since(start).unwrap_or_default();
    let early = life.mul_f64(RENEW_JITTER * random.clamp(0.0, 1.0));
    (life / 2).saturating_sub(early).max(RENEW_MIN)
}

/// Wait after the `failures`-th failure in a row: 1 s doubling to 30 s,
/// spread ±25% (`random` in [0, 1)) so proxies do not retry in lockstep.
pub(super) fn backoff(failures: u32, random: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(5);
    let base = BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX);
    base.mul_f64(0.75 + 0.5 * random.clamp(0.0, 1.0))
        .min(BACKOFF_MAX)
}
