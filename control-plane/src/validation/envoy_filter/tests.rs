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
            target: LimitTarget::Filter { port: None },
            bucket: Some(Bucket {
                max_tokens: 100,
                tokens_per_fill: 10,
                fill_interval: Duration::from_secs(1),
            }),
            enabled_percent: 100.0,
            enforced_percent: 100.0,
            stat_prefix: Some("http_local_rate_limiter".into()),
            // The seed does not ask for Envoy's x-ratelimit-* headers.
            x_ratelimit_headers: false,
            // INSERT_BEFORE without a subFilter: the front of the chain.
            stage: LimitStage::BeforeAuthentication,
            status: 429,
            response_headers: Vec::new(),
            request_headers_when_not_enforced: Vec::new(),
        }
    );
}

#[test]
fn local_rate_limit_camel_case_and_defaults_are_read() {
    let f = filter(&bucket(
        "tokenBucket: {maxTokens: '5', fillInterval: 0.5s}, filterEnabled: {defaultValue: {numerator: 50}}",
    ));
    let limit = local_rate_limit(&f).unwrap().unwrap();
    let bucket = limit.bucket.unwrap();
    assert_eq!(bucket.max_tokens, 5);
    assert_eq!(bucket.tokens_per_fill, 1);
    assert_eq!(bucket.fill_interval, Duration::from_millis(500));
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
        (
            limit.context,
            limit.bucket.map(|b| (b.max_tokens, b.fill_interval))
        ),
        (PatchContext::Any, Some((3, Duration::from_secs(60))))
    );
}

