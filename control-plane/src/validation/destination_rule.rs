//! DestinationRule rules: host, subsets, and every part of a traffic policy.

use super::field::{
    at, check_duration_field, check_enum, check_export_to, check_int_percent, check_labels,
    check_selector, fqdn, is_dns1123_label, is_ip, item, port, wildcard_domain,
};
use super::{FieldErrors, Validate};
use crate::crd::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRuleSpec, LoadBalancerSettings,
    LocalityLoadBalancerSetting, OutlierDetection, TrafficPolicy,
};
use std::collections::BTreeSet;

const LB_SIMPLE: &[&str] = &[
    "UNSPECIFIED",
    "LEAST_CONN",
    "RANDOM",
    "PASSTHROUGH",
    "ROUND_ROBIN",
    "LEAST_REQUEST",
];
const TLS_MODES: &[&str] = &["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"];
const H2_UPGRADE: &[&str] = &["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"];
const MAGLEV_MAX_TABLE: u64 = 5_000_011;

impl Validate for DestinationRuleSpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        errors.check(at(spec, "host"), wildcard_domain(&self.host));
        if let Some(tp) = &self.traffic_policy {
            check_traffic_policy(errors, &at(spec, "trafficPolicy"), tp);
        }
        let mut names = BTreeSet::new();
        for (i, subset) in self.subsets.iter().enumerate() {
            let p = item(spec, "subsets", i);
            if subset.name.is_empty() {
                errors.push(at(&p, "name"), "subset name cannot be empty");
            } else if !is_dns1123_label(&subset.name) {
                errors.push(
                    at(&p, "name"),
                    format!("subset name `{}` is not a DNS-1123 label", subset.name),
                );
            } else if !names.insert(subset.name.as_str()) {
                errors.push(
                    at(&p, "name"),
                    format!("duplicate subset name `{}`", subset.name),
                );
            }
            check_labels(errors, &at(&p, "labels"), &subset.labels);
            if let Some(tp) = &subset.traffic_policy {
                check_traffic_policy(errors, &at(&p, "trafficPolicy"), tp);
            }
        }
        check_export_to(errors, &at(spec, "exportTo"), &self.export_to);
        check_selector(
            errors,
            &at(spec, "workloadSelector"),
            self.workload_selector.as_ref(),
        );
    }
}

fn check_traffic_policy(errors: &mut FieldErrors, path: &str, tp: &TrafficPolicy) {
    if tp == &TrafficPolicy::default() {
        errors.push(path, "traffic policy must have at least one field");
        return;
    }
    check_parts(
        errors,
        path,
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        tp.tls.as_ref(),
    );
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let p = item(path, "portLevelSettings", i);
        match &pl.port {
            None => errors.push(at(&p, "port"), "portTrafficPolicy must have valid port"),
            Some(sel) => errors.check(at(&p, "port.number"), port(sel.number)),
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            errors.push(
                p.clone(),
                "port traffic policy must have at least one field",
            );
        }
        check_parts(
            errors,
            &p,
            pl.load_balancer.as_ref(),
            pl.connection_pool.as_ref(),
            pl.outlier_detection.as_ref(),
            pl.tls.as_ref(),
        );
    }
    if let Some(t) = &tp.tunnel {
        let p = at(path, "tunnel");
        check_enum(
            errors,
            at(&p, "protocol"),
            t.protocol.as_deref(),
            &["CONNECT", "POST"],
        );
        if fqdn(&t.target_host).is_err() && !is_ip(&t.target_host) {
            errors.push(
                at(&p, "targetHost"),
                "tunnel target host must be valid FQDN or IP address",
            );
        }
        errors.check(at(&p, "targetPort"), port(t.target_port));
    }
    if let Some(pp) = &tp.proxy_protocol {
        check_enum(
            errors,
            at(path, "proxyProtocol.version"),
            pp.version.as_deref(),
            &["V1", "V2"],
        );
    }
    if let Some(rb) = &tp.retry_budget {
        if rb.percent.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
            errors.push(
                at(path, "retryBudget.percent"),
                "percentage must be in [0, 100]",
            );
        }
        // 0s means "only requests active right now", as in Envoy.
        check_duration_field(
            errors,
            at(path, "retryBudget.budgetInterval"),
            rb.budget_interval
                .as_deref()
                .filter(|t| parse_is_nonzero(t)),
        );
    }
}

