use super::*;
use crate::resource::parse_documents;

const CONFIG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit";

/// The limits of one EnvoyFilter's patches, named `f`.
fn read(patches: &[String]) -> Vec<(String, LocalRateLimit)> {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: f}}\n\
         spec:\n  configPatches:\n{}",
        patches
            .iter()
            .map(|p| format!("  - {p}\n"))
            .collect::<String>()
    );
    let Ok(Resource::EnvoyFilter(f)) = parse_documents(&yaml, "default").remove(0) else {
        panic!("not an EnvoyFilter: {yaml}");
    };
    local_rate_limits(&f)
        .expect("valid")
        .into_iter()
        .map(|l| ("default/EnvoyFilter/f".to_owned(), l))
        .collect()
}

fn insert(listener: &str, config: &str) -> String {
    format!(
        "{{applyTo: HTTP_FILTER, match: {{context: SIDECAR_INBOUND{listener}}}, patch: {{operation: INSERT_BEFORE, value: \
         {{name: envoy.filters.http.local_ratelimit, typed_config: {{'@type': '{CONFIG_TYPE}', stat_prefix: s{config}}}}}}}}}"
    )
}

fn route(apply_to: &str, rc_match: &str, max_tokens: u32) -> String {
    format!(
        "{{applyTo: {apply_to}, match: {{context: SIDECAR_INBOUND, routeConfiguration: {rc_match}}}, \
         patch: {{operation: MERGE, value: {{typed_per_filter_config: {{envoy.filters.http.local_ratelimit: \
         {{'@type': '{CONFIG_TYPE}', token_bucket: {{max_tokens: {max_tokens}, fill_interval: 60s}}, \
         response_headers_to_add: [{{append: false, header: {{key: x-local-rate-limit, value: 'true'}}}}]}}}}}}}}}}"
    )
}

const BUCKET: &str = ", token_bucket: {max_tokens: 100, fill_interval: 1s}";

fn port(target_port: u32, service_port: u32, protocol: pb::Protocol) -> pb::InboundPort {
    pb::InboundPort {
        target_port,
        service_port,
        protocol: protocol as i32,
        ..Default::default()
    }
}

/// productpage: service port 9080 -> target 8080 (HTTP), 9090 -> 9090 (TCP).
fn ports() -> Vec<pb::InboundPort> {
    vec![
        port(8080, 9080, pb::Protocol::Http),
        port(9090, 9090, pb::Protocol::Tcp),
    ]
}

fn summary(limits: &[pb::RateLimit]) -> Vec<(u32, Vec<u32>, Vec<u32>)> {
    limits
        .iter()
        .map(|l| (l.max_tokens, l.ports.clone(), l.except_ports.clone()))
        .collect()
}

#[test]
fn per_route_config_replaces_filter_config_on_its_service_port() {
    let limits = read(&[
        insert("", BUCKET),
        route(
            "HTTP_ROUTE",
            "{vhost: {name: 'inbound|http|9080', route: {action: ANY}}}",
            4,
        ),
    ]);
    let out = envoy_filter_limits(&limits, &ports());
    // The vhost is named by service port; the limit goes by target port.
    assert_eq!(
        summary(&out),
        [(100, vec![], vec![8080]), (4, vec![8080], vec![])]
    );
    let per_route = &out[1];
    assert_eq!(per_route.status, 429);
    assert_eq!(per_route.response_headers[0].name, "x-local-rate-limit");
    // It runs where the filter was inserted: at the front.
    assert_eq!(
        per_route.stage,
        pb::RateLimitStage::BeforeAuthentication as i32
    );
}

#[test]
fn filter_without_bucket_limits_only_through_per_route_configs() {
    let alone = read(&[insert("", "")]);
    assert!(envoy_filter_limits(&alone, &ports()).is_empty());
    let with_route = read(&[
        insert("", ""),
        route("HTTP_ROUTE", "{vhost: {name: 'inbound|http|9080'}}", 4),
    ]);
    assert_eq!(
        summary(&envoy_filter_limits(&with_route, &ports())),
        [(4, vec![8080], vec![])]
    );
}

#[test]
fn per_route_config_without_the_filter_does_nothing() {
    let limits = read(&[route(
        "HTTP_ROUTE",
        "{vhost: {name: 'inbound|http|9080'}}",
        4,
    )]);
    assert!(envoy_filter_limits(&limits, &ports()).is_empty());
    // The filter inserted on another port only.
    let limits = read(&[
        insert(", listener: {portNumber: 7000}", ""),
        route("HTTP_ROUTE", "{vhost: {name: 'inbound|http|9080'}}", 4),
    ]);
    assert!(envoy_filter_limits(&limits, &ports()).is_empty());
}

#[test]
fn ports_are_target_ports_and_unknown_ones_match_nothing() {
    // listener.portNumber is compared with the chain's (target) port.
    let limits = read(&[insert(", listener: {portNumber: 8080}", BUCKET)]);
    assert_eq!(
        summary(&envoy_filter_limits(&limits, &ports())),
        [(100, vec![8080], vec![])]
    );
    // routeConfiguration.portNumber too; the service port names nothing.
    let by_target = read(&[insert("", ""), route("HTTP_ROUTE", "{portNumber: 8080}", 4)]);
    assert_eq!(
        summary(&envoy_filter_limits(&by_target, &ports())),
        [(4, vec![8080], vec![])]
    );
    let by_service = read(&[insert("", ""), route("HTTP_ROUTE", "{portNumber: 9080}", 4)]);
    assert!(envoy_filter_limits(&by_service, &ports()).is_empty());
    // No HTTP route on a TCP port.
    let tcp = read(&[
        insert("", ""),
        route("HTTP_ROUTE", "{vhost: {name: 'inbound|http|9090'}}", 4),
    ]);
    assert!(envoy_filter_limits(&tcp, &ports()).is_empty());
}

#[test]
fn route_config_wins_over_virtual_host_and_the_last_patch_wins() {
    let limits = read(&[
        insert("", BUCKET),
        route("HTTP_ROUTE", "{vhost: {name: 'inbound|http|9080'}}", 4),
        route("VIRTUAL_HOST", "{vhost: {name: 'inbound|http|9080'}}", 7),
        route("HTTP_ROUTE", "{vhost: {name: 'inbound|http|9080'}}", 5),
    ]);
    assert_eq!(
        summary(&envoy_filter_limits(&limits, &ports())),
        [(100, vec![], vec![8080]), (5, vec![8080], vec![])]
    );
    // A per-route config on every route replaces the filter everywhere,
    // with a bucket per port (each port has its own route configuration):
    // the HTTP port 8080, and the ports no service declares.
    let everywhere = read(&[insert("", BUCKET), route("HTTP_ROUTE", "{}", 3)]);
    assert_eq!(
        summary(&envoy_filter_limits(&everywhere, &ports())),
        [(3, vec![], vec![8080]), (3, vec![8080], vec![])]
    );
}
