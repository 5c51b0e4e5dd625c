use sluice_api::config as pb;

use crate::model::{ProxyConfig, Running};

use super::super::Problem;

fn limit(max_tokens: u32, tokens_per_fill: u32, fill_interval_ms: u64) -> pb::RateLimit {
    pb::RateLimit {
        name: "default/RateLimitPolicy/r".to_owned(),
        max_tokens,
        tokens_per_fill,
        fill_interval_ms,
        enabled_percent: 100.0,
        enforced_percent: 100.0,
        ..Default::default()
    }
}

fn with_limits(rate_limits: Vec<pb::RateLimit>) -> pb::ProxyConfig {
    pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            ports: vec![],
            rate_limits,
            security: None,
        }),
        ..Default::default()
    }
}

#[test]
fn rate_limit_zero_fill_interval_or_tokens_is_rejected() {
    for (l, field) in [
        (limit(1, 1, 0), "fill_interval_ms"),
        (limit(0, 1, 1000), "max_tokens"),
        (limit(1, 0, 1000), "tokens_per_fill"),
    ] {
        let err = ProxyConfig::try_from(&with_limits(vec![l])).unwrap_err();
        assert!(
            matches!(err.problem, Problem::Zero(f) if f == field),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("rate limit default/RateLimitPolicy/r"),
            "{err}"
        );
    }
}

#[test]
fn rate_limit_bad_percent_is_rejected_and_names_may_repeat() {
    let mut l = limit(1, 1, 1000);
    l.enforced_percent = 101.0;
    let err = ProxyConfig::try_from(&with_limits(vec![l])).unwrap_err();
    assert!(matches!(err.problem, Problem::BadPercent { .. }), "{err}");
    let twice = with_limits(vec![limit(1, 1, 1000), limit(2, 1, 1000)]);
    assert_eq!(ProxyConfig::try_from(&twice).unwrap().rate_limits.len(), 2);
}

fn cluster(pool: Option<pb::ConnectionPool>, od: Option<pb::OutlierDetection>) -> pb::ProxyConfig {
    pb::ProxyConfig {
        clusters: vec![pb::Cluster {
            name: "outbound|9080||reviews".to_owned(),
            connection_pool: pool,
            outlier_detection: od,
            endpoints: vec![pb::Endpoint {
                address: "10.0.0.1".to_owned(),
                port: 9080,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn cluster_pool_and_outlier_convert_and_survive_a_push() {
    let pool = pb::ConnectionPool {
        max_connections: 1,
        http1_max_pending_requests: 2,
        http2_max_requests: 3,
        max_retries: 4,
        ..Default::default()
    };
    let od = pb::OutlierDetection {
        consecutive_5xx_errors: 5,
        interval_ms: 10_000,
        base_ejection_time_ms: 30_000,
        max_ejection_percent: 10,
        ..Default::default()
    };
    let old = ProxyConfig::try_from(&cluster(Some(pool), Some(od))).unwrap();
    let c = &old.clusters[0];
    assert_eq!(c.pool.limits.max_pending, 2);
    assert_eq!(c.pool.limits.max_requests, 3);
    assert_eq!(c.outlier.as_ref().unwrap().config.consecutive_5xx, 5);
    let mut new = ProxyConfig::try_from(&cluster(Some(pool), Some(od))).unwrap();
    new.inherit_balancer_state(&old);
    assert!(std::sync::Arc::ptr_eq(
        &new.clusters[0].endpoints[0].health,
        &c.endpoints[0].health
    ));
    assert!(std::sync::Arc::ptr_eq(&new.clusters[0].circuit, &c.circuit));
}

#[test]
fn outlier_zero_interval_or_percent_over_100_is_rejected() {
    let od = pb::OutlierDetection {
        interval_ms: 0,
        ..Default::default()
    };
    let err = ProxyConfig::try_from(&cluster(None, Some(od))).unwrap_err();
    assert!(matches!(err.problem, Problem::Zero("interval_ms")), "{err}");
    let od = pb::OutlierDetection {
        interval_ms: 1,
        max_ejection_percent: 150,
        ..Default::default()
    };
    assert!(ProxyConfig::try_from(&cluster(None, Some(od))).is_err());
}

#[test]
fn retry_policy_parses_conditions_and_budget() {
    let route = pb::Route {
        retries: Some(pb::RetryPolicy {
            attempts: 2,
            retry_on: "gateway-error,503".to_owned(),
            budget: Some(pb::RetryBudget {
                percent: 20.0,
                min_retries_per_second: 3,
            }),
            ..Default::default()
        }),
        action: Some(pb::route::Action::DirectResponse(
            pb::DirectResponse::default(),
        )),
        ..Default::default()
    };
    let snapshot = pb::Snapshot {
        version: "1".to_owned(),
        delta: None,
        config: Some(pb::ProxyConfig {
            virtual_hosts: vec![pb::VirtualHost {
                name: "v".to_owned(),
                port: 80,
                routes: vec![route],
                ..Default::default()
            }],
            ..Default::default()
        }),
    };
    let running = Running::try_from(&snapshot).unwrap();
    let policy = running.config.virtual_hosts[0].routes[0]
        .retries
        .clone()
        .unwrap();
    assert!(policy.on.gateway_error);
    assert_eq!(policy.on.statuses, vec![503]);
    assert_eq!(policy.budget_config, Some((20.0, 3)));
    assert!(policy.budget.is_some());
}

#[test]
fn rate_limit_status_headers_and_except_ports_are_read() {
    let mut l = limit(1, 1, 1000);
    l.status = 503;
    l.except_ports = vec![8000];
    l.response_headers = vec![pb::HeaderToAdd {
        name: "x-local-rate-limit".into(),
        value: "true".into(),
        append: pb::HeaderAppend::OverwriteIfExistsOrAdd.into(),
    }];
    let config = ProxyConfig::try_from(&with_limits(vec![l.clone()])).unwrap();
    let read = &config.rate_limits[0];
    assert_eq!(read.status, 503);
    assert_eq!(read.except_ports, [8000]);
    assert_eq!(read.response_headers[0].name, "x-local-rate-limit");
    assert_eq!(
        read.response_headers[0].append,
        crate::rate_limit::HeaderAction::OverwriteIfExistsOrAdd
    );
    // Envoy answers 429 for a status below 400 (and when none is set).
    for (status, expected) in [(0, 429), (200, 429), (429, 429)] {
        l.status = status;
        let config = ProxyConfig::try_from(&with_limits(vec![l.clone()])).unwrap();
        assert_eq!(config.rate_limits[0].status, expected);
    }
}

#[test]
fn rate_limit_unusable_status_or_header_is_rejected() {
    let mut l = limit(1, 1, 1000);
    l.status = 700;
    let err = ProxyConfig::try_from(&with_limits(vec![l])).unwrap_err();
    assert!(matches!(err.problem, Problem::UnknownEnum { .. }), "{err}");
    let mut l = limit(1, 1, 1000);
    l.request_headers_when_not_enforced = vec![pb::HeaderToAdd {
        name: "bad name".into(),
        value: "v".into(),
        append: 0,
    }];
    let err = ProxyConfig::try_from(&with_limits(vec![l])).unwrap_err();
    assert!(matches!(err.problem, Problem::BadHeaderName(_)), "{err}");
    let mut l = limit(1, 1, 1000);
    l.response_headers = vec![pb::HeaderToAdd {
        name: "x-a".into(),
        value: "v".into(),
        append: 9,
    }];
    let err = ProxyConfig::try_from(&with_limits(vec![l])).unwrap_err();
    assert!(matches!(err.problem, Problem::UnknownEnum { .. }), "{err}");
}
