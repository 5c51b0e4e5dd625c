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
