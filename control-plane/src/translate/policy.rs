//! DestinationRule traffic policy → cluster connection pool and outlier
//! detection, with Istio's defaults and precedence applied here so the proxy
//! receives the values in force.

use crate::crd::parse_duration;
use crate::crd::{ConnectionPoolSettings, DestinationRule, OutlierDetection, TrafficPolicy};
use sluice_api::config as pb;

/// Picks a policy field as istiod merges policies for a cluster
/// (`MergeSubsetTrafficPolicy`): at each level, a `portLevelSettings` entry
/// for the port replaces that level's policy whole (a field it leaves out
/// is unset, not inherited). A subset's policy then wins field by field over
/// the top level's, except that a subset's port-level entry decides every
/// field alone.
pub(crate) fn pick<T: Clone>(
    top: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u32,
    field: impl Fn(&TrafficPolicy) -> Option<&T>,
    port_field: impl Fn(&crate::crd::PortTrafficPolicy) -> Option<&T>,
) -> Option<T> {
    // (the level's value, whether a port-level entry gave it)
    let level = |p: &TrafficPolicy| -> (Option<T>, bool) {
        match p
            .port_level_settings
            .iter()
            .find(|pl| pl.port.as_ref().is_some_and(|s| s.number == port))
        {
            Some(entry) => (port_field(entry).cloned(), true),
            None => (field(p).cloned(), false),
        }
    };
    match subset.map(level) {
        Some((value, true)) => value,
        Some((Some(value), false)) => Some(value),
        _ => top.and_then(|t| level(t).0),
    }
}

fn ms(d: Option<&String>) -> u64 {
    d.and_then(|s| parse_duration(s).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn count(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// Istio's `retryBudget` with its documented defaults (20 %, 3 concurrent
/// retries, no interval) filled in; `minRetryConcurrency: 0` means the
/// default, as istiod reads it.
pub(crate) fn retry_budget(
    rb: &crate::crd::traffic_policy::RetryBudget,
) -> pb::ConcurrentRetryBudget {
    pb::ConcurrentRetryBudget {
        percent: rb.percent.unwrap_or(20.0),
        min_retry_concurrency: rb.min_retry_concurrency.filter(|&m| m > 0).unwrap_or(3),
        interval_ms: ms(rb.budget_interval.as_ref()),
    }
}

/// Istio's `connectionPool` → the proxy's limits (0 = Istio's default).
pub(crate) fn connection_pool(cp: &ConnectionPoolSettings) -> pb::ConnectionPool {
    let tcp = cp.tcp.clone().unwrap_or_default();
    let http = cp.http.clone().unwrap_or_default();
    // Istio's cluster builder: `http.idleTimeout`, else `tcp.idleTimeout`,
    // for upstream HTTP connections (`0s` turns Envoy's idle timer off).
    let idle = http.idle_timeout.as_ref().or(tcp.idle_timeout.as_ref());
    let idle_timeout_ms = match idle {
        Some(d) if parse_duration(d).is_ok_and(|d| d.is_zero()) => u64::MAX,
        d => ms(d),
    };
    pb::ConnectionPool {
        max_connections: count(tcp.max_connections),
        connect_timeout_ms: ms(tcp.connect_timeout.as_ref()),
        tcp_keepalive: tcp.tcp_keepalive.as_ref().map(|k| pb::TcpKeepalive {
            probes: k.probes.unwrap_or(0),
            time_ms: ms(k.time.as_ref()),
            interval_ms: ms(k.interval.as_ref()),
        }),
        max_connection_duration_ms: ms(tcp.max_connection_duration.as_ref()),
        http1_max_pending_requests: count(http.http1_max_pending_requests),
        http2_max_requests: count(http.http2_max_requests),
        max_requests_per_connection: count(http.max_requests_per_connection),
        max_retries: count(http.max_retries),
        idle_timeout_ms,
        h2_upgrade_policy: match http.h2_upgrade_policy.as_deref() {
            Some("UPGRADE") => pb::connection_pool::H2UpgradePolicy::Upgrade,
            Some("DO_NOT_UPGRADE") => pb::connection_pool::H2UpgradePolicy::DoNotUpgrade,
            _ => pb::connection_pool::H2UpgradePolicy::Default,
        } as i32,
        use_client_protocol: http.use_client_protocol.unwrap_or(false),
        max_concurrent_streams: count(http.max_concurrent_streams),
    }
}

/// The timeouts Istio gives a TCP route's `tcp_proxy`: `idleTimeout` (unset =
/// the proxy's 1 h, `0s` = never) and `maxConnectionDuration` (0 = unlimited)
/// of the top-level `connectionPool.tcp` of `dr`, the first destination host's
/// DestinationRule. Subset and port-level settings shape clusters only.
pub(crate) fn tcp_proxy_timeouts(dr: Option<&DestinationRule>) -> (Option<u64>, u64) {
    let tcp = dr
        .and_then(|d| d.spec.traffic_policy.as_ref())
        .and_then(|p| p.connection_pool.as_ref())
        .and_then(|cp| cp.tcp.as_ref());
    let idle = tcp
        .and_then(|t| t.idle_timeout.as_deref())
        .and_then(|d| parse_duration(d).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let max = ms(tcp.and_then(|t| t.max_connection_duration.as_ref()));
    (idle, max)
}

/// Istio's `outlierDetection` → the values in force, as Istio programs Envoy:
/// `consecutive5xxErrors` defaults to 5 (0 disables); the deprecated
/// `consecutiveErrors` counts gateway errors only and turns the 5xx rule off
/// unless `consecutive5xxErrors` is also given; interval 10 s, base ejection
/// time 30 s, max ejection 10 %, and panic mode off (min health 0 %).
pub(crate) fn outlier_detection(od: &OutlierDetection) -> pb::OutlierDetection {
    let legacy = od
        .consecutive_errors
        .filter(|v| *v > 0)
        .map(|v| v.unsigned_abs());
    let consecutive_5xx_errors = match (od.consecutive_5xx_errors, legacy) {
        (Some(v), _) => v,
        (None, Some(_)) => 0,
        (None, None) => 5,
    };
    let consecutive_gateway_errors = od.consecutive_gateway_errors.or(legacy).unwrap_or(0);
    let or = |v: u64, default: u64| if v == 0 { default } else { v };
    pb::OutlierDetection {
        consecutive_5xx_errors,
        consecutive_gateway_errors,
        interval_ms: or(ms(od.interval.as_ref()), 10_000),
        base_ejection_time_ms: or(ms(od.base_ejection_time.as_ref()), 30_000),
        max_ejection_percent: od
            .max_ejection_percent
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(10),
        min_health_percent: od
            .min_health_percent
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        split_external_local_origin_errors: od.split_external_local_origin_errors.unwrap_or(false),
        consecutive_local_origin_failures: od.consecutive_local_origin_failures.unwrap_or(5),
    }
}
