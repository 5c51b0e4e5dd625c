use super::*;
use crate::mesh_config::{MeshConfig, parse_mesh_config};
use crate::resource::parse_documents;
use std::sync::Arc;

const MESH: &str = r#"
enableTracing: true
defaultConfig:
  tracing:
    sampling: 10
extensionProviders:
- name: otel
  opentelemetry:
    service: observability/otel-collector.observability.svc.cluster.local
    port: 4317
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
- name: json-log
  envoyFileAccessLog:
    path: /dev/stdout
    logFormat:
      labels: {code: "%RESPONSE_CODE%"}
accessLogEncoding: JSON
outboundTrafficPolicy: {mode: ALLOW_ANY}
"#;

fn index(mesh: &str, yaml: &str) -> MeshIndex {
    let (mesh, _) = parse_mesh_config(mesh, MeshConfig::default()).expect("mesh config parses");
    let mut idx = MeshIndex::from_resources(
        1,
        parse_documents(yaml, "default")
            .into_iter()
            .map(|r| r.expect("parses")),
    );
    idx.mesh = Arc::new(mesh);
    idx
}

fn proxy(namespace: &str, labels: &[(&str, &str)]) -> ProxyIdentity {
    ProxyIdentity {
        id: "p".into(),
        workload: "reviews-v1".into(),
        namespace: namespace.into(),
        service_account: "sa".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ips: vec![],
        trust_domain: "cluster.local".into(),
    }
}

const ROOT_OTEL: &str = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 100
    customTags:
      team: {literal: {value: bookinfo}}
"#;

#[test]
fn telemetry_none_anywhere_gives_no_tracing_and_no_access_log() {
    let t = for_proxy(&index(MESH, ""), &proxy("default", &[]));
    assert_eq!(t, pb::Telemetry::default());
}

#[test]
fn telemetry_root_namespace_enables_otel_for_every_namespace() {
    let idx = index(MESH, ROOT_OTEL);
    let t = for_proxy(&idx, &proxy("bookinfo", &[("app", "reviews")]));
    let tr = t.tracing.expect("tracing");
    assert_eq!(
        tr.otlp_endpoint,
        "otel-collector.observability.svc.cluster.local:4317"
    );
    assert_eq!(tr.sampling_percent, 100.0);
    assert_eq!(tr.service_name, "reviews.bookinfo");
    assert_eq!(tr.provider, "otel");
    assert_eq!(tr.mode(), pb::TracingMode::ClientAndServer);
    assert_eq!(tr.custom_tags.len(), 1);
}

#[test]
fn telemetry_namespace_overrides_sampling_and_keeps_root_provider_and_tags() {
    let yaml = format!(
        "{ROOT_OTEL}---\n{}",
        r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  tracing:
  - randomSamplingPercentage: 5
    customTags:
      user: {header: {name: end-user, defaultValue: anonymous}}
"#
    );
    let idx = index(MESH, &yaml);
    let tr = for_proxy(&idx, &proxy("default", &[]))
        .tracing
        .expect("tracing");
    assert_eq!(tr.sampling_percent, 5.0);
    assert_eq!(tr.provider, "otel");
    let names: Vec<&str> = tr.custom_tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["team", "user"]);
    // Another namespace keeps the root's settings.
    let other = for_proxy(&idx, &proxy("other", &[]))
        .tracing
        .expect("tracing");
    assert_eq!(other.sampling_percent, 100.0);
}

#[test]
fn telemetry_workload_selector_disables_reporting_only_for_selected() {
    let yaml = format!(
        "{ROOT_OTEL}---\n{}",
        r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet, namespace: default}
spec:
  selector: {matchLabels: {app: ratings}}
  tracing:
  - disableSpanReporting: true
"#
    );
    let idx = index(MESH, &yaml);
    assert!(
        for_proxy(&idx, &proxy("default", &[("app", "ratings")]))
            .tracing
            .is_none()
    );
    assert!(
        for_proxy(&idx, &proxy("default", &[("app", "reviews")]))
            .tracing
            .is_some()
    );
}