#[test]
fn local_rate_limit_other_apply_to_is_unsupported() {
    let f = filter("{applyTo: CLUSTER, patch: {operation: MERGE, value: {}}}");
    assert_eq!(
        local_rate_limit(&f).unwrap_err().to_string(),
        "spec.configPatches[0]: unsupported EnvoyFilter patch: applyTo CLUSTER (only HTTP_FILTER, and HTTP_ROUTE or VIRTUAL_HOST merging a local_ratelimit typed_per_filter_config, are supported)"
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
            "EnvoyFilter default/f: spec.configPatches[1].patch: required: the operation and value of the patch"
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

#[test]
fn well_formed_unsupported_patch_is_refused_by_name() {
    let yaml = filter_yaml("{applyTo: LISTENER, patch: {operation: MERGE, value: {}}}");
    assert_eq!(
        problems(&yaml),
        [
            "EnvoyFilter default/f: spec.configPatches[0]: unsupported EnvoyFilter patch: applyTo LISTENER (only HTTP_FILTER, and HTTP_ROUTE or VIRTUAL_HOST merging a local_ratelimit typed_per_filter_config, are supported)"
        ]
    );
}

/// Istio's `ValidateEnvoyFilter` checks every patch, gateway ones included:
/// they are refused before being classified as "not applied".
#[test]
fn malformed_patches_are_refused_even_when_inert() {
    let cases = [
        (
            "{match: {context: GATEWAY}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].applyTo: required: the kind of Envoy object patched",
        ),
        (
            "{applyTo: INVALID, match: {context: GATEWAY}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].applyTo: required: the kind of Envoy object patched",
        ),
        (
            "{applyTo: SECRET, match: {context: GATEWAY}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].applyTo: unknown value `SECRET` (expected one of LISTENER, FILTER_CHAIN, NETWORK_FILTER, HTTP_FILTER, ROUTE_CONFIGURATION, VIRTUAL_HOST, HTTP_ROUTE, CLUSTER, EXTENSION_CONFIG, BOOTSTRAP, LISTENER_FILTER)",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY}}",
            "spec.configPatches[0].patch: required: the operation and value of the patch",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY}, patch: {value: {}}}",
            "spec.configPatches[0].patch.operation: required: how the patch is applied",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY}, patch: {operation: PREPEND, value: {}}}",
            "spec.configPatches[0].patch.operation: unknown value `PREPEND` (expected one of MERGE, ADD, REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE)",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY}, patch: {operation: INSERT_BEFORE}}",
            "spec.configPatches[0].patch.value: required: operation INSERT_BEFORE needs a value (only REMOVE takes none)",
        ),
        (
            "{applyTo: CLUSTER, patch: {operation: ADD}}",
            "spec.configPatches[0].patch.value: required: operation ADD needs a value (only REMOVE takes none)",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY}, patch: {operation: ADD, value: {}, filterClass: FIRST}}",
            "spec.configPatches[0].patch.filterClass: unknown value `FIRST` (expected one of UNSPECIFIED, AUTHN, AUTHZ, STATS)",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAYS}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].match.context: unknown value `GATEWAYS` (expected one of ANY, SIDECAR_INBOUND, SIDECAR_OUTBOUND, GATEWAY)",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY, proxy: {proxyVersion: '^1\\.(2'}}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].match.proxy.proxyVersion: invalid regular expression",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY, cluster: {name: x}}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].match: applyTo HTTP_FILTER patches listener objects: the match must be a listener match",
        ),
        (
            "{applyTo: CLUSTER, match: {listener: {name: x}}, patch: {operation: ADD, value: {name: c}}}",
            "spec.configPatches[0].match: applyTo CLUSTER patches clusters: the match must be a cluster match",
        ),
        (
            "{applyTo: VIRTUAL_HOST, match: {context: GATEWAY, listener: {name: x}}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].match: applyTo VIRTUAL_HOST patches route objects: the match must be a routeConfiguration match",
        ),
        (
            "{applyTo: VIRTUAL_HOST, match: {context: GATEWAY, routeConfiguration: {vhost: {route: {action: FORWARD}}}}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].match.routeConfiguration.vhost.route.action: unknown value `FORWARD` (expected one of ANY, ROUTE, REDIRECT, DIRECT_RESPONSE)",
        ),
        (
            "{applyTo: CLUSTER, match: {cluster: {name: x}, listener: {name: y}}, patch: {operation: ADD, value: {name: c}}}",
            "spec.configPatches[0].match: set only one of listener, routeConfiguration and cluster",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY, listener: {filterChain: {filter: {subFilter: {name: envoy.filters.http.router}}}}}, patch: {operation: INSERT_BEFORE, value: {}}}",
            "spec.configPatches[0].match.listener.filterChain.filter.name: required: a filter match needs a name to match on",
        ),
        (
            "{applyTo: NETWORK_FILTER, match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}, patch: {operation: MERGE, value: {}}}",
            "spec.configPatches[0].match.listener.filterChain.filter.subFilter: a subFilter match is only for applyTo HTTP_FILTER (not NETWORK_FILTER)",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.tcp_proxy, subFilter: {name: envoy.filters.http.router}}}}}, patch: {operation: INSERT_BEFORE, value: {}}}",
            "spec.configPatches[0].match.listener.filterChain.filter.subFilter: a subFilter match needs the filter match to name envoy.filters.network.http_connection_manager",
        ),
        (
            "{applyTo: HTTP_FILTER, match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {}}}}}, patch: {operation: INSERT_BEFORE, value: {}}}",
            "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name: required: a subFilter match needs a name to match on",
        ),
    ];
    for (patch, expected) in cases {
        let f = filter(patch);
        let r = Resource::EnvoyFilter(f.clone());
        let refused = problems(&filter_yaml(patch));
        assert_eq!(refused.len(), 1, "{patch}: {refused:?}");
        assert!(
            refused[0].starts_with(&format!("EnvoyFilter default/f: {expected}")),
            "{patch}: {refused:?}"
        );
        let err = local_rate_limit(&f).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{patch}: {err}");
        assert!(
            crate::validation::warnings(&r)
                .iter()
                .all(|w| !w.message.starts_with("not applied")),
            "{patch}: a malformed patch is not classified as inert"
        );
    }
}

#[test]
fn remove_needs_no_value_and_well_formed_gateway_patches_stay_inert() {
    for patch in [
        "{applyTo: HTTP_FILTER, match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.cors}}}}}, patch: {operation: REMOVE}}",
        "{applyTo: LISTENER, match: {context: GATEWAY, proxy: {proxyVersion: '^1\\.2[0-9].*'}}, patch: {operation: MERGE, value: {}}}",
        "{applyTo: CLUSTER, match: {cluster: {service: ratelimit.default.svc.cluster.local}}, patch: {operation: ADD, value: {name: c}}}",
    ] {
        let r = Resource::EnvoyFilter(filter(patch));
        assert!(
            crate::validation::validate(&r).is_empty(),
            "{patch}: {:?}",
            problems(&filter_yaml(patch))
        );
        let warned = crate::validation::warnings(&r);
        assert!(
            warned.iter().any(|w| w.message.starts_with("not applied")),
            "{patch}: {warned:?}"
        );
    }
}

