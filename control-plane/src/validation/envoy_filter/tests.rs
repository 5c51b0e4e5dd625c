use super::*;
use crate::resource::{Resource, parse_documents};
use crate::validation::tests::problems;

const SEED: &str = include_str!("../../../../../shared/seed-mesh.yaml");

fn filter_yaml(patch: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: f}}\n\
         spec:\n  workloadSelector: {{labels: {{app: orders}}}}\n  configPatches:\n  - {patch}\n"
    )
}

fn filter(patch: &str) -> EnvoyFilter {
    match parse_documents(&filter_yaml(patch), "default").remove(0) {
        Ok(Resource::EnvoyFilter(f)) => f,
        other => panic!("{other:?}"),
    }
}

fn bucket(config: &str) -> String {
    format!(
        "{{applyTo: HTTP_FILTER, match: {{context: SIDECAR_INBOUND}}, patch: {{operation: INSERT_BEFORE, value: \
         {{name: envoy.filters.http.local_ratelimit, typed_config: {{'@type': '{CONFIG_TYPE}', {config}}}}}}}}}"
    )
}

#[test]
fn local_rate_limit_seed_filter_is_read() {
    let seed = parse_documents(SEED, "default");
    let f = seed
        .into_iter()
        .find_map(|d| match d {
            Ok(Resource::EnvoyFilter(f)) => Some(f),
            _ => None,
        })
        .unwrap();
    let limit = local_rate_limit(&f).unwrap().unwrap();
    assert_eq!(
        limit,
        LocalRateLimit {
            context: PatchContext::Inbound,
            max_tokens: 100,
            tokens_per_fill: 10,
            fill_interval: Duration::from_secs(1),
            enabled_percent: 100.0,
            enforced_percent: 100.0,
            stat_prefix: Some("http_local_rate_limiter".into()),
        }
    );
}

#[test]
fn local_rate_limit_camel_case_and_defaults_are_read() {
    let f = filter(&bucket(
        "tokenBucket: {maxTokens: '5', fillInterval: 0.5s}, filterEnabled: {defaultValue: {numerator: 50}}",
    ));
    let limit = local_rate_limit(&f).unwrap().unwrap();
    assert_eq!(limit.max_tokens, 5);
    assert_eq!(limit.tokens_per_fill, 1);
    assert_eq!(limit.fill_interval, Duration::from_millis(500));
    assert_eq!(limit.enabled_percent, 50.0);
    assert_eq!(limit.enforced_percent, 0.0);
}

#[test]
fn local_rate_limit_typed_struct_is_read() {
    let f = filter(&format!(
        "{{applyTo: HTTP_FILTER, patch: {{operation: INSERT_BEFORE, value: {{name: envoy.filters.http.local_ratelimit, \
         typed_config: {{'@type': type.googleapis.com/udpa.type.v1.TypedStruct, type_url: '{CONFIG_TYPE}', \
         value: {{token_bucket: {{max_tokens: 3, tokens_per_fill: 3, fill_interval: 60s}}}}}}}}}}}}"
    ));
    let limit = local_rate_limit(&f).unwrap().unwrap();
    assert_eq!(
        (limit.context, limit.max_tokens, limit.fill_interval),
        (PatchContext::Any, 3, Duration::from_secs(60))
    );
}

#[test]
fn local_rate_limit_other_apply_to_is_unsupported() {
    let f = filter("{applyTo: CLUSTER, patch: {operation: MERGE, value: {}}}");
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        "spec.configPatches[0]: unsupported EnvoyFilter patch: applyTo CLUSTER (only HTTP_FILTER is supported)"
    );
}

#[test]
fn local_rate_limit_other_filter_is_unsupported() {
    let f = filter(
        "{applyTo: HTTP_FILTER, patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.lua}}}",
    );
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        "spec.configPatches[0]: unsupported EnvoyFilter patch: filter `envoy.filters.http.lua` (only envoy.filters.http.local_ratelimit is supported)"
    );
}

#[test]
fn local_rate_limit_merge_operation_is_unsupported() {
    let f = filter(
        "{applyTo: HTTP_FILTER, patch: {operation: MERGE, value: {name: envoy.filters.http.local_ratelimit}}}",
    );
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        "spec.configPatches[0]: unsupported EnvoyFilter patch: operation MERGE (only filter insertion is supported)"
    );
}

