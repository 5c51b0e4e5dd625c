use crate::validation::tests::problems;

fn dr(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d}}\nspec: {spec}\n"
    ))
}

fn one(spec: &str, expected: &str) {
    assert_eq!(
        dr(spec),
        [format!("DestinationRule default/d: {expected}")],
        "spec: {spec}"
    );
}

fn policy(tp: &str, expected: &str) {
    one(
        &format!("{{host: d, trafficPolicy: {tp}}}"),
        &format!("spec.trafficPolicy{expected}"),
    );
}

#[test]
fn destination_rule_missing_host_is_refused() {
    one(
        "{subsets: [{name: v1}]}",
        "spec.host: empty domain name not allowed",
    );
}

#[test]
fn destination_rule_duplicate_subset_is_refused() {
    one(
        "{host: d, subsets: [{name: v1}, {name: v1}]}",
        "spec.subsets[1].name: duplicate subset name `v1`",
    );
}

#[test]
fn destination_rule_subset_name_must_be_dns_label() {
    one(
        "{host: d, subsets: [{name: V.1}]}",
        "spec.subsets[0].name: subset name `V.1` is not a DNS-1123 label",
    );
}

#[test]
fn destination_rule_subset_label_value_is_checked() {
    one(
        "{host: d, subsets: [{name: v1, labels: {version: 'not ok'}}]}",
        "spec.subsets[0].labels.version: invalid label value `not ok`",
    );
}

#[test]
fn destination_rule_empty_traffic_policy_is_refused() {
    policy("{}", ": traffic policy must have at least one field");
}

#[test]
fn destination_rule_unknown_lb_is_refused() {
    policy(
        "{loadBalancer: {simple: FASTEST}}",
        ".loadBalancer.simple: unknown value `FASTEST` (expected one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST)",
    );
}

#[test]
fn destination_rule_consistent_hash_needs_exactly_one_key() {
    let expected = ".loadBalancer.consistentHash: consistentHash must set exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName";
    policy(
        "{loadBalancer: {consistentHash: {httpHeaderName: x, useSourceIp: true}}}",
        expected,
    );
    policy(
        "{loadBalancer: {consistentHash: {ringHash: {minimumRingSize: 1024}}}}",
        expected,
    );
}

#[test]
fn destination_rule_simple_and_consistent_hash_are_exclusive() {
    policy(
        "{loadBalancer: {simple: RANDOM, consistentHash: {useSourceIp: true}}}",
        ".loadBalancer: only one of simple or consistentHash may be set",
    );
}

#[test]
fn destination_rule_maglev_table_must_be_prime() {
    policy(
        "{loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 1000}}}}",
        ".loadBalancer.consistentHash.maglev.tableSize: tableSize must be a prime number for maglev",
    );
}

#[test]
fn destination_rule_cookie_needs_name() {
    policy(
        "{loadBalancer: {consistentHash: {httpCookie: {ttl: 0s}}}}",
        ".loadBalancer.consistentHash.httpCookie.name: name required for HttpCookie",
    );
}

#[test]
fn destination_rule_unknown_tls_mode_is_refused() {
    policy(
        "{tls: {mode: STRICT}}",
        ".tls.mode: unknown value `STRICT` (expected one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL)",
    );
}

#[test]
fn destination_rule_mutual_tls_needs_certificates() {
    assert_eq!(
        dr("{host: d, trafficPolicy: {tls: {mode: MUTUAL}}}"),
        [
            "DestinationRule default/d: spec.trafficPolicy.tls.clientCertificate: client certificate required for mutual tls",
            "DestinationRule default/d: spec.trafficPolicy.tls.privateKey: private key required for mutual tls",
        ]
    );
}

#[test]
fn destination_rule_outlier_percent_over_100_is_refused() {
    policy(
        "{outlierDetection: {maxEjectionPercent: 101}}",
        ".outlierDetection.maxEjectionPercent: percentage 101 must be in [0, 100]",
    );
}

#[test]
fn destination_rule_outlier_interval_below_1ms_is_refused() {
    policy(
        "{outlierDetection: {interval: 0s}}",
        ".outlierDetection.interval: duration must be >= 1ms",
    );
}

#[test]
fn destination_rule_local_origin_failures_need_split() {
    policy(
        "{outlierDetection: {consecutiveLocalOriginFailures: 3}}",
        ".outlierDetection.consecutiveLocalOriginFailures: consecutive local origin failures is specified, but splitExternalLocalOriginErrors is not true",
    );
}

