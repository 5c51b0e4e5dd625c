//! Istio standard metrics (`istio_*`, Istio's label names) and the proxy's own
//! `sluice_*` metrics, in one prometheus-client registry.

use std::sync::atomic::{AtomicU32, Ordering};

use std::sync::Arc;

use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::Text;

mod exposition;
mod labels;
mod resilience;
mod security;
mod series;
mod tags;
mod telemetry;

pub use labels::Principals;
pub use resilience::{ResilienceMetrics, RetryOutcome};
pub use security::{SecurityMetrics, Side};
use series::{RequestSeries, SeriesCache};
pub use tags::{TagFacts, TagPlans};
pub use telemetry::{LogOutcome, SpanOutcome, TcpLog, TelemetryMetrics};

impl EncodeLabelValue for Text {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Istio's request duration buckets (milliseconds).
const DURATION_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's request/response size buckets (bytes): 1 × 10^0..10^8.
const SIZE_BUCKETS: [f64; 9] = [
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

/// The destination service of a request or connection.
#[derive(Clone, Debug, Default)]
pub struct ServiceLabels {
    pub service: Text,
    pub name: Text,
    pub namespace: Text,
}

/// What a Telemetry's `tagOverrides` may change in a label set.
pub(crate) trait Relabel: Clone {
    /// Blanks the standard labels whose bit is set in `removed`.
    fn blank(&mut self, removed: u32);
    /// Sets the labels added or replaced.
    fn set_custom(&mut self, custom: Custom);
}

/// Declares a standard label set: the struct (one field per label, then
/// [`Custom`]), the names in order, the values for encoding and the
/// blanking of left-out labels — from one list, so they cannot disagree.
/// A field is `text` ([`Text`]) or `code` (a `u16` status code).
macro_rules! label_set {
    (
        $(#[$meta:meta])*
        $name:ident, $names:ident { $($field:ident: $kind:ident),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Hash, PartialEq, Eq)]
        pub struct $name {
            $(pub $field: label_set!(@type $kind),)*
            /// Labels a Telemetry left out or added.
            pub custom: Custom,
        }

        #[doc = concat!("The names of [`", stringify!($name), "`]'s standard labels, in their order.")]
        pub const $names: &[&str] = &[$(stringify!($field)),*];

        impl $name {
            /// The standard labels' values, in name order.
            fn values(&self) -> impl Iterator<Item = LabelValue<'_>> {
                [$(label_set!(@value self.$field, $kind)),*].into_iter()
            }

            /// Blanks the standard labels whose bit (their position among
            /// the names) is set, so series differing only there are one.
            pub(crate) fn blank(&mut self, removed: u32) {
                if removed == 0 {
                    return;
                }
                let mut bit = 1u32;
                $(
                    if removed & bit != 0 {
                        self.$field = Default::default();
                    }
                    bit <<= 1;
                )*
                let _ = bit;
            }
        }

        impl Relabel for $name {
            fn blank(&mut self, removed: u32) {
                $name::blank(self, removed);
            }

            fn set_custom(&mut self, custom: Custom) {
                self.custom = custom;
            }
        }

        impl EncodeLabelSet for $name {
            fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
                encode_labels(encoder, $names, self.values(), &self.custom)
            }
        }
    };
    (@type text) => { Text };
    (@type code) => { u16 };
    (@value $v:expr, text) => { LabelValue::Text(&$v) };
    (@value $v:expr, code) => { LabelValue::Code($v) };
}

/// Calls `$callback!` with `$before` and then, in braces, the labels every
/// Istio metric starts with (`reporter` to `destination_cluster`, as Istio's
/// stats filter adds them) followed by `$rest`: the label sets share them.
macro_rules! with_peer_labels {
    ($callback:ident! { $($before:tt)* } $($rest:tt)*) => {
        $callback! { $($before)* {
            reporter: text,
            source_workload: text,
            source_canonical_service: text,
            source_canonical_revision: text,
            source_workload_namespace: text,
            source_principal: text,
            source_app: text,
            source_version: text,
            source_cluster: text,
            destination_workload: text,
            destination_workload_namespace: text,
            destination_principal: text,
            destination_app: text,
            destination_version: text,
            destination_service: text,
            destination_canonical_service: text,
            destination_canonical_revision: text,
            destination_service_name: text,
            destination_service_namespace: text,
            destination_cluster: text,
            $($rest)*
        } }
    };
}