#[test]
fn local_rate_limit_gateway_context_limits_no_sidecar() {
    let f = filter(
        "{applyTo: HTTP_FILTER, match: {context: GATEWAY}, patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.local_ratelimit}}}",
    );
    assert_eq!(local_rate_limit(&f).unwrap(), None);
}

#[test]
fn local_rate_limit_missing_max_tokens_names_field() {
    let f = filter(&bucket("token_bucket: {fill_interval: 1s}"));
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        "spec.configPatches[0].patch.value.typed_config.token_bucket: max_tokens is required"
    );
}

#[test]
fn local_rate_limit_zero_tokens_are_refused() {
    let f = filter(&bucket("token_bucket: {max_tokens: 0, fill_interval: 1s}"));
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        "spec.configPatches[0].patch.value.typed_config.token_bucket.max_tokens: must be an integer in 1..4294967295"
    );
}

#[test]
fn local_rate_limit_fast_fill_interval_is_refused() {
    let f = filter(&bucket(
        "token_bucket: {max_tokens: 1, fill_interval: 10ms}",
    ));
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        "spec.configPatches[0].patch.value.typed_config.token_bucket.fill_interval: fill_interval must be >= 50ms"
    );
}

#[test]
fn local_rate_limit_wrong_type_url_is_refused() {
    let f = filter(
        "{applyTo: HTTP_FILTER, patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.local_ratelimit, typed_config: {'@type': x.y.Z}}}}",
    );
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        format!(
            "spec.configPatches[0].patch.value.typed_config.@type: unsupported EnvoyFilter patch: type `x.y.Z` (expected {CONFIG_TYPE})"
        )
    );
}

#[test]
fn envoy_filter_validation_reports_each_unsupported_patch() {
    let yaml = filter_yaml(&format!(
        "{}\n  - {{applyTo: LISTENER}}",
        bucket("token_bucket: {max_tokens: 1, fill_interval: 1s}")
    ));
    assert_eq!(
        problems(&yaml),
        [
            "EnvoyFilter default/f: spec.configPatches[1]: unsupported EnvoyFilter patch: applyTo LISTENER (only HTTP_FILTER is supported)"
        ]
    );
}

#[test]
fn envoy_filter_without_patches_is_refused() {
    let yaml = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: f}\nspec: {}\n";
    assert_eq!(
        problems(yaml),
        ["EnvoyFilter default/f: spec.configPatches: at least one config patch is required"]
    );
}

#[test]
fn gateway_patches_and_added_clusters_are_accepted_with_a_warning() {
    // The shape of Istio's global rate-limit sample: a filter and a virtual
    // host patch for the ingress gateway, plus the cluster of the rate-limit
    // service; none of it changes what a sidecar does.
    let text = r#"
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: gateway-ratelimit, namespace: istio-system}
spec:
  workloadSelector: {labels: {istio: ingressgateway}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: GATEWAY
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.ratelimit
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
          domain: shop
  - applyTo: CLUSTER
    match:
      cluster: {service: ratelimit.default.svc.cluster.local}
    patch:
      operation: ADD
      value:
        name: rate_limit_cluster
        type: STRICT_DNS
        connect_timeout: 10s
  - applyTo: VIRTUAL_HOST
    match:
      context: GATEWAY
      routeConfiguration: {vhost: {name: "", route: {action: ANY}}}
    patch:
      operation: MERGE
      value: {rate_limits: [{actions: [{request_headers: {header_name: ":path", descriptor_key: PATH}}]}]}
"#;
    let f = match parse_documents(text, "default").remove(0) {
        Ok(Resource::EnvoyFilter(f)) => f,
        other => panic!("{other:?}"),
    };
    let r = Resource::EnvoyFilter(f.clone());
    assert!(crate::validation::validate(&r).is_empty());
    assert_eq!(local_rate_limits(&f).unwrap(), []);
    let warned: Vec<String> = crate::validation::warnings(&r)
        .into_iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    assert_eq!(warned.len(), 3, "{warned:#?}");
    assert!(warned[0].starts_with("spec.configPatches[0]: not applied: the patch is for gateways"));
    assert!(warned[1].starts_with("spec.configPatches[1]: not applied: it adds a cluster"));
    // A cluster patch that changes a sidecar's clusters is still refused.
    let merge = filter(
        "{applyTo: CLUSTER, match: {context: SIDECAR_OUTBOUND}, patch: {operation: MERGE, value: {}}}",
    );
    assert!(
        local_rate_limit(&merge)
            .unwrap_err()
            .to_string()
            .contains("applyTo CLUSTER")
    );
}