#[test]
fn telemetry_without_sampling_uses_mesh_default_sampling() {
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
"#;
    let tr = for_proxy(&index(MESH, yaml), &proxy("default", &[]))
        .tracing
        .expect("tracing");
    assert_eq!(tr.sampling_percent, 10.0);
}

#[test]
fn telemetry_default_providers_trace_without_any_telemetry_object() {
    let mesh = format!("{MESH}defaultProviders: {{tracing: [otel]}}\n");
    let tr = for_proxy(&index(&mesh, ""), &proxy("default", &[]))
        .tracing
        .expect("tracing");
    assert_eq!(tr.sampling_percent, 10.0);
}

#[test]
fn telemetry_enable_tracing_false_turns_export_off() {
    let mesh = MESH.replace("enableTracing: true", "enableTracing: false");
    assert!(
        for_proxy(&index(&mesh, ROOT_OTEL), &proxy("default", &[]))
            .tracing
            .is_none()
    );
}

#[test]
fn telemetry_unsupported_or_unknown_provider_reports_no_spans() {
    for name in ["zipkin", "nope"] {
        let yaml = ROOT_OTEL.replace("name: otel", &format!("name: {name}"));
        assert!(
            for_proxy(&index(MESH, &yaml), &proxy("default", &[]))
                .tracing
                .is_none(),
            "{name}"
        );
    }
}

#[test]
fn telemetry_client_only_mode_is_sent() {
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - match: {mode: CLIENT}
    providers: [{name: otel}]
"#;
    let tr = for_proxy(&index(MESH, yaml), &proxy("default", &[]))
        .tracing
        .expect("tracing");
    assert_eq!(tr.mode(), pb::TracingMode::Client);
}

#[test]
fn access_log_file_turns_envoy_log_on_with_mesh_encoding_and_namespace_can_disable() {
    let mesh = format!("{MESH}accessLogFile: /dev/stdout\n");
    let off = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet, namespace: quiet}
spec:
  accessLogging:
  - disabled: true
"#;
    let idx = index(&mesh, off);
    let log = for_proxy(&idx, &proxy("default", &[]))
        .access_log
        .expect("on");
    assert_eq!(log.encoding(), pb::AccessLogEncoding::Json);
    assert_eq!(log.provider, "envoy");
    assert!(for_proxy(&idx, &proxy("quiet", &[])).access_log.is_none());
}

#[test]
fn access_log_off_by_default_and_on_per_namespace_with_telemetry() {
    let on = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: default}
spec:
  accessLogging:
  - providers: [{name: envoy}]
"#;
    let idx = index("accessLogEncoding: TEXT", on);
    let log = for_proxy(&idx, &proxy("default", &[]))
        .access_log
        .expect("on in default");
    assert_eq!(log.encoding(), pb::AccessLogEncoding::Text);
    assert!(for_proxy(&idx, &proxy("other", &[])).access_log.is_none());
}

#[test]
fn access_log_named_file_provider_uses_its_own_format() {
    let on = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: json-log}]
"#;
    let log = for_proxy(&index(MESH, on), &proxy("default", &[]))
        .access_log
        .expect("on");
    assert_eq!(log.encoding(), pb::AccessLogEncoding::Json);
    assert_eq!(log.provider, "json-log");
}

#[test]
fn telemetry_oldest_of_one_level_applies() {
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: b-newer, namespace: default, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 50}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: a-older, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  tracing: [{providers: [{name: otel}], randomSamplingPercentage: 20}]
"#;
    let tr = for_proxy(&index(MESH, yaml), &proxy("default", &[]))
        .tracing
        .expect("tracing");
    assert_eq!(tr.sampling_percent, 20.0);
}

#[test]
fn access_log_server_side_disabled_for_one_workload_keeps_its_client_side() {
    // Istio's Telemetry API task: no inbound access log for details.
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-logging-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: disable-details-inbound, namespace: default}
spec:
  selector: {matchLabels: {app: details}}
  accessLogging:
  - match: {mode: SERVER}
    disabled: true