with_peer_labels! {
    label_set! {
        /// Labels of `istio_requests_total` and the request histograms: Istio's
        /// standard set in order, then what a Telemetry's `tagOverrides` changed
        /// ([`Custom`]).
        RequestLabels, REQUEST_LABEL_NAMES
    }
    request_protocol: text,
    response_code: code,
    grpc_response_status: text,
    response_flags: text,
    connection_security_policy: text,
}

with_peer_labels! {
    label_set! {
        /// Labels of the `istio_tcp_*` metrics: the request set without the
        /// response code and gRPC status, then [`Custom`].
        TcpLabels, TCP_LABEL_NAMES
    }
    request_protocol: text,
    response_flags: text,
    connection_security_policy: text,
}

with_peer_labels! {
    label_set! {
        /// Labels of `istio_request_messages_total` and
        /// `istio_response_messages_total`: the request set up to
        /// `destination_cluster`, then [`Custom`]. Istio's stats filter adds the
        /// gRPC message counts before it appends `request_protocol`, the response
        /// code, gRPC status, flags and security policy, so those are not there.
        MessageLabels, MESSAGE_LABEL_NAMES
    }
}

/// `impl From<&$from> for $to`, copying the fields listed (the shared peer
/// labels) and no custom labels.
macro_rules! narrowed_labels {
    ($from:ident => $to:ident { $($field:ident: $kind:ident),* $(,)? }) => {
        impl From<&$from> for $to {
            fn from(l: &$from) -> Self {
                $to {
                    $($field: l.$field.clone(),)*
                    custom: Custom::default(),
                }
            }
        }
    };
}

with_peer_labels! { narrowed_labels! { RequestLabels => MessageLabels } }

/// What `tagOverrides` did to one series' labels: standard labels left out
/// (bit `i` = name `i` of the label set's names; their values are blanked so
/// that series differing only there are one) and labels added or replaced
/// (name, value), in order.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Custom(Option<Arc<CustomLabels>>);

#[derive(Debug, Hash, PartialEq, Eq)]
struct CustomLabels {
    removed: u32,
    added: Vec<(Text, Text)>,
}

impl Custom {
    /// Labels left out (`removed` bits) and added.
    pub fn new(removed: u32, added: Vec<(Text, Text)>) -> Self {
        if removed == 0 && added.is_empty() {
            return Custom(None);
        }
        Custom(Some(Arc::new(CustomLabels { removed, added })))
    }

    fn removed(&self) -> u32 {
        self.0.as_ref().map_or(0, |c| c.removed)
    }

    fn added(&self) -> &[(Text, Text)] {
        self.0.as_ref().map_or(&[], |c| &c.added)
    }
}

/// A standard label's value while encoding.
enum LabelValue<'a> {
    Text(&'a Text),
    Code(u16),
}

impl EncodeLabelValue for LabelValue<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self {
            LabelValue::Text(t) => t.encode(encoder),
            LabelValue::Code(c) => EncodeLabelValue::encode(&u32::from(*c), encoder),
        }
    }
}

/// Encodes the standard labels not left out, then the added ones.
fn encode_labels<'a>(
    encoder: &mut LabelSetEncoder<'_>,
    names: &[&'static str],
    values: impl Iterator<Item = LabelValue<'a>>,
    custom: &Custom,
) -> Result<(), std::fmt::Error> {
    let removed = custom.removed();
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if removed & (1 << i) == 0 {
            (*name, value).encode(encoder.encode_label())?;
        }
    }
    for (name, value) in custom.added() {
        (name.as_str(), LabelValue::Text(value)).encode(encoder.encode_label())?;
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// Labels naming a listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Standard metrics a Telemetry switched off, per side: bit `m` is
/// `StandardMetric` `m` of the config protocol (1 = `REQUEST_COUNT` ...
/// 8 = `TCP_RECEIVED_BYTES`, 9 and 10 the gRPC message counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DisabledMetrics {
    /// Reporter `source` (this proxy's outbound side).
    pub client: u16,
    /// Reporter `destination` (its inbound side).
    pub server: u16,
}