#[test]
fn local_rate_limit_x_ratelimit_headers_follow_envoys_option() {
    let with = |v: &str| {
        filter(&bucket(&format!(
            "token_bucket: {{max_tokens: 5, fill_interval: 1s}}, enable_x_ratelimit_headers: {v}"
        )))
    };
    let on = local_rate_limit(&with("DRAFT_VERSION_03"))
        .unwrap()
        .unwrap();
    assert!(on.x_ratelimit_headers);
    let off = local_rate_limit(&with("OFF")).unwrap().unwrap();
    assert!(!off.x_ratelimit_headers);
    let bad = local_rate_limit(&with("V4")).unwrap_err().to_string();
    assert!(
        bad.ends_with("enable_x_ratelimit_headers: must be OFF or DRAFT_VERSION_03"),
        "{bad}"
    );
}

#[test]
fn local_rate_limit_stage_follows_where_istio_inserts_it() {
    let at = |operation: &str, sub: Option<&str>| {
        let sub = sub.map_or(String::new(), |n| format!(", subFilter: {{name: {n}}}"));
        let f = filter(&format!(
            "{{applyTo: HTTP_FILTER, match: {{context: SIDECAR_INBOUND, listener: {{filterChain: {{filter: \
             {{name: envoy.filters.network.http_connection_manager{sub}}}}}}}}}, patch: {{operation: {operation}, \
             value: {{name: envoy.filters.http.local_ratelimit, typed_config: {{'@type': '{CONFIG_TYPE}', \
             token_bucket: {{max_tokens: 1, fill_interval: 1s}}}}}}}}}}"
        ));
        local_rate_limit(&f).unwrap().unwrap().stage
    };
    use LimitStage::*;
    assert_eq!(at("INSERT_FIRST", None), BeforeAuthentication);
    assert_eq!(at("INSERT_BEFORE", None), BeforeAuthentication);
    assert_eq!(
        at("INSERT_BEFORE", Some("envoy.filters.http.jwt_authn")),
        BeforeAuthentication
    );
    assert_eq!(
        at("INSERT_AFTER", Some("istio.metadata_exchange")),
        BeforeAuthentication
    );
    assert_eq!(
        at("INSERT_BEFORE", Some("envoy.filters.http.rbac")),
        BeforeAuthorization
    );
    assert_eq!(
        at("INSERT_AFTER", Some("envoy.filters.http.jwt_authn")),
        BeforeAuthorization
    );
    assert_eq!(
        at("INSERT_BEFORE", Some("envoy.filters.http.router")),
        AfterAuthorization
    );
    assert_eq!(
        at("INSERT_AFTER", Some("envoy.filters.http.rbac")),
        AfterAuthorization
    );
    assert_eq!(at("ADD", None), AfterAuthorization);
    assert_eq!(at("INSERT_AFTER", None), AfterAuthorization);
}

fn route_patch(apply_to: &str, rc_match: &str, value: &str) -> String {
    format!(
        "{{applyTo: {apply_to}, match: {{context: SIDECAR_INBOUND, routeConfiguration: {rc_match}}}, \
         patch: {{operation: MERGE, value: {value}}}}}"
    )
}

fn per_route(config: &str) -> String {
    format!(
        "{{typed_per_filter_config: {{envoy.filters.http.local_ratelimit: {{'@type': '{CONFIG_TYPE}', {config}}}}}}}"
    )
}

const BUCKET: &str = "token_bucket: {max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s}";

#[test]
fn local_rate_limit_filter_without_bucket_is_accepted() {
    let patch = bucket("stat_prefix: http_local_rate_limiter");
    assert_eq!(problems(&filter_yaml(&patch)), Vec::<String>::new());
    let f = filter(&patch);
    let limit = local_rate_limit(&f).unwrap().unwrap();
    assert_eq!(limit.bucket, None);
    assert_eq!(limit.target, LimitTarget::Filter { port: None });
}