#[test]
fn destination_rule_negative_pool_limits_are_refused() {
    policy(
        "{connectionPool: {tcp: {maxConnections: -1}}}",
        ".connectionPool.tcp.maxConnections: must be >= 0",
    );
    policy(
        "{connectionPool: {http: {http2MaxRequests: -5}}}",
        ".connectionPool.http.http2MaxRequests: must be >= 0",
    );
}

#[test]
fn destination_rule_empty_pool_is_refused() {
    policy(
        "{connectionPool: {}}",
        ".connectionPool: connection pool must have at least one field",
    );
}

#[test]
fn destination_rule_unknown_h2_upgrade_policy_is_refused() {
    policy(
        "{connectionPool: {http: {h2UpgradePolicy: ALWAYS}}}",
        ".connectionPool.http.h2UpgradePolicy: unknown value `ALWAYS` (expected one of DEFAULT, DO_NOT_UPGRADE, UPGRADE)",
    );
}

#[test]
fn destination_rule_tcp_idle_timeout_zero_is_valid() {
    assert!(dr("{host: d, trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}}").is_empty());
}

#[test]
fn destination_rule_port_level_settings_need_port() {
    policy(
        "{portLevelSettings: [{loadBalancer: {simple: RANDOM}}]}",
        ".portLevelSettings[0].port: portTrafficPolicy must have valid port",
    );
}

#[test]
fn destination_rule_locality_distribute_must_sum_to_100() {
    policy(
        "{loadBalancer: {localityLbSetting: {distribute: [{from: 'a/*', to: {'a/*': 60, 'b/*': 30}}]}}}",
        ".loadBalancer.localityLbSetting.distribute[0]: total of weights in `to` must be 100",
    );
}

#[test]
fn destination_rule_selector_wildcard_is_refused() {
    one(
        "{host: d, workloadSelector: {matchLabels: {app: '*'}}}",
        "spec.workloadSelector.matchLabels.app: wildcard is not supported in selector",
    );
}

#[test]
fn destination_rule_tunnel_settings_are_checked() {
    assert_eq!(
        dr(
            "{host: d, trafficPolicy: {tunnel: {protocol: PUT, targetHost: 'bad host', targetPort: 0}}}"
        ),
        [
            "DestinationRule default/d: spec.trafficPolicy.tunnel.protocol: unknown value `PUT` (expected one of CONNECT, POST)",
            "DestinationRule default/d: spec.trafficPolicy.tunnel.targetHost: tunnel target host must be valid FQDN or IP address",
            "DestinationRule default/d: spec.trafficPolicy.tunnel.targetPort: port number 0 must be in the range 1..65535",
        ]
    );
}

#[test]
fn destination_rule_proxy_protocol_version_is_checked() {
    policy(
        "{proxyProtocol: {version: V3}}",
        ".proxyProtocol.version: unknown value `V3` (expected one of V1, V2)",
    );
}

#[test]
fn destination_rule_retry_budget_percent_is_bounded() {
    policy(
        "{retryBudget: {percent: 120}}",
        ".retryBudget.percent: percentage must be in [0, 100]",
    );
    policy(
        "{retryBudget: {percent: 20, budgetInterval: '10'}}",
        ".retryBudget.budgetInterval: invalid duration `10` (expected e.g. 1.5s, 100ms, 1m, 1h)",
    );
    assert!(dr("{host: d, trafficPolicy: {retryBudget: {percent: 20, minRetryConcurrency: 3, budgetInterval: 10s}}}").is_empty());
}

#[test]
fn destination_rule_warmup_is_checked() {
    assert_eq!(
        dr(
            "{host: d, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: '', minimumPercent: 120, aggression: 0.5}}}}"
        ),
        [
            "DestinationRule default/d: spec.trafficPolicy.loadBalancer.warmup.duration: duration is required",
            "DestinationRule default/d: spec.trafficPolicy.loadBalancer.warmup.minimumPercent: minimumPercent must be in [0, 100]",
            "DestinationRule default/d: spec.trafficPolicy.loadBalancer.warmup.aggression: aggression should be greater than or equal to 1",
        ]
    );
}

#[test]
fn destination_rule_credential_name_with_files_is_refused() {
    policy(
        "{tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}}",
        ".tls: cannot specify client certificates or CA certificate when credentialName is set",
    );
}

#[test]
fn destination_rule_maglev_table_size_is_bounded() {
    policy(
        "{loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 5000011}}}}",
        ".loadBalancer.consistentHash.maglev.tableSize: tableSize must be less than 5000011 for maglev",
    );
    assert!(dr("{host: d, trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}}}").is_empty());
}

#[test]
fn destination_rule_upgrade_with_client_protocol_is_refused() {
    policy(
        "{connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}",
        ".connectionPool.http.useClientProtocol: use client protocol must not be true when h2UpgradePolicy is UPGRADE",
    );
}