/// Bits of [`DisabledMetrics`].
pub mod standard {
    pub const REQUEST_COUNT: u16 = 1 << 1;
    pub const REQUEST_DURATION: u16 = 1 << 2;
    pub const REQUEST_SIZE: u16 = 1 << 3;
    pub const RESPONSE_SIZE: u16 = 1 << 4;
    pub const TCP_OPENED: u16 = 1 << 5;
    pub const TCP_CLOSED: u16 = 1 << 6;
    pub const TCP_SENT: u16 = 1 << 7;
    pub const TCP_RECEIVED: u16 = 1 << 8;
    pub const GRPC_REQUEST_MESSAGES: u16 = 1 << 9;
    pub const GRPC_RESPONSE_MESSAGES: u16 = 1 << 10;
}

/// Interned label values used on every request.
#[derive(Clone, Debug)]
pub struct Words {
    pub unknown: Text,
    /// `grpc_response_status` of non-gRPC requests and of gRPC requests
    /// without any answer, as Istio writes it.
    pub empty: Text,
    /// `grpc_response_status` values 0-16, and `-1` for a `grpc-status`
    /// Envoy does not read as a known code.
    pub grpc_codes: [Text; 17],
    pub grpc_invalid: Text,
    /// Canonical revision of a workload that has none.
    pub latest: Text,
    pub source: Text,
    pub destination: Text,
    pub http: Text,
    pub grpc: Text,
    pub tcp: Text,
    pub no_flags: Text,
    pub none: Text,
    /// `connection_security_policy` of mTLS connections.
    pub mutual_tls: Text,
    /// Response flags (Envoy's): no route, no healthy upstream, upstream
    /// connect failure, upstream reset, upstream timeout, no cluster.
    pub nr: Text,
    pub uh: Text,
    pub uf: Text,
    pub uc: Text,
    pub ut: Text,
    pub nc: Text,
    /// Overflow (circuit breaking), retries exhausted, rate limited.
    pub uo: Text,
    pub urx: Text,
    pub rl: Text,
    /// Fault injection: delayed, aborted, both.
    pub di: Text,
    pub fi: Text,
    pub di_fi: Text,
    /// A connection cut at its maximum duration (Envoy's `DT`).
    pub dt: Text,
    /// The caller went away before the answer: its HTTP/1 connection closed
    /// (Envoy's `DC`) or its HTTP/2 stream was reset (`DR`).
    pub dc: Text,
    pub dr: Text,
    /// `destination_service_name` of traffic for destinations no service
    /// covers: passed through, or refused under `REGISTRY_ONLY`.
    pub passthrough: Text,
    pub black_hole: Text,
}

