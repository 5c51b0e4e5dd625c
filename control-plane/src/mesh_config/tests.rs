use super::*;

#[test]
fn mesh_config_empty_keeps_defaults() {
    let (m, ignored) = parse_mesh_config("", MeshConfig::default()).unwrap();
    assert_eq!(m, MeshConfig::default());
    assert!(ignored.is_empty());
}

#[test]
fn mesh_config_reads_telemetry_fields_and_lists_ignored_ones() {
    let text = r#"
rootNamespace: mesh-root
enableTracing: false
defaultConfig: {tracing: {sampling: 2.5}, holdApplicationUntilProxyStarts: true, concurrency: 1}
extensionProviders:
- name: otel
  opentelemetry: {service: otel.obs.svc.cluster.local, port: 4317}
defaultProviders: {tracing: [otel], accessLogging: [envoy]}
accessLogFile: /dev/stdout
accessLogEncoding: JSON
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;
    let (m, ignored) = parse_mesh_config(text, MeshConfig::default()).unwrap();
    assert_eq!(m.root_namespace, "mesh-root");
    let t = &m.telemetry;
    assert!(!t.enable_tracing);
    assert_eq!(t.default_sampling, 2.5);
    assert_eq!(
        t.providers.get("otel"),
        Some(&Provider::OpenTelemetry {
            host: "otel.obs.svc.cluster.local".into(),
            port: 4317
        })
    );
    assert_eq!(t.default_tracing, ["otel"]);
    assert_eq!(t.default_access_logging, ["envoy"]);
    assert_eq!(t.access_log_file.as_deref(), Some("/dev/stdout"));
    assert_eq!(t.access_log_encoding, AccessLogEncoding::Json);
    assert!(ignored.is_empty(), "{ignored:?}");
    assert!(m.registry_only);
    assert_eq!(m.proxy_concurrency, Some(1));
}

#[test]
fn mesh_config_bad_values_name_the_field() {
    for (text, path) in [
        (
            "defaultConfig: {tracing: {sampling: 101}}",
            "defaultConfig.tracing.sampling",
        ),
        ("accessLogEncoding: XML", "accessLogEncoding"),
        (
            "defaultConfig: {concurrency: -1}",
            "defaultConfig.concurrency",
        ),
        (
            "defaultConfig: {concurrency: two}",
            "defaultConfig.concurrency",
        ),
        (
            "defaultConfig: {concurrency: 1.5}",
            "defaultConfig.concurrency",
        ),
        ("enableTracing: maybe", "enableTracing"),
        (
            "extensionProviders: [{name: o, opentelemetry: {service: c}}]",
            "extensionProviders[0].opentelemetry.port",
        ),
        (
            "extensionProviders: [{name: o, opentelemetry: {service: c, port: 4318, http: {path: /v1/traces}}}]",
            "extensionProviders[0].opentelemetry.http",
        ),
        (
            "extensionProviders: [{opentelemetry: {service: c, port: 1}}]",
            "extensionProviders[0].name",
        ),
        (
            "extensionProviders: [{name: a, opentelemetry: {service: c, port: 1}}, {name: a, zipkin: {}}]",
            "extensionProviders[1].name",
        ),
        (
            "extensionProviders: [{name: f, envoyFileAccessLog: {path: /var/log/a.log}}]",
            "extensionProviders[0].envoyFileAccessLog.path",
        ),
        (
            "defaultProviders: {tracing: otel}",
            "defaultProviders.tracing",
        ),
    ] {
        let e = parse_mesh_config(text, MeshConfig::default()).expect_err(text);
        assert_eq!(e.path, path, "{text}: {e}");
    }
}

#[test]
fn mesh_config_unsupported_provider_type_is_kept_as_unsupported() {
    let text = "extensionProviders: [{name: z, zipkin: {service: z, port: 9411}}]";
    let (m, _) = parse_mesh_config(text, MeshConfig::default()).unwrap();
    assert_eq!(
        m.telemetry.providers.get("z"),
        Some(&Provider::Unsupported {
            kind: "zipkin".into()
        })
    );
}

#[test]
fn mesh_config_h2_upgrade_policy_is_read_and_unknown_value_named() {
    let (m, ignored) =
        parse_mesh_config("h2UpgradePolicy: UPGRADE", MeshConfig::default()).unwrap();
    assert!(m.h2_upgrade);
    assert!(ignored.is_empty());
    let (m, _) = parse_mesh_config("h2UpgradePolicy: DO_NOT_UPGRADE", m).unwrap();
    assert!(!m.h2_upgrade);
    let e = parse_mesh_config("h2UpgradePolicy: ALWAYS", MeshConfig::default()).unwrap_err();
    assert_eq!(e.path, "h2UpgradePolicy");
    assert!(e.message.contains("ALWAYS"), "{e}");
}

#[test]
fn mesh_config_path_normalization_modes_and_errors() {
    let parse = |t: &str| parse_mesh_config(t, MeshConfig::default());
    assert_eq!(
        MeshConfig::default().path_normalization,
        PathNormalization::Base
    );
    for (text, want) in [
        ("DEFAULT", PathNormalization::Base),
        ("BASE", PathNormalization::Base),
        ("NONE", PathNormalization::None),
        ("MERGE_SLASHES", PathNormalization::MergeSlashes),
        (
            "DECODE_AND_MERGE_SLASHES",
            PathNormalization::DecodeAndMergeSlashes,
        ),
    ] {
        let yaml = format!("pathNormalization: {{normalization: {text}}}");
        let (mesh, ignored) = parse(&yaml).unwrap();
        assert_eq!(mesh.path_normalization, want, "{text}");
        assert!(ignored.is_empty());
    }
    let e = parse("pathNormalization: {normalization: DECODE}")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pathNormalization.normalization") && e.contains("DECODE"),
        "{e}"
    );
    let e = parse("pathNormalization: {mode: NONE}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("pathNormalization") && e.contains("mode"), "{e}");
}

#[test]
fn mesh_config_outbound_traffic_policy_modes_and_errors() {
    let parse = |t: &str| parse_mesh_config(t, MeshConfig::default());
    assert!(
        !parse("outboundTrafficPolicy: {mode: ALLOW_ANY}")
            .unwrap()
            .0
            .registry_only
    );
    assert!(!parse("outboundTrafficPolicy: {}").unwrap().0.registry_only);
    let e = parse("outboundTrafficPolicy: {mode: DENY}")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("outboundTrafficPolicy.mode") && e.contains("DENY"),
        "{e}"
    );
    let e = parse("outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: x}}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("egressProxy"), "{e}");
}
