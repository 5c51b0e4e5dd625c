//! Conversions of the resilience settings: retry policies and budgets,
//! connection pools, outlier detection and inbound rate limits.

#[cfg(test)]
mod tests;

use std::time::Duration;

use sluice_api::config as pb;

use super::{InvalidConfig, Problem, invalid, port, route_match};
use crate::circuit::{Limits, RetryBudgetLimit};
use crate::model::{PoolSettings, RetryPolicy, Text};
use crate::outlier::{OutlierConfig, OutlierDetector};
use crate::rate_limit::{Callers, HeaderAction, HeaderToAdd, RateLimit, Stage};
use crate::retry::RetryOn;
use crate::retry_budget::RetryBudget;

fn percent(item: &str, what: &'static str, value: f64) -> Result<f64, InvalidConfig> {
    if (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(item, Problem::BadPercent { what, value }))
    }
}

pub(super) fn retry_policy(item: &str, p: &pb::RetryPolicy) -> Result<RetryPolicy, InvalidConfig> {
    let budget_config = p
        .budget
        .as_ref()
        .map(|b| {
            Ok::<_, InvalidConfig>((
                percent(item, "budget percent", b.percent)?,
                b.min_retries_per_second,
            ))
        })
        .transpose()?;
    Ok(RetryPolicy {
        attempts: p.attempts,
        per_try_timeout_ms: p.per_try_timeout_ms,
        retry_on: p.retry_on.clone(),
        on: RetryOn::parse(&p.retry_on),
        retry_remote_localities: p.retry_remote_localities,
        retry_ignore_previous_hosts: p.retry_ignore_previous_hosts,
        is_default: p.is_default,
        backoff_base_ms: p.backoff_base_ms,
        budget: budget_config.map(|(pct, min)| std::sync::Arc::new(RetryBudget::new(pct, min))),
        budget_config,
    })
}

/// DestinationRule `retryBudget` → the breaker's retry limit; a share outside
/// 0..=100 is refused.
pub(super) fn retry_budget_limit(
    item: &str,
    b: &Option<pb::ConcurrentRetryBudget>,
) -> Result<Option<RetryBudgetLimit>, InvalidConfig> {
    let Some(b) = b else { return Ok(None) };
    let share = percent(item, "retry budget", b.percent)?;
    Ok(Some(RetryBudgetLimit {
        basis_points: (share * 100.0).round() as u32,
        min_concurrency: b.min_retry_concurrency,
        interval_ms: b.interval_ms,
    }))
}

pub(super) fn pool(p: &Option<pb::ConnectionPool>) -> PoolSettings {
    let Some(p) = p else {
        return PoolSettings::default();
    };
    PoolSettings {
        limits: Limits {
            max_connections: p.max_connections,
            max_pending: p.http1_max_pending_requests,
            max_requests: p.http2_max_requests,
            max_retries: p.max_retries,
            retry_budget: None,
        },
        connect_timeout_ms: p.connect_timeout_ms,
        max_requests_per_connection: p.max_requests_per_connection,
        idle_timeout_ms: p.idle_timeout_ms,
        max_connection_duration_ms: p.max_connection_duration_ms,
        tcp_keepalive: p
            .tcp_keepalive
            .as_ref()
            .map(|k| (k.probes, k.time_ms, k.interval_ms)),
        h2_upgrade: p.h2_upgrade_policy() == pb::connection_pool::H2UpgradePolicy::Upgrade,
        use_client_protocol: p.use_client_protocol,
    }
}

pub(super) fn outlier(
    item: &str,
    o: &Option<pb::OutlierDetection>,
) -> Result<Option<OutlierDetector>, InvalidConfig> {
    let Some(o) = o else { return Ok(None) };
    let item = format!("{item} outlier detection");
    for (what, value) in [
        ("max_ejection_percent", o.max_ejection_percent),
        ("min_health_percent", o.min_health_percent),
    ] {
        if value > 100 {
            let value = f64::from(value);
            return Err(invalid(item, Problem::BadPercent { what, value }));
        }
    }
    if o.interval_ms == 0 {
        return Err(invalid(item, Problem::Zero("interval_ms")));
    }
    Ok(Some(OutlierDetector::new(OutlierConfig {
        consecutive_5xx: o.consecutive_5xx_errors,
        consecutive_gateway: o.consecutive_gateway_errors,
        interval: Duration::from_millis(o.interval_ms),
        base_ejection: Duration::from_millis(o.base_ejection_time_ms),
        max_ejection_percent: o.max_ejection_percent,
        min_health_percent: o.min_health_percent,
        split_local_origin: o.split_external_local_origin_errors,
        consecutive_local: o.consecutive_local_origin_failures,
    })))
}