/// Every metric the proxy exports.
pub struct Metrics {
    registry: Registry,
    pub words: Words,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RequestLabels>,
    request_bytes: HistogramFamily<RequestLabels>,
    response_bytes: HistogramFamily<RequestLabels>,
    /// gRPC messages sent by the client and by the server.
    request_messages: Family<MessageLabels, Counter>,
    response_messages: Family<MessageLabels, Counter>,
    pub tcp_sent: Family<TcpLabels, Counter>,
    pub tcp_received: Family<TcpLabels, Counter>,
    pub tcp_opened: Family<TcpLabels, Counter>,
    pub tcp_closed: Family<TcpLabels, Counter>,
    config_updates: Family<OutcomeLabels, Counter>,
    pub config_connected: Gauge,
    /// Worker threads of the runtime (`--concurrency`).
    pub worker_threads: Gauge,
    config_version: Family<VersionLabels, Gauge>,
    pub connections_accepted: Family<ListenerLabels, Counter>,
    pub connections_active: Family<ListenerLabels, Gauge>,
    pub resilience: ResilienceMetrics,
    pub security: SecurityMetrics,
    /// Spans and access-log lines by outcome.
    pub telemetry: TelemetryMetrics,
    /// Kubelet probes forwarded to the app (`/app-health/...`), by path and answer.
    pub app_probes: Family<AppProbeLabels, Counter>,
    /// Mirrored (shadow) requests by outcome: `sent`, `failed`, or `dropped`
    /// (too many already in flight).
    pub mirrors: Family<MirrorLabels, Counter>,
    /// WebSocket upgrades by reporter and outcome: `upgraded`, `refused` (the
    /// upstream answered something else than `101`) or `failed` (a side's
    /// connection was gone before the hand-over).
    pub upgrades: Family<UpgradeLabels, Counter>,
    /// Upgraded connections open now.
    pub upgrades_active: Family<ReporterLabels, Gauge>,
    /// Bytes relayed on upgraded connections once they close: `received`
    /// from the downstream client, `sent` to it.
    pub upgraded_bytes: Family<UpgradeBytesLabels, Counter>,
    /// Requests with an `Origin` on routes with a CORS policy, by outcome.
    pub cors: Family<CorsLabels, Counter>,
    /// Relayed TCP connections closed by their idle timeout or maximum duration.
    tcp_timeouts: Family<TcpTimeoutLabels, Counter>,
    /// The four request metrics of each label set seen, found with one lookup.
    series: SeriesCache,
    /// [`DisabledMetrics`]: client bits low, server bits high.
    disabled: AtomicU32,
    /// 1 per standard metric and reporter a Telemetry switched off.
    disabled_gauge: Family<DisabledMetricLabels, Gauge>,
    /// Label changes of Telemetry `tagOverrides`; `has_tags` is checked first
    /// so that proxies without any take no lock.
    tags: std::sync::RwLock<Option<Arc<TagPlans>>>,
    has_tags: std::sync::atomic::AtomicBool,
    /// Captured traffic for destinations no service covers, by protocol and
    /// outcome (`passed` through or `refused` under `REGISTRY_ONLY`).
    passthroughs: Family<PassthroughLabels, Counter>,
    /// Label changes in force, per reporter (one per metric and label).
    label_changes: Family<ReporterLabels, Gauge>,
    /// Label values that could not be evaluated and were reported `unknown`.
    label_values_unknown: Counter,
}

/// Labels of `sluice_standard_metric_disabled`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DisabledMetricLabels {
    reporter: &'static str,
    /// Istio's name, e.g. `REQUEST_COUNT`.
    metric: &'static str,
}

/// Istio's names of the [`standard`] bits, lowest bit first.
const STANDARD_NAMES: [(u16, &str); 10] = [
    (standard::REQUEST_COUNT, "REQUEST_COUNT"),
    (standard::REQUEST_DURATION, "REQUEST_DURATION"),
    (standard::REQUEST_SIZE, "REQUEST_SIZE"),
    (standard::RESPONSE_SIZE, "RESPONSE_SIZE"),
    (standard::TCP_OPENED, "TCP_OPENED_CONNECTIONS"),
    (standard::TCP_CLOSED, "TCP_CLOSED_CONNECTIONS"),
    (standard::TCP_SENT, "TCP_SENT_BYTES"),
    (standard::TCP_RECEIVED, "TCP_RECEIVED_BYTES"),
    (standard::GRPC_REQUEST_MESSAGES, "GRPC_REQUEST_MESSAGES"),
    (standard::GRPC_RESPONSE_MESSAGES, "GRPC_RESPONSE_MESSAGES"),
];

/// Labels of `sluice_mirror_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    pub outcome: &'static str,
}

/// Labels of `sluice_cors_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CorsLabels {
    pub outcome: &'static str,
}

/// Labels of `sluice_http_upgrades_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpgradeLabels {
    /// `source` (outbound) or `destination` (inbound), as Istio's `reporter`.
    pub reporter: &'static str,
    pub outcome: &'static str,
}

/// Labels of `sluice_tcp_timeouts_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TcpTimeoutLabels {
    /// `source` (outbound) or `destination` (inbound), as Istio's `reporter`.
    reporter: Text,
    /// `idle` or `max_duration`.
    kind: &'static str,
}

/// Labels of `sluice_http_upgraded_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpgradeBytesLabels {
    pub reporter: &'static str,
    pub direction: &'static str,
}

/// Labels of `sluice_http_upgrades_active`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReporterLabels {
    pub reporter: &'static str,
}

/// Labels of `sluice_outbound_passthrough_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassthroughLabels {
    /// `http` or `tcp`.
    protocol: &'static str,
    /// `passed` or `refused`.
    outcome: &'static str,
}

