use crate::validation::tests::problems;

fn telemetry(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: t, namespace: default}}\nspec:\n{spec}"
    ))
}

#[test]
fn telemetry_istio_doc_examples_are_valid() {
    for spec in [
        "  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 100\n",
        "  accessLogging:\n  - providers: [{name: envoy}]\n",
        "  selector: {matchLabels: {app: reviews}}\n  accessLogging:\n  - disabled: true\n",
        "  tracing:\n  - customTags:\n      env: {environment: {name: POD_NAME, defaultValue: x}}\n      user: {header: {name: end-user}}\n      team: {literal: {value: t}}\n",
        "  tracing:\n  - match: {mode: SERVER}\n    disableSpanReporting: true\n",
    ] {
        assert_eq!(telemetry(spec), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn telemetry_sampling_out_of_range_names_the_field() {
    let p = telemetry("  tracing:\n  - randomSamplingPercentage: 150\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("spec.tracing[0].randomSamplingPercentage"),
        "{p:?}"
    );
}

#[test]
fn telemetry_two_tracing_providers_are_refused() {
    let p = telemetry("  tracing:\n  - providers: [{name: a}, {name: b}]\n");
    assert!(p[0].contains("spec.tracing[0].providers"), "{p:?}");
}

#[test]
fn telemetry_custom_tag_needs_exactly_one_source() {
    let none = telemetry("  tracing:\n  - customTags:\n      x: {}\n");
    assert!(none[0].contains("spec.tracing[0].customTags.x"), "{none:?}");
    let two = telemetry(
        "  tracing:\n  - customTags:\n      x: {literal: {value: a}, header: {name: h}}\n",
    );
    assert!(two[0].contains("only one of"), "{two:?}");
}

#[test]
fn telemetry_filter_target_ref_and_bad_mode_are_refused() {
    let p = telemetry(
        "  targetRef: {kind: Gateway, name: gw}\n  accessLogging:\n  - filter: {expression: 'request.time > 0'}\n    match: {mode: BOTH}\n",
    );
    let text = p.join("\n");
    assert!(text.contains("spec.targetRef"), "{text}");
    assert!(
        text.contains(
            "spec.accessLogging[0].filter.expression: unsupported attribute `request.time`"
        ),
        "{text}"
    );
    assert!(text.contains("spec.accessLogging[0].match.mode"), "{text}");
}

#[test]
fn telemetry_istio_doc_filter_expressions_are_valid() {
    for expr in [
        "response.code >= 400",
        "response.code >= 400 || xds.cluster_name == 'BlackHoleCluster'",
        "request.url_path.contains('login') && request.headers['x-user-type'] == 'dev'",
    ] {
        let spec = format!(
            "  accessLogging:\n  - providers: [{{name: envoy}}]\n    filter: {{expression: \"{expr}\"}}\n"
        );
        assert_eq!(telemetry(&spec), Vec::<String>::new(), "{expr}");
    }
}

#[test]
fn telemetry_metrics_overrides_istio_examples_are_valid() {
    for spec in [
        "  metrics:\n  - providers: [{name: prometheus}]\n    overrides:\n    - disabled: true\n      match: {mode: CLIENT, metric: ALL_METRICS}\n",
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      tagOverrides:\n        request_protocol: {operation: REMOVE}\n        request_host: {value: request.host}\n",
    ] {
        assert_eq!(telemetry(spec), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn telemetry_metrics_override_errors_name_the_field() {
    let p = telemetry(
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNTS}\n      disabled: true\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("spec.metrics[0].overrides[0].match.metric"),
        "{p:?}"
    );
    assert!(p[0].contains("REQUEST_COUNTS"), "{p:?}");
    let p = telemetry("  metrics:\n  - overrides:\n    - match: {mode: BOTH}\n");
    assert!(
        p[0].contains("spec.metrics[0].overrides[0].match.mode"),
        "{p:?}"
    );
    let p = telemetry("  metrics:\n  - overrides:\n    - disable: true\n");
    assert!(
        p[0].contains("spec.metrics[0].overrides[0]") && p[0].contains("disable"),
        "{p:?}"
    );
    let p = telemetry("  metrics:\n  - overrides:\n    - tagOverrides: {x: {operation: DROP}}\n");
    assert!(
        p[0].contains("spec.metrics[0].overrides[0].tagOverrides.x.operation"),
        "{p:?}"
    );
}

#[test]
fn telemetry_metrics_custom_metrics_warn_that_they_are_not_applied() {
    let docs = crate::resource::parse_documents(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: default}\nspec:\n  metrics:\n  - overrides:\n    - match: {customMetric: m}\n      disabled: true\n    - disabled: true\n      tagOverrides: {request_protocol: {operation: REMOVE}}\n",
        "default",
    );
    let resource = docs.into_iter().next().expect("one").expect("parses");
    let paths: Vec<String> = crate::validation::warnings(&resource)
        .iter()
        .map(|w| w.path.clone())
        .collect();
    // Tag overrides are applied: no warning for them.
    assert_eq!(paths, ["spec.metrics[0].overrides[0].match.customMetric"]);
}

#[test]
fn telemetry_tag_overrides_follow_istios_rules_and_the_cel_subset() {
    // Istio's documented examples are valid.
    for spec in [
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n      tagOverrides:\n        destination_port: {value: \"string(destination.port)\"}\n        request_host: {value: request.host}\n",
        "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: CLIENT}\n      tagOverrides:\n        destination_x: {value: filter_state.upstream_peer.app}\n    - match: {metric: REQUEST_COUNT, mode: SERVER}\n      tagOverrides:\n        source_x: {value: filter_state.downstream_peer.app}\n",
        "  metrics:\n  - overrides:\n    - match: {metric: ALL_METRICS}\n      tagOverrides:\n        grpc_response_status: {operation: REMOVE}\n",
    ] {
        assert_eq!(telemetry(spec), Vec::<String>::new(), "{spec}");
    }
    let cases = [
        (
            "x: {operation: UPSERT}",
            "tagOverrides.x.value",
            "value must be set when operation is UPSERT",
        ),
        (
            "x: {}",
            "tagOverrides.x.value",
            "value must be set when operation is UPSERT",
        ),
        (
            "x: {operation: REMOVE, value: request.host}",
            "tagOverrides.x.value",
            "value must not be set when operation is REMOVE",
        ),
        (
            "x: {value: request.hostname}",
            "tagOverrides.x.value",
            "unsupported attribute `request.hostname`",
        ),
        (
            "x: {value: \"request.host ==\"}",
            "tagOverrides.x.value",
            "request.host ==",
        ),
        (
            "bad-name: {value: request.host}",
            "tagOverrides.bad-name",
            "Prometheus label name",
        ),
        (
            "__reserved: {value: request.host}",
            "tagOverrides.__reserved",
            "Prometheus label name",
        ),
    ];
    for (tags, path, msg) in cases {
        let p = telemetry(&format!(
            "  metrics:\n  - overrides:\n    - tagOverrides: {{{tags}}}\n"
        ));
        assert_eq!(p.len(), 1, "{tags}: {p:?}");
        assert!(
            p[0].contains(&format!("spec.metrics[0].overrides[0].{path}")) && p[0].contains(msg),
            "{tags}: {p:?}"
        );
    }
}