fn rate_limit(r: &pb::RateLimit) -> Result<RateLimit, InvalidConfig> {
    let item = format!("rate limit {}", r.name);
    for (what, value) in [
        ("max_tokens", u64::from(r.max_tokens)),
        ("tokens_per_fill", u64::from(r.tokens_per_fill)),
        ("fill_interval_ms", r.fill_interval_ms),
    ] {
        if value == 0 {
            return Err(invalid(item, Problem::Zero(what)));
        }
    }
    let matches = r
        .matches
        .iter()
        .enumerate()
        .map(|(i, m)| route_match(&format!("{item} match[{i}]"), m))
        .collect::<Result<_, _>>()?;
    let callers = if r.source_principals.is_empty() {
        Callers::Shared
    } else if r.source_principals.iter().any(|p| p == "*") {
        Callers::Each
    } else {
        let bare = |p: &String| p.strip_prefix("spiffe://").unwrap_or(p).to_owned();
        Callers::Listed(r.source_principals.iter().map(bare).collect())
    };
    let mut limit = RateLimit::new(
        Text::from(r.name.as_str()),
        r.max_tokens,
        r.tokens_per_fill,
        r.fill_interval_ms,
        matches,
        percent(&item, "enabled_percent", r.enabled_percent)?,
        percent(&item, "enforced_percent", r.enforced_percent)?,
        callers,
        r.ports
            .iter()
            .map(|p| port(&item, *p))
            .collect::<Result<_, _>>()?,
    );
    limit.x_ratelimit_headers = r.x_ratelimit_headers;
    limit.except_ports = r
        .except_ports
        .iter()
        .map(|p| port(&item, *p))
        .collect::<Result<_, _>>()?;
    // Envoy answers 429 for a status below 400.
    limit.status = match r.status {
        0..400 => http::StatusCode::TOO_MANY_REQUESTS,
        code => u16::try_from(code)
            .ok()
            .filter(|c| *c < 600)
            .and_then(|c| http::StatusCode::from_u16(c).ok())
            .ok_or_else(|| {
                invalid(
                    &item,
                    Problem::UnknownEnum {
                        what: "rate limit status",
                        value: i32::try_from(code).unwrap_or(i32::MAX),
                    },
                )
            })?,
    };
    limit.response_headers = headers_to_add(&item, "response_headers", &r.response_headers)?;
    limit.request_headers_when_not_enforced = headers_to_add(
        &item,
        "request_headers_when_not_enforced",
        &r.request_headers_when_not_enforced,
    )?;
    limit.stage = match pb::RateLimitStage::try_from(r.stage) {
        Ok(pb::RateLimitStage::AfterAuthorization) => Stage::AfterAuthorization,
        Ok(pb::RateLimitStage::BeforeAuthorization) => Stage::BeforeAuthorization,
        Ok(pb::RateLimitStage::BeforeAuthentication) => Stage::BeforeAuthentication,
        Err(_) => {
            return Err(invalid(
                item,
                Problem::UnknownEnum {
                    what: "rate limit stage",
                    value: r.stage,
                },
            ));
        }
    };
    Ok(limit)
}

fn headers_to_add(
    item: &str,
    what: &str,
    list: &[pb::HeaderToAdd],
) -> Result<Vec<HeaderToAdd>, InvalidConfig> {
    list.iter()
        .map(|h| {
            let name = http::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                invalid(item, Problem::BadHeaderName(format!("{what}: {}", h.name)))
            })?;
            let value = http::HeaderValue::from_str(&h.value).map_err(|_| {
                invalid(item, Problem::BadHeaderValue(format!("{what}: {}", h.name)))
            })?;
            let append = match pb::HeaderAppend::try_from(h.append) {
                Ok(pb::HeaderAppend::AppendIfExistsOrAdd) => HeaderAction::AppendIfExistsOrAdd,
                Ok(pb::HeaderAppend::AddIfAbsent) => HeaderAction::AddIfAbsent,
                Ok(pb::HeaderAppend::OverwriteIfExistsOrAdd) => {
                    HeaderAction::OverwriteIfExistsOrAdd
                }
                Ok(pb::HeaderAppend::OverwriteIfExists) => HeaderAction::OverwriteIfExists,
                Err(_) => {
                    return Err(invalid(
                        item,
                        Problem::UnknownEnum {
                            what: "header append action",
                            value: h.append,
                        },
                    ));
                }
            };
            Ok(HeaderToAdd {
                name,
                value,
                append,
            })
        })
        .collect()
}

pub(super) fn rate_limits(list: &[pb::RateLimit]) -> Result<Vec<RateLimit>, InvalidConfig> {
    // Names may repeat (one EnvoyFilter can hold several limits).
    list.iter().map(rate_limit).collect()
}