fn check_parts(
    errors: &mut FieldErrors,
    path: &str,
    lb: Option<&LoadBalancerSettings>,
    pool: Option<&ConnectionPoolSettings>,
    outlier: Option<&OutlierDetection>,
    tls: Option<&ClientTlsSettings>,
) {
    if let Some(lb) = lb {
        check_load_balancer(errors, &at(path, "loadBalancer"), lb);
    }
    if let Some(pool) = pool {
        check_connection_pool(errors, &at(path, "connectionPool"), pool);
    }
    if let Some(o) = outlier {
        check_outlier(errors, &at(path, "outlierDetection"), o);
    }
    if let Some(tls) = tls {
        check_tls(errors, &at(path, "tls"), tls);
    }
}

fn check_load_balancer(errors: &mut FieldErrors, path: &str, lb: &LoadBalancerSettings) {
    check_enum(errors, at(path, "simple"), lb.simple.as_deref(), LB_SIMPLE);
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        errors.push(path, "only one of simple or consistentHash may be set");
    }
    if let Some(ch) = &lb.consistent_hash {
        let p = at(path, "consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip == Some(true),
            ch.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            errors.push(
                p.clone(),
                "consistentHash must set exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
            );
        }
        if let Some(cookie) = &ch.http_cookie {
            if cookie.name.is_empty() {
                errors.push(at(&p, "httpCookie.name"), "name required for HttpCookie");
            }
            check_duration_field(
                errors,
                at(&p, "httpCookie.ttl"),
                cookie.ttl.as_deref().filter(|t| parse_is_nonzero(t)),
            );
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            errors.push(p.clone(), "only one of ringHash or maglev may be set");
        }
        if ch.minimum_ring_size.is_some() && (ch.ring_hash.is_some() || ch.maglev.is_some()) {
            errors.push(
                p.clone(),
                "only one of minimumRingSize or maglev/ringHash can be specified",
            );
        }
        if let Some(m) = &ch.maglev {
            let size = m.table_size.unwrap_or(0);
            let tp = at(&p, "maglev.tableSize");
            if size == 0 {
                errors.push(tp, "tableSize must be set for maglev");
            } else if size >= MAGLEV_MAX_TABLE {
                errors.push(tp, "tableSize must be less than 5000011 for maglev");
            } else if !is_prime(size) {
                errors.push(tp, "tableSize must be a prime number for maglev");
            }
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        check_locality(errors, &at(path, "localityLbSetting"), l);
    }
    if lb.warmup.is_some() && lb.warmup_duration_secs.is_some() {
        errors.push(path, "only one of warmup or warmupDurationSecs may be set");
    }
    check_duration_field(
        errors,
        at(path, "warmupDurationSecs"),
        lb.warmup_duration_secs.as_deref(),
    );
    if let Some(w) = &lb.warmup {
        let p = at(path, "warmup");
        if w.duration.is_empty() {
            errors.push(at(&p, "duration"), "duration is required");
        } else {
            check_duration_field(errors, at(&p, "duration"), Some(&w.duration));
        }
        if w.minimum_percent
            .is_some_and(|v| !(0.0..=100.0).contains(&v))
        {
            errors.push(
                at(&p, "minimumPercent"),
                "minimumPercent must be in [0, 100]",
            );
        }
        if w.aggression.is_some_and(|v| v < 1.0 || v.is_nan()) {
            errors.push(
                at(&p, "aggression"),
                "aggression should be greater than or equal to 1",
            );
        }
    }
}

/// A cookie `ttl` of 0 means a session cookie, so only non-zero values are range-checked.
fn parse_is_nonzero(ttl: &str) -> bool {
    super::parse_duration(ttl).map_or(true, |d| !d.is_zero())
}

fn is_prime(x: u64) -> bool {
    if x < 2 {
        return false;
    }
    if x < 4 {
        return true;
    }
    if x.is_multiple_of(2) {
        return false;
    }
    let mut f = 3;
    while f * f <= x {
        if x.is_multiple_of(f) {
            return false;
        }
        f += 2;
    }
    true
}

fn check_locality(errors: &mut FieldErrors, path: &str, l: &LocalityLoadBalancerSetting) {
    if !l.distribute.is_empty() && !l.failover.is_empty() {
        errors.push(
            path,
            "can not simultaneously specify 'distribute' and 'failover'",
        );
    }
    for (i, d) in l.distribute.iter().enumerate() {
        let sum: u64 = d.to.values().map(|w| u64::from(*w)).sum();
        if sum != 100 {
            errors.push(
                item(path, "distribute", i),
                "total of weights in `to` must be 100",
            );
        }
    }
    for (i, f) in l.failover.iter().enumerate() {
        if f.from == f.to {
            errors.push(
                item(path, "failover", i),
                "locality lb failover settings must specify different regions",
            );
        }
    }
}