#[test]
fn local_rate_limit_status_and_headers_are_read() {
    let f = filter(&bucket(&format!(
        "{BUCKET}, status: {{code: ServiceUnavailable}}, response_headers_to_add: [\
         {{append: false, header: {{key: X-Local-Rate-Limit, value: 'true'}}}}, \
         {{append_action: ADD_IF_ABSENT, header: {{key: x-b, value: b}}}}, \
         {{header: {{key: x-empty, value: ''}}}}], \
         request_headers_to_add_when_not_enforced: [{{header: {{key: x-over, value: '1'}}}}]"
    )));
    let limit = local_rate_limit(&f).unwrap().unwrap();
    assert_eq!(limit.status, 503);
    assert_eq!(
        limit.response_headers,
        [
            HeaderToAdd {
                name: "x-local-rate-limit".into(),
                value: "true".into(),
                append: HeaderAppend::OverwriteIfExistsOrAdd,
            },
            HeaderToAdd {
                name: "x-b".into(),
                value: "b".into(),
                append: HeaderAppend::AddIfAbsent,
            },
        ]
    );
    assert_eq!(
        limit.request_headers_when_not_enforced[0].append,
        HeaderAppend::AppendIfExistsOrAdd
    );
    // Envoy answers 429 for a code below 400; numbers are accepted too.
    for (code, status) in [("OK", 429), ("504", 504), ("TooManyRequests", 429)] {
        let f = filter(&bucket(&format!("{BUCKET}, status: {{code: '{code}'}}")));
        assert_eq!(local_rate_limit(&f).unwrap().unwrap().status, status);
    }
}

#[test]
fn local_rate_limit_bad_status_and_headers_name_the_field() {
    let path = "spec.configPatches[0].patch.value.typed_config";
    for (config, error) in [
        (
            "status: {code: Teapot}",
            format!("{path}.status.code: must be a name of Envoy's type.v3.StatusCode"),
        ),
        (
            "status: {code: 499}",
            format!("{path}.status.code: must be"),
        ),
        (
            "response_headers_to_add: [{append: true, append_action: OVERWRITE_IF_EXISTS, header: {key: a, value: b}}]",
            format!("{path}.response_headers_to_add[0].append: set only one"),
        ),
        (
            "response_headers_to_add: [{header: {key: ':status', value: b}}]",
            format!("{path}.response_headers_to_add[0].header.key: `:status` is not a header"),
        ),
        (
            "response_headers_to_add: [{append_action: SOMETIMES, header: {key: a, value: b}}]",
            format!("{path}.response_headers_to_add[0].append_action: must be one of"),
        ),
        (
            "token_buckets: {}",
            format!("{path}.token_buckets: unknown field"),
        ),
    ] {
        let f = filter(&bucket(&format!("{BUCKET}, {config}")));
        let err = local_rate_limit(&f).unwrap_err().to_string();
        assert!(err.starts_with(&error), "{config}: {err}");
    }
}

#[test]
fn local_rate_limit_unapplied_fields_and_outbound_are_warned() {
    let f = filter(&bucket(&format!(
        "{BUCKET}, local_rate_limit_per_downstream_connection: true, \
         descriptors: [{{entries: [{{key: a, value: b}}], token_bucket: {{max_tokens: 1, fill_interval: 1s}}}}]"
    )));
    let w = crate::validation::warnings(&Resource::EnvoyFilter(f));
    let fields: Vec<&str> = w.iter().map(|e| e.path.as_str()).collect();
    let path = "spec.configPatches[0].patch.value.typed_config";
    assert!(
        fields.contains(&format!("{path}.descriptors").as_str()),
        "{w:?}"
    );
    assert!(
        fields.contains(&format!("{path}.local_rate_limit_per_downstream_connection").as_str()),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|e| e.message.contains("descriptors not applied"))
    );
    let outbound = bucket(BUCKET).replace("SIDECAR_INBOUND", "SIDECAR_OUTBOUND");
    let w = crate::validation::warnings(&Resource::EnvoyFilter(filter(&outbound)));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].path, "spec.configPatches[0].match.context");
    assert!(w[0].message.starts_with("not applied"), "{w:?}");
}

#[test]
fn local_rate_limit_listener_port_is_read() {
    let patch = bucket(BUCKET).replace(
        "context: SIDECAR_INBOUND",
        "context: SIDECAR_INBOUND, listener: {portNumber: 9080}",
    );
    let limit = local_rate_limit(&filter(&patch)).unwrap().unwrap();
    assert_eq!(limit.target, LimitTarget::Filter { port: Some(9080) });
    let patch = bucket(BUCKET).replace(
        "context: SIDECAR_INBOUND",
        "context: SIDECAR_INBOUND, listener: {portNumber: 9080, filterChain: {destinationPort: 8000}}",
    );
    let limit = local_rate_limit(&filter(&patch)).unwrap().unwrap();
    assert_eq!(limit.target, LimitTarget::Nowhere);
}