"#;
    let idx = index(MESH, yaml);
    let details = for_proxy(&idx, &proxy("default", &[("app", "details")]))
        .access_log
        .expect("client side still logs");
    assert_eq!(details.mode(), pb::TracingMode::Client);
    let reviews = for_proxy(&idx, &proxy("default", &[("app", "reviews")]))
        .access_log
        .expect("on");
    assert_eq!(reviews.mode(), pb::TracingMode::ClientAndServer);
}

#[test]
fn access_log_filter_of_the_most_specific_level_is_sent() {
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-logging-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: envoy}]
    filter: {expression: "response.code >= 400"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: shop}
spec:
  accessLogging:
  - filter: {expression: "response.code >= 500"}
"#;
    let idx = index(MESH, yaml);
    let default = for_proxy(&idx, &proxy("default", &[]))
        .access_log
        .expect("on");
    assert_eq!(default.filter, "response.code >= 400");
    let shop = for_proxy(&idx, &proxy("shop", &[])).access_log.expect("on");
    assert_eq!(shop.filter, "response.code >= 500");
}

fn disabled(t: &pb::Telemetry) -> (Vec<pb::StandardMetric>, Vec<pb::StandardMetric>) {
    let names = |list: &[i32]| {
        list.iter()
            .map(|m| pb::StandardMetric::try_from(*m).expect("known metric"))
            .collect()
    };
    (
        names(&t.client_disabled_metrics),
        names(&t.server_disabled_metrics),
    )
}

#[test]
fn metrics_overrides_disable_per_mode_and_a_more_specific_level_enables_again() {
    use pb::StandardMetric as M;
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: ALL_METRICS, mode: CLIENT}
      disabled: true
    - match: {metric: REQUEST_DURATION, mode: SERVER}
      disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT}
      disabled: false
"#;
    let idx = index(MESH, yaml);
    // Another namespace: the root's overrides only.
    let t = for_proxy(&idx, &proxy("shop", &[("app", "cart")]));
    let (client, server) = disabled(&t);
    assert_eq!(client.len(), 10, "ALL_METRICS covers every standard metric");
    assert_eq!(server, vec![M::RequestDuration]);
    // The selected workload: any later override for the client side brings
    // the whole side back, as istiod's `mergeMetrics` (the ALL_METRICS switch
    // is per side, not per metric); the server side keeps its own switch.
    let t = for_proxy(&idx, &proxy("default", &[("app", "reviews")]));
    let (client, server) = disabled(&t);
    assert_eq!(client, vec![]);
    assert_eq!(server, vec![M::RequestDuration]);
}

#[test]
fn metrics_without_a_metric_named_disable_a_side_whole_until_a_later_override() {
    use pb::StandardMetric as M;
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - overrides:
    - disabled: true
    - match: {metric: REQUEST_SIZE, mode: SERVER}
      disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides: {request_protocol: {operation: REMOVE}}
"#;
    let idx = index(MESH, yaml);
    let t = for_proxy(&idx, &proxy("shop", &[("app", "cart")]));
    let (client, server) = disabled(&t);
    assert_eq!(client.len(), 10, "no metric named: all of them");
    assert_eq!(
        server,
        vec![M::RequestSize],
        "a later override brings the side back"
    );
    let t = for_proxy(&idx, &proxy("default", &[("app", "reviews")]));
    assert_eq!(disabled(&t), (vec![], vec![M::RequestSize]));
}

#[test]
fn metrics_providers_of_the_most_specific_level_replace_the_others() {
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  metrics:
  - providers: [{name: stackdriver}]
"#;
    let idx = index(MESH, yaml);
    // Only stackdriver in scope for default's proxies: no Prometheus metrics.
    let t = for_proxy(&idx, &proxy("default", &[]));
    let (client, server) = disabled(&t);
    assert_eq!((client.len(), server.len()), (10, 10));
    // Other namespaces keep the root's provider.
    let t = for_proxy(&idx, &proxy("shop", &[]));
    assert_eq!(disabled(&t), (vec![], vec![]));
}