pub(crate) fn check_connection_pool(
    errors: &mut FieldErrors,
    path: &str,
    pool: &ConnectionPoolSettings,
) {
    if pool.http.is_none() && pool.tcp.is_none() {
        errors.push(path, "connection pool must have at least one field");
    }
    let non_negative = |errors: &mut FieldErrors, p: String, v: Option<i32>| {
        if v.is_some_and(|v| v < 0) {
            errors.push(p, "must be >= 0");
        }
    };
    if let Some(h) = &pool.http {
        let p = at(path, "http");
        non_negative(
            errors,
            at(&p, "http1MaxPendingRequests"),
            h.http1_max_pending_requests,
        );
        non_negative(errors, at(&p, "http2MaxRequests"), h.http2_max_requests);
        non_negative(
            errors,
            at(&p, "maxRequestsPerConnection"),
            h.max_requests_per_connection,
        );
        non_negative(errors, at(&p, "maxRetries"), h.max_retries);
        non_negative(
            errors,
            at(&p, "maxConcurrentStreams"),
            h.max_concurrent_streams,
        );
        check_duration_field(errors, at(&p, "idleTimeout"), h.idle_timeout.as_deref());
        check_enum(
            errors,
            at(&p, "h2UpgradePolicy"),
            h.h2_upgrade_policy.as_deref(),
            H2_UPGRADE,
        );
        if h.h2_upgrade_policy.as_deref() == Some("UPGRADE") && h.use_client_protocol == Some(true)
        {
            errors.push(
                at(&p, "useClientProtocol"),
                "use client protocol must not be true when h2UpgradePolicy is UPGRADE",
            );
        }
    }
    if let Some(t) = &pool.tcp {
        let p = at(path, "tcp");
        non_negative(errors, at(&p, "maxConnections"), t.max_connections);
        check_duration_field(
            errors,
            at(&p, "connectTimeout"),
            t.connect_timeout.as_deref(),
        );
        check_duration_field(
            errors,
            at(&p, "maxConnectionDuration"),
            t.max_connection_duration.as_deref(),
        );
        // 0s turns the idle timeout off.
        check_duration_field(
            errors,
            at(&p, "idleTimeout"),
            t.idle_timeout.as_deref().filter(|t| parse_is_nonzero(t)),
        );
        if let Some(ka) = &t.tcp_keepalive {
            check_duration_field(errors, at(&p, "tcpKeepalive.time"), ka.time.as_deref());
            check_duration_field(
                errors,
                at(&p, "tcpKeepalive.interval"),
                ka.interval.as_deref(),
            );
        }
    }
}

fn check_outlier(errors: &mut FieldErrors, path: &str, o: &OutlierDetection) {
    check_duration_field(
        errors,
        at(path, "baseEjectionTime"),
        o.base_ejection_time.as_deref(),
    );
    check_duration_field(errors, at(path, "interval"), o.interval.as_deref());
    if o.consecutive_errors.is_some_and(|v| v < 0) {
        errors.push(at(path, "consecutiveErrors"), "must be >= 0");
    }
    if o.split_external_local_origin_errors != Some(true)
        && o.consecutive_local_origin_failures.is_some_and(|v| v > 0)
    {
        errors.push(
            at(path, "consecutiveLocalOriginFailures"),
            "consecutive local origin failures is specified, but splitExternalLocalOriginErrors is not true",
        );
    }
    check_int_percent(
        errors,
        at(path, "maxEjectionPercent"),
        o.max_ejection_percent,
    );
    check_int_percent(errors, at(path, "minHealthPercent"), o.min_health_percent);
}

fn check_tls(errors: &mut FieldErrors, path: &str, tls: &ClientTlsSettings) {
    check_enum(errors, at(path, "mode"), tls.mode.as_deref(), TLS_MODES);
    let mode = tls.mode.as_deref().unwrap_or("DISABLE");
    let has_files = tls.client_certificate.is_some()
        || tls.private_key.is_some()
        || tls.ca_certificates.is_some();
    if matches!(mode, "SIMPLE" | "MUTUAL") && tls.credential_name.is_some() && has_files {
        errors.push(
            path,
            "cannot specify client certificates or CA certificate when credentialName is set",
        );
    }
    if mode == "MUTUAL" && tls.credential_name.is_none() {
        if tls.client_certificate.is_none() {
            errors.push(
                at(path, "clientCertificate"),
                "client certificate required for mutual tls",
            );
        }
        if tls.private_key.is_none() {
            errors.push(
                at(path, "privateKey"),
                "private key required for mutual tls",
            );
        }
    }
}

#[cfg(test)]
mod tests;
