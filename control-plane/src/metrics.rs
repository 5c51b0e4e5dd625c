//! Controller metrics (`:15014/metrics`).

mod process;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

/// Label set of per-kind object gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Resource kind, e.g. `VirtualService`.
    pub kind: String,
}

/// Label set of config-folder scans: what started the scan.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScanLabels {
    /// `event` (the inotify watch) or `poll` (the timer).
    pub trigger: &'static str,
}

/// Label set of config-folder file loads: whether the text came from disk.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLoadLabels {
    /// `read` (new or changed, or changed too recently to trust its stamp) or
    /// `reused` (the text kept from an earlier read).
    pub source: &'static str,
}

/// Label set of published configuration changes: whether the source waited.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    /// `leading` (the first change after a quiet period, published at once)
    /// or `trailing` (published once the source had been quiet for the
    /// debounce period).
    pub edge: &'static str,
}

/// Label set of push/ack outcome counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ack` or `nack` (`success` or `failure` for fetches).
    pub outcome: &'static str,
}

/// Label set of config pushes: what kind of snapshot was sent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    /// `full` (a complete configuration) or `delta` (changes since the last ACK).
    pub kind: &'static str,
}

/// Label set of refused config streams on the TLS listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamAuthLabels {
    /// `unauthenticated` (no or bad token), `denied` (hello names another
    /// identity) or `unavailable` (the token could not be checked).
    pub reason: &'static str,
}