#[test]
fn grpc_message_metrics_disabled_per_side() {
    use pb::StandardMetric::*;
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: GRPC_REQUEST_MESSAGES, mode: CLIENT}
      disabled: true
    - match: {metric: GRPC_RESPONSE_MESSAGES}
      disabled: true
"#;
    let t = for_proxy(&index(MESH, yaml), &proxy("default", &[]));
    let (client, server) = disabled(&t);
    assert_eq!(client, vec![GrpcRequestMessages, GrpcResponseMessages]);
    assert_eq!(server, vec![GrpcResponseMessages]);
}

#[test]
fn metrics_overrides_for_another_provider_or_custom_metrics_change_nothing() {
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: stackdriver}]
    overrides:
    - disabled: true
  - providers: [{name: prometheus}]
    overrides:
    - match: {customMetric: my_metric}
      disabled: true
    - match: {metric: REQUEST_COUNT}
      tagOverrides: {request_protocol: {operation: REMOVE}}
"#;
    let t = for_proxy(&index(MESH, yaml), &proxy("default", &[]));
    assert_eq!(disabled(&t), (vec![], vec![]));
    // No Telemetry: everything recorded.
    let t = for_proxy(&index(MESH, ""), &proxy("default", &[]));
    assert_eq!(disabled(&t), (vec![], vec![]));
}

/// `(name, remove, value, client metrics, server metrics)` of each entry.
type TagRow = (
    String,
    bool,
    String,
    Vec<pb::StandardMetric>,
    Vec<pb::StandardMetric>,
);

fn tags(t: &pb::Telemetry) -> Vec<TagRow> {
    let names = |list: &[i32]| {
        list.iter()
            .map(|m| pb::StandardMetric::try_from(*m).expect("known metric"))
            .collect()
    };
    t.metric_tags
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.remove,
                m.value.clone(),
                names(&m.client_metrics),
                names(&m.server_metrics),
            )
        })
        .collect()
}

#[test]
fn tag_overrides_merge_by_metric_side_and_name_last_wins() {
    use pb::StandardMetric::*;
    let yaml = r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: ALL_METRICS}
      tagOverrides:
        grpc_response_status: {operation: REMOVE}
    - match: {metric: REQUEST_COUNT}
      tagOverrides:
        request_host: {value: request.host}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: default}
spec:
  metrics:
  - providers: [{name: stackdriver}]
    overrides:
    - tagOverrides:
        ignored: {value: request.host}
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: SERVER}
      tagOverrides:
        request_host: {value: "request.headers['host']"}
        grpc_response_status: {value: "'none'"}
"#;
    let t = for_proxy(&index(MESH, yaml), &proxy("default", &[]));
    let all_but_count = vec![
        RequestDuration,
        RequestSize,
        ResponseSize,
        TcpOpenedConnections,
        TcpClosedConnections,
        TcpSentBytes,
        TcpReceivedBytes,
        GrpcRequestMessages,
        GrpcResponseMessages,
    ];
    let mut all = vec![RequestCount];
    all.extend(all_but_count.iter().copied());
    assert_eq!(
        tags(&t),
        vec![
            (
                "grpc_response_status".into(),
                true,
                String::new(),
                all,
                all_but_count
            ),
            (
                "grpc_response_status".into(),
                false,
                "'none'".into(),
                vec![],
                vec![RequestCount]
            ),
            (
                "request_host".into(),
                false,
                "request.host".into(),
                vec![RequestCount],
                vec![]
            ),
            (
                "request_host".into(),
                false,
                "request.headers['host']".into(),
                vec![],
                vec![RequestCount]
            ),
        ]
    );
    // Another namespace gets the mesh-wide changes only.
    let t = for_proxy(&index(MESH, yaml), &proxy("other", &[]));
    assert_eq!(t.metric_tags.len(), 2, "{:?}", tags(&t));
}