#[test]
fn local_rate_limit_per_route_config_is_read() {
    let patch = route_patch(
        "HTTP_ROUTE",
        "{vhost: {name: 'inbound|http|9080', route: {action: ANY}}}",
        &per_route(&format!(
            "{BUCKET}, response_headers_to_add: [{{header: {{key: x-local-rate-limit, value: 'true'}}}}]"
        )),
    );
    assert_eq!(problems(&filter_yaml(&patch)), Vec::<String>::new());
    let f = filter(&patch);
    let limit = local_rate_limit(&f).unwrap().unwrap();
    assert_eq!(
        limit.target,
        LimitTarget::Route {
            virtual_host: false,
            port: None,
            service_port: Some(9080),
        }
    );
    assert_eq!(limit.bucket.map(|b| b.max_tokens), Some(4));
    // A TypedStruct works too, and a route configuration named by target port.
    let typed_struct = format!(
        "{{typed_per_filter_config: {{envoy.filters.http.local_ratelimit: {{'@type': type.googleapis.com/udpa.type.v1.TypedStruct, \
         type_url: '{CONFIG_TYPE}', value: {{{BUCKET}}}}}}}}}"
    );
    let f = filter(&route_patch(
        "VIRTUAL_HOST",
        "{name: 'inbound|8080||', portNumber: 8080}",
        &typed_struct,
    ));
    assert_eq!(
        local_rate_limit(&f).unwrap().unwrap().target,
        LimitTarget::Route {
            virtual_host: true,
            port: Some(8080),
            service_port: None,
        }
    );
}

#[test]
fn local_rate_limit_per_route_match_of_no_inbound_route_patches_nothing() {
    for rc_match in [
        "{vhost: {name: 'productpage.default.svc.cluster.local:9080'}}",
        "{vhost: {route: {name: other}}}",
        "{vhost: {route: {action: REDIRECT}}}",
        "{name: '9080'}",
        "{name: 'inbound|9080||', portNumber: 8080}",
    ] {
        let f = filter(&route_patch("HTTP_ROUTE", rc_match, &per_route(BUCKET)));
        let limit = local_rate_limit(&f).unwrap().unwrap();
        assert_eq!(limit.target, LimitTarget::Nowhere, "{rc_match}");
    }
}

#[test]
fn local_rate_limit_per_route_problems_name_the_field() {
    let value = "spec.configPatches[0].patch.value";
    let per_filter = format!("{value}.typed_per_filter_config");
    for (apply_to, operation, merged, error) in [
        (
            "HTTP_ROUTE",
            "MERGE",
            per_route("stat_prefix: x"),
            format!(
                "{per_filter}.envoy.filters.http.local_ratelimit: token_bucket is required in a per-route config"
            ),
        ),
        (
            "HTTP_ROUTE",
            "MERGE",
            "{route: {timeout: 1s}}".to_owned(),
            format!("{value}.route.timeout: unsupported EnvoyFilter patch: merging timeout"),
        ),
        (
            "HTTP_ROUTE",
            "MERGE",
            "{typed_per_filter_config: {envoy.filters.http.fault: {}}}".to_owned(),
            format!("{per_filter}.envoy.filters.http.fault: unsupported EnvoyFilter patch"),
        ),
        (
            "HTTP_ROUTE",
            "REMOVE",
            per_route(BUCKET),
            "spec.configPatches[0]: unsupported EnvoyFilter patch: operation REMOVE on HTTP_ROUTE"
                .to_owned(),
        ),
    ] {
        let patch = route_patch(apply_to, "{vhost: {name: 'inbound|http|9080'}}", &merged)
            .replace("operation: MERGE", &format!("operation: {operation}"));
        let err = local_rate_limit(&filter(&patch)).unwrap_err().to_string();
        assert!(err.starts_with(&error), "{err}");
    }
}

#[test]
fn local_rate_limit_route_rate_limits_are_warned_not_refused() {
    let merged = per_route(BUCKET).replacen(
        '{',
        "{route: {rate_limits: [{actions: [{remote_address: {}}]}]}, ",
        1,
    );
    let patch = route_patch(
        "HTTP_ROUTE",
        "{vhost: {name: 'inbound|http|9080'}}",
        &merged,
    );
    assert_eq!(problems(&filter_yaml(&patch)), Vec::<String>::new());
    let f = filter(&patch);
    let w = crate::validation::warnings(&Resource::EnvoyFilter(f));
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        w[0].path,
        "spec.configPatches[0].patch.value.route.rate_limits"
    );
}