/// Everything the controller counts.
pub struct ControllerMetrics {
    registry: Registry,
    /// Change seen → proxy ACKed, seconds.
    pub convergence: Histogram,
    /// Snapshots sent to proxies, by kind.
    pub pushes: Family<PushLabels, Counter>,
    /// Encoded bytes of snapshots sent, by kind.
    pub push_bytes: Family<PushLabels, Counter>,
    /// Config streams refused on the TLS listener, by reason.
    pub stream_auth_failures: Family<StreamAuthLabels, Counter>,
    /// ACK/NACK answers from proxies.
    pub responses: Family<OutcomeLabels, Counter>,
    /// Proxies with an open stream.
    pub connected: Gauge,
    /// Current configuration revision.
    pub revision: Gauge<u64, AtomicU64>,
    /// Accepted objects per kind.
    pub objects: Family<KindLabels, Gauge>,
    /// Objects or documents refused by validation.
    pub rejected: Gauge,
    /// Certificate requests by outcome.
    pub csr_requests: Family<crate::ca::service::CsrLabels, Counter>,
    /// Admission webhook requests by webhook and outcome.
    pub webhook_requests: Family<crate::webhook::WebhookLabels, Counter>,
    /// 1 while this replica holds the status-writer Lease.
    pub leader: Gauge,
    /// Status subresource writes by this replica.
    pub status_writes: Counter,
    /// Complete configs sent where a delta was due, because the delta was too large.
    pub large_delta_fallbacks: Counter,
    /// `--config-dir` scans (stat of every file) by trigger.
    pub config_dir_scans: Family<ScanLabels, Counter>,
    /// 1 while the `--config-dir` folder is watched with inotify, 0 while polled.
    pub config_dir_watching: Gauge,
    /// `--config-dir` files loaded for an ingest, read from disk or reused.
    pub config_dir_file_loads: Family<FileLoadLabels, Counter>,
    /// Changed indexes published by the config source, by debounce edge.
    pub config_publishes: Family<PublishLabels, Counter>,
    /// 1 while the config source has seen a change it has not published.
    pub config_pending: Gauge,
    /// RequestAuthentication key set fetches, by outcome.
    pub jwks_fetches: Family<OutcomeLabels, Counter>,
    /// Key sets wanted by a RequestAuthentication that have no keys yet.
    pub jwks_unavailable: Gauge,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let convergence = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]);
        registry.register(
            "sluice_proxy_convergence_seconds",
            "Time from a configuration change being seen to a proxy acknowledging it",
            convergence.clone(),
        );
        let pushes = Family::<PushLabels, Counter>::default();
        registry.register(
            "sluice_config_pushes",
            "Snapshots sent to proxies by kind (full or delta)",
            pushes.clone(),
        );
        let push_bytes = Family::<PushLabels, Counter>::default();
        registry.register(
            "sluice_config_push_bytes",
            "Encoded bytes of snapshots sent to proxies by kind (full or delta)",
            push_bytes.clone(),
        );
        let stream_auth_failures = Family::<StreamAuthLabels, Counter>::default();
        registry.register(
            "sluice_config_stream_auth_failures",
            "Config streams refused on the TLS listener by reason (unauthenticated, denied, unavailable)",
            stream_auth_failures.clone(),
        );
        let responses = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sluice_config_responses",
            "Proxy answers to snapshots (ack or nack)",
            responses.clone(),
        );
        let connected = Gauge::default();
        registry.register(
            "sluice_connected_proxies",
            "Proxies with an open config stream",
            connected.clone(),
        );
        let revision = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "sluice_config_revision",
            "Current configuration revision",
            revision.clone(),
        );
        let objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "sluice_config_objects",
            "Accepted configuration objects per kind",
            objects.clone(),
        );
        let rejected = Gauge::default();
        registry.register(
            "sluice_config_rejected_objects",
            "Configuration objects or documents refused by validation",
            rejected.clone(),
        );
        let csr_requests = Family::<crate::ca::service::CsrLabels, Counter>::default();
        registry.register(
            "sluice_csr_requests",
            "Workload certificate requests by outcome (issued, denied, unauthenticated, invalid)",
            csr_requests.clone(),
        );
        let webhook_requests = Family::<crate::webhook::WebhookLabels, Counter>::default();
        registry.register(
            "sluice_webhook_requests",
            "Admission webhook requests by webhook (validate, inject) and outcome (allowed, denied, error)",
            webhook_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "sluice_leader",
            "1 while this replica holds the Lease that lets it write statuses",
            leader.clone(),
        );
        let large_delta_fallbacks = Counter::default();
        registry.register(
            "sluice_config_large_delta_fallbacks",
            "Complete configs sent instead of a delta larger than 64 KiB and half the outbound config",
            large_delta_fallbacks.clone(),
        );
        let status_writes = Counter::default();
        registry.register(
            "sluice_status_writes",
            "Status subresource writes made by this replica",
            status_writes.clone(),
        );
        let config_dir_scans = Family::<ScanLabels, Counter>::default();
        registry.register(
            "sluice_config_dir_scans",
            "Scans of the --config-dir folder by trigger (event: the inotify watch; poll: the timer)",
            config_dir_scans.clone(),
        );
        let config_dir_watching = Gauge::default();
        registry.register(
            "sluice_config_dir_watching",
            "1 while the --config-dir folder is watched with inotify, 0 while it is only polled",
            config_dir_watching.clone(),
        );
        let config_dir_file_loads = Family::<FileLoadLabels, Counter>::default();
        registry.register(
            "sluice_config_dir_file_loads",
            "Files of the --config-dir folder loaded for an ingest (read: from disk; reused: unchanged since an earlier read)",
            config_dir_file_loads.clone(),
        );
        let config_publishes = Family::<PublishLabels, Counter>::default();
        registry.register(
            "sluice_config_publishes",
            "Changed configurations published to the proxies by debounce edge (leading: at once, after a quiet period; trailing: after waiting for quiet)",
            config_publishes.clone(),
        );
        let config_pending = Gauge::default();
        registry.register(
            "sluice_config_pending",
            "1 while the config source has seen a change it has not published yet (a debounce in progress), 0 once the latest revision holds every change seen",
            config_pending.clone(),
        );
        registry.register(
            "sluice_kube_watch_restarts",
            "Failed API server list or watch requests by kind (retried after a backoff; an expired watch relists at once)",
            crate::kube_source::watch::restarts().clone(),
        );
        registry.register(
            "sluice_kube_kind_missing",
            "1 per Istio kind whose CRD the API server does not serve (404 Not Found: not installed, or without the watched version): the kind counts as empty, and is watched again until it lists",
            crate::kube_source::watch::missing().clone(),
        );
        let jwks_fetches = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sluice_jwks_fetches",
            "Fetches of RequestAuthentication key sets (jwksUri, or the issuer's OpenID discovery) by outcome (success, failure)",
            jwks_fetches.clone(),
        );
        let jwks_unavailable = Gauge::default();
        registry.register(
            "sluice_jwks_unavailable",
            "Key sets a RequestAuthentication names that have never been fetched: tokens of their issuers are refused",
            jwks_unavailable.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        Self {
            jwks_fetches,
            jwks_unavailable,
            registry,
            leader,
            status_writes,
            large_delta_fallbacks,
            config_dir_scans,
            config_dir_watching,
            config_dir_file_loads,
            config_publishes,
            config_pending,
            csr_requests,
            webhook_requests,
            convergence,
            pushes,
            push_bytes,
            stream_auth_failures,
            responses,
            connected,
            revision,
            objects,
            rejected,
        }
    }

    /// Counts a changed configuration published on the leading or trailing edge.
    pub fn record_publish(&self, leading: bool) {
        self.config_publishes
            .get_or_create(&PublishLabels {
                edge: crate::debounce::label(leading),
            })
            .inc();
    }

    /// Records the accepted objects (by kind) and the number refused.
    pub fn record_objects<'a>(&self, kinds: impl Iterator<Item = &'a str>, rejected: usize) {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for k in kinds {
            *counts.entry(k).or_default() += 1;
        }
        self.objects.clear();
        for (kind, n) in counts {
            self.objects
                .get_or_create(&KindLabels { kind: kind.into() })
                .set(n);
        }
        self.rejected
            .set(i64::try_from(rejected).unwrap_or(i64::MAX));
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