/// Labels of `sluice_app_probes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppProbeLabels {
    pub path: String,
    pub code: u16,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let duration: HistogramFamily<_> = Family::new_with_constructor(duration_histogram);
        let request_bytes: HistogramFamily<_> = Family::new_with_constructor(size_histogram);
        let response_bytes: HistogramFamily<_> = Family::new_with_constructor(size_histogram);
        registry.register("istio_requests", "Requests handled", requests.clone());
        registry.register(
            "istio_request_duration_milliseconds",
            "Request duration",
            duration.clone(),
        );
        registry.register(
            "istio_request_bytes",
            "Request body sizes",
            request_bytes.clone(),
        );
        registry.register(
            "istio_response_bytes",
            "Response body sizes",
            response_bytes.clone(),
        );
        let request_messages = Family::default();
        let response_messages = Family::default();
        registry.register(
            "istio_request_messages",
            "gRPC messages sent by the client",
            request_messages.clone(),
        );
        registry.register(
            "istio_response_messages",
            "gRPC messages sent by the server",
            response_messages.clone(),
        );
        let tcp_sent = Family::default();
        let tcp_received = Family::default();
        let tcp_opened = Family::default();
        let tcp_closed = Family::default();
        registry.register(
            "istio_tcp_sent_bytes",
            "Bytes sent to the peer of a TCP connection",
            tcp_sent.clone(),
        );
        registry.register(
            "istio_tcp_received_bytes",
            "Bytes received from the client of a TCP connection",
            tcp_received.clone(),
        );
        registry.register(
            "istio_tcp_connections_opened",
            "TCP connections opened",
            tcp_opened.clone(),
        );
        registry.register(
            "istio_tcp_connections_closed",
            "TCP connections closed",
            tcp_closed.clone(),
        );
        let config_updates = Family::default();
        let config_connected = Gauge::default();
        let config_version = Family::default();
        registry.register(
            "sluice_config_updates",
            "Config snapshots by outcome",
            config_updates.clone(),
        );
        registry.register(
            "sluice_config_connected",
            "1 while the config stream is up",
            config_connected.clone(),
        );
        registry.register(
            "sluice_config_version_info",
            "Version of the running config",
            config_version.clone(),
        );
        let worker_threads = Gauge::default();
        registry.register(
            "sluice_worker_threads",
            "Worker threads of the proxy's runtime (--concurrency; 1 = single-threaded)",
            worker_threads.clone(),
        );
        let connections_accepted = Family::default();
        let connections_active = Family::default();
        registry.register(
            "sluice_connections_accepted",
            "Connections accepted per listener",
            connections_accepted.clone(),
        );
        registry.register(
            "sluice_connections_active",
            "Open connections per listener",
            connections_active.clone(),
        );
        let resilience = ResilienceMetrics::register(&mut registry);
        let security = SecurityMetrics::register(&mut registry);
        let telemetry = TelemetryMetrics::register(&mut registry);
        let app_probes = Family::default();
        registry.register(
            "sluice_app_probes",
            "Kubelet probes forwarded to the application, by rewritten path and status code",
            app_probes.clone(),
        );
        let mirrors = Family::default();
        registry.register(
            "sluice_mirror_requests",
            "Mirrored (shadow) requests by outcome: sent, failed, or dropped because too many were in flight",
            mirrors.clone(),
        );
        let upgrades = Family::default();
        registry.register(
            "sluice_http_upgrades",
            "WebSocket upgrades by reporter and outcome: upgraded, refused (the upstream did not answer 101) or failed (a connection was gone before the hand-over)",
            upgrades.clone(),
        );
        let upgrades_active = Family::default();
        registry.register(
            "sluice_http_upgrades_active",
            "Upgraded (WebSocket) connections open now",
            upgrades_active.clone(),
        );
        let upgraded_bytes = Family::default();
        registry.register(
            "sluice_http_upgraded_bytes",
            "Bytes relayed on closed upgraded connections: received from the downstream client, sent to it",
            upgraded_bytes.clone(),
        );
        let cors = Family::default();
        registry.register(
            "sluice_cors_requests",
            "Requests with an Origin on routes with a CORS policy, by outcome: allowed, origin_not_allowed, preflight (answered), preflight_forwarded (origin not allowed, sent on), preflight_origin_not_allowed (answered without allowing it)",
            cors.clone(),
        );
        let disabled_gauge = Family::default();
        registry.register(
            "sluice_standard_metric_disabled",
            "1 for each standard metric (Istio's name) and reporter that a Telemetry's metrics overrides switched off",
            disabled_gauge.clone(),
        );
        let passthroughs = Family::default();
        registry.register(
            "sluice_outbound_passthrough",
            "Captured outbound requests (http) and connections (tcp) for destinations no service covers: passed through to their original destination (ALLOW_ANY) or refused (REGISTRY_ONLY)",
            passthroughs.clone(),
        );
        let label_changes = Family::default();
        registry.register(
            "sluice_metric_label_changes",
            "Labels of standard metrics a Telemetry's tagOverrides removed, replaced or added, counted once per metric, by reporter",
            label_changes.clone(),
        );
        let label_values_unknown = Counter::default();
        registry.register(
            "sluice_metric_label_values_unknown",
            "Label values of tagOverrides that could not be evaluated (reported as unknown)",
            label_values_unknown.clone(),
        );
        let tcp_timeouts = Family::default();
        registry.register(
            "sluice_tcp_timeouts",
            "Relayed TCP connections closed by a timeout, by reporter and kind: idle (DestinationRule connectionPool.tcp.idleTimeout, 1 h by default) or max_duration (tcp.maxConnectionDuration)",
            tcp_timeouts.clone(),
        );
        Metrics {
            registry,
            resilience,
            cors,
            tcp_timeouts,
            upgrades,
            upgrades_active,
            upgraded_bytes,
            security,
            telemetry,
            app_probes,
            mirrors,
            words: Words {
                unknown: "unknown".into(),
                empty: "".into(),
                grpc_codes: std::array::from_fn(|c| Text::from(c.to_string())),
                grpc_invalid: "-1".into(),
                latest: "latest".into(),
                source: "source".into(),
                destination: "destination".into(),
                http: "http".into(),
                grpc: "grpc".into(),
                tcp: "tcp".into(),
                no_flags: "-".into(),
                none: "none".into(),
                mutual_tls: "mutual_tls".into(),
                nr: "NR".into(),
                uh: "UH".into(),
                uf: "UF".into(),
                uc: "UC".into(),
                ut: "UT".into(),
                nc: "NC".into(),
                uo: "UO".into(),
                urx: "URX".into(),
                rl: "RL".into(),
                di: "DI".into(),
                fi: "FI".into(),
                di_fi: "DI,FI".into(),
                dt: "DT".into(),
                dc: "DC".into(),
                dr: "DR".into(),
                passthrough: "PassthroughCluster".into(),
                black_hole: "BlackHoleCluster".into(),
            },
            requests,
            duration,
            request_bytes,
            response_bytes,
            request_messages,
            response_messages,
            tcp_sent,
            tcp_received,
            tcp_opened,
            tcp_closed,
            config_updates,
            config_connected,
            worker_threads,
            config_version,
            connections_accepted,
            connections_active,
            series: SeriesCache::default(),
            disabled: AtomicU32::new(0),
            disabled_gauge,
            tags: std::sync::RwLock::new(None),
            has_tags: std::sync::atomic::AtomicBool::new(false),
            label_changes,
            label_values_unknown,
            passthroughs,
        }
    }

    /// Counts captured traffic for a destination no service covers.
    pub fn passthrough(&self, refused: bool, protocol: &'static str) {
        let outcome = if refused { "refused" } else { "passed" };
        self.passthroughs
            .get_or_create(&PassthroughLabels { protocol, outcome })
            .inc();
    }

    /// Applies the running config's label changes (`None`: standard labels).
    pub fn set_tags(&self, plans: Option<Arc<TagPlans>>) {
        self.label_changes.clear();
        if let Some(p) = &plans {
            for (side, reporter) in ["source", "destination"].into_iter().enumerate() {
                self.label_changes
                    .get_or_create(&ReporterLabels { reporter })
                    .set(p.changes(side));
            }
        }
        let mut tags = self.tags.write().unwrap_or_else(|p| p.into_inner());
        self.has_tags.store(plans.is_some(), Ordering::Relaxed);
        *tags = plans;
    }

    /// The label changes in force, if any.
    pub fn tag_plans(&self) -> Option<Arc<TagPlans>> {
        if !self.has_tags.load(Ordering::Relaxed) {
            return None;
        }
        self.tags.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// 0 for the client side (reporter `source`), 1 for the server side.
    pub fn side_of(&self, reporter: &Text) -> usize {
        usize::from(reporter.as_str() == self.words.destination.as_str())
    }

    /// Label changes need [`TagFacts`] of requests reported by `reporter`.
    pub fn wants_tag_facts(&self, reporter: &Text) -> Option<Arc<TagPlans>> {
        self.tag_plans()
            .filter(|p| p.wants_facts(self.side_of(reporter)))
    }

    /// Switches standard metrics off (or on again) from the running config.
    pub fn set_disabled(&self, d: DisabledMetrics) {
        let packed = u32::from(d.client) | u32::from(d.server) << 16;
        self.disabled.store(packed, Ordering::Relaxed);
        self.disabled_gauge.clear();
        for (reporter, bits) in [("source", d.client), ("destination", d.server)] {
            for (bit, metric) in STANDARD_NAMES {
                if bits & bit != 0 {
                    self.disabled_gauge
                        .get_or_create(&DisabledMetricLabels { reporter, metric })
                        .set(1);
                }
            }
        }
    }

    /// The standard metrics switched off for `reporter`'s side.
    fn disabled_for(&self, reporter: &Text) -> u16 {
        let packed = self.disabled.load(Ordering::Relaxed);
        if packed == 0 {
            return 0;
        }
        let side = if reporter.as_str() == self.words.destination.as_str() {
            packed >> 16
        } else {
            packed
        };
        // Masked to the low half.
        (side & 0xffff) as u16
    }

    /// Whether `metric` (a [`standard`] bit) is recorded for `reporter`.
    pub fn records(&self, reporter: &Text, metric: u16) -> bool {
        self.disabled_for(reporter) & metric == 0
    }

    /// Records one finished request; `facts` feed label expressions.
    pub fn record_request(
        &self,
        labels: &RequestLabels,
        facts: Option<&TagFacts>,
        millis: f64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let off = self.disabled_for(&labels.reporter);
        if let Some(plans) = self.tag_plans() {
            let seen = tags::Seen {
                facts,
                request_bytes: Some(request_bytes),
                response_bytes: Some(response_bytes),
                response: Some((labels.response_code, &labels.grpc_response_status)),
            };
            let side = self.side_of(&labels.reporter);
            if let Some(sets) = plans.request(side, labels, &seen, &self.label_values_unknown) {
                if sets.iter().all(|l| *l == sets[0]) {
                    self.record_set(&sets[0], off, millis, request_bytes, response_bytes);
                } else {
                    // Each metric its own labels: one series each.
                    let only = |bit: u16, l: &RequestLabels| {
                        self.record_set(l, off | !bit, millis, request_bytes, response_bytes)
                    };
                    only(standard::REQUEST_COUNT, &sets[0]);
                    only(standard::REQUEST_DURATION, &sets[1]);
                    only(standard::REQUEST_SIZE, &sets[2]);
                    only(standard::RESPONSE_SIZE, &sets[3]);
                }
                return;
            }
        }
        self.record_set(labels, off, millis, request_bytes, response_bytes);
    }

    /// Adds gRPC messages of one call (those since its last report) under
    /// `labels` (the request's, whose first labels are the message
    /// counters'), as Istio's stats filter adds the deltas of Envoy's
    /// `grpc_stats` filter state; a call with none still has its series (at 0).
    /// `facts` and the call's body `bytes` (request, response) feed label
    /// expressions.
    pub fn record_messages(
        &self,
        labels: &RequestLabels,
        facts: Option<&TagFacts>,
        bytes: (u64, u64),
        (request, response): (u64, u64),
    ) {
        let off = self.disabled_for(&labels.reporter);
        let both = standard::GRPC_REQUEST_MESSAGES | standard::GRPC_RESPONSE_MESSAGES;
        if off & both == both {
            return;
        }
        let seen = tags::Seen {
            facts,
            request_bytes: Some(bytes.0),
            response_bytes: Some(bytes.1),
            response: Some((labels.response_code, &labels.grpc_response_status)),
        };
        let add = |family: &Family<MessageLabels, Counter>, bit: u16, l: &MessageLabels, n| {
            if off & bit == 0 {
                family.get_or_create(l).inc_by(n);
            }
        };
        let plans = self.tag_plans();
        let side = self.side_of(&labels.reporter);
        let tagged = plans
            .as_ref()
            .and_then(|p| p.messages(side, labels, &seen, &self.label_values_unknown));
        match tagged {
            Some([req, resp]) => {
                add(
                    &self.request_messages,
                    standard::GRPC_REQUEST_MESSAGES,
                    &req,
                    request,
                );
                add(
                    &self.response_messages,
                    standard::GRPC_RESPONSE_MESSAGES,
                    &resp,
                    response,
                );
            }
            None => {
                let l = MessageLabels::from(labels);
                add(
                    &self.request_messages,
                    standard::GRPC_REQUEST_MESSAGES,
                    &l,
                    request,
                );
                add(
                    &self.response_messages,
                    standard::GRPC_RESPONSE_MESSAGES,
                    &l,
                    response,
                );
            }
        }
    }

    /// Records a request's metrics under `labels`, except the `off` ones.
    fn record_set(
        &self,
        labels: &RequestLabels,
        off: u16,
        millis: f64,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        let make = || RequestSeries {
            requests: self.requests.get_or_create(labels).clone(),
            duration: self.duration.get_or_create(labels).clone(),
            request_bytes: self.request_bytes.get_or_create(labels).clone(),
            response_bytes: self.response_bytes.get_or_create(labels).clone(),
        };
        if off == 0 {
            self.series.with(labels, make, |s| {
                s.requests.inc();
                s.duration.observe(millis);
                s.request_bytes.observe(request_bytes as f64);
                s.response_bytes.observe(response_bytes as f64);
            });
            return;
        }
        // Some switched off by a Telemetry: only the others get a series
        // (a cached set would create all four).
        if off & standard::REQUEST_COUNT == 0 {
            self.requests.get_or_create(labels).inc();
        }
        if off & standard::REQUEST_DURATION == 0 {
            self.duration.get_or_create(labels).observe(millis);
        }
        if off & standard::REQUEST_SIZE == 0 {
            self.request_bytes
                .get_or_create(labels)
                .observe(request_bytes as f64);
        }
        if off & standard::RESPONSE_SIZE == 0 {
            self.response_bytes
                .get_or_create(labels)
                .observe(response_bytes as f64);
        }
    }

    /// The labels of each TCP metric (opened, closed, sent, received) when a
    /// Telemetry changed them for this connection's side.
    pub fn tcp_tagged(&self, labels: &TcpLabels) -> Option<Box<[TcpLabels; 4]>> {
        let plans = self.tag_plans()?;
        let seen = tags::Seen {
            facts: None,
            request_bytes: None,
            response_bytes: None,
            response: None,
        };
        plans
            .tcp(
                self.side_of(&labels.reporter),
                labels,
                &seen,
                &self.label_values_unknown,
            )
            .map(Box::new)
    }

    /// Records a config snapshot outcome.
    pub fn config_outcome(&self, acked: bool) {
        let outcome = if acked { "ack" } else { "nack" };
        self.config_updates
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Marks `version` as the running config.
    pub fn config_applied(&self, version: &str) {
        self.config_version.clear();
        self.config_version
            .get_or_create(&VersionLabels {
                version: version.to_owned(),
            })
            .set(1);
    }

    /// The text exposition of every metric, histogram bucket bounds written
    /// as Envoy's `/stats/prometheus` writes them.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        exposition::envoy_bucket_bounds(out)
    }

    /// Counts a relayed TCP connection closed by its `kind` of timeout.
    pub fn tcp_timeout(&self, reporter: &Text, kind: &'static str) {
        let labels = TcpTimeoutLabels {
            reporter: reporter.clone(),
            kind,
        };
        self.tcp_timeouts.get_or_create(&labels).inc();
    }
}
