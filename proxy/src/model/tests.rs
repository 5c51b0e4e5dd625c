use std::collections::BTreeMap;

use sluice_api::config as pb;

use super::*;

fn regex_match(r: &str) -> pb::StringMatch {
    pb::StringMatch {
        kind: Some(pb::string_match::Kind::Regex(r.to_owned())),
    }
}

fn config_with_route(route: pb::Route) -> pb::ProxyConfig {
    pb::ProxyConfig {
        virtual_hosts: vec![pb::VirtualHost {
            name: "reviews.default.svc.cluster.local:9080".to_owned(),
            port: 9080,
            domains: vec![
                "Reviews".to_owned(),
                "*.Example.com".to_owned(),
                "reviews.default:9080".to_owned(),
            ],
            routes: vec![forward_route(), route],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn forward_route() -> pb::Route {
    pb::Route {
        action: Some(pb::route::Action::Forward(pb::WeightedClusters {
            clusters: vec![pb::WeightedCluster {
                cluster: "c".to_owned(),
                weight: 1,
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

#[test]
fn convert_bad_header_regex_names_the_item() {
    let mut route = forward_route();
    route.matches = vec![pb::RouteMatch {
        headers: BTreeMap::from([("x".to_owned(), regex_match("(unclosed"))]),
        ..Default::default()
    }];
    let err = ProxyConfig::try_from(&config_with_route(route)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "route reviews.default.svc.cluster.local:9080 #1 match[0] header \"x\": bad regex:"
        ),
        "{text}"
    );
    assert!(
        !text.contains("^(?:"),
        "error quotes the anchored form: {text}"
    );
}

#[test]
fn convert_cors_value_no_header_can_carry_is_refused_naming_the_field() {
    let mut route = forward_route();
    route.cors = Some(pb::CorsPolicy {
        allow_origins: vec![regex_match("https://.*")],
        expose_headers: vec!["x-ok".to_owned(), "x-bad\nline".to_owned()],
        ..Default::default()
    });
    let err = ProxyConfig::try_from(&config_with_route(route)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("route reviews.default.svc.cluster.local:9080 #1 cors expose_headers:"),
        "{text}"
    );
    assert!(
        matches!(err.problem, convert::Problem::BadHeaderValue(_)),
        "{err}"
    );
}

#[test]
fn convert_route_without_action_is_rejected() {
    let route = pb::Route {
        action: None,
        ..Default::default()
    };
    let err = ProxyConfig::try_from(&config_with_route(route)).unwrap_err();
    assert!(matches!(err.problem, convert::Problem::NoAction), "{err}");
}

#[test]
fn convert_out_of_range_port_is_rejected() {
    let mut cfg = config_with_route(forward_route());
    cfg.virtual_hosts[0].port = 70000;
    let err = ProxyConfig::try_from(&cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "virtual host reviews.default.svc.cluster.local:9080: port 70000 out of range"
    );
}

#[test]
fn convert_domains_are_lower_cased_wildcards_and_portless() {
    let cfg = ProxyConfig::try_from(&config_with_route(forward_route())).unwrap();
    assert_eq!(
        cfg.virtual_hosts[0].domains,
        vec![
            Domain::Exact("reviews".to_owned()),
            Domain::Wildcard(".example.com".to_owned()),
            Domain::Exact("reviews.default".to_owned()),
        ]
    );
}

#[test]
fn convert_bad_endpoint_address_and_duplicate_cluster_are_rejected() {
    let cluster = |addr: &str| pb::Cluster {
        name: "outbound|9080||reviews".to_owned(),
        endpoints: vec![pb::Endpoint {
            address: addr.to_owned(),
            port: 9080,
            ..Default::default()
        }],
        ..Default::default()
    };
    let bad = pb::ProxyConfig {
        clusters: vec![cluster("not-an-ip")],
        ..Default::default()
    };
    let err = ProxyConfig::try_from(&bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster outbound|9080||reviews endpoint[0]: bad IP address \"not-an-ip\""
    );
    let dup = pb::ProxyConfig {
        clusters: vec![cluster("10.0.0.1"), cluster("10.0.0.2")],
        ..Default::default()
    };
    assert!(matches!(
        ProxyConfig::try_from(&dup).unwrap_err().problem,
        convert::Problem::DuplicateCluster
    ));
}

#[test]
fn convert_snapshot_without_config_is_rejected() {
    let snap = pb::Snapshot {
        version: "7".to_owned(),
        delta: None,
        config: None,
    };
    assert_eq!(
        Running::try_from(&snap).unwrap_err().to_string(),
        "snapshot 7: snapshot has no config"
    );
}

#[test]
fn strip_port_handles_names_ipv4_and_ipv6() {
    assert_eq!(strip_port("reviews:9080"), "reviews");
    assert_eq!(strip_port("reviews"), "reviews");
    assert_eq!(strip_port("10.0.0.1:80"), "10.0.0.1");
    assert_eq!(strip_port("[::1]:80"), "[::1]");
    assert_eq!(strip_port("host:"), "host:");
}

#[test]
fn pattern_matches_whole_values_only() {
    let p = Pattern::full("a|ab").unwrap();
    assert!(p.is_full_match("ab"));
    assert!(!p.is_full_match("abc"));
    assert!(!p.is_full_match("xab"));
}

#[test]
fn inherit_balancer_state_keeps_in_flight_counts_of_surviving_endpoints() {
    use std::sync::atomic::Ordering;
    let cfg = |addrs: &[&str]| pb::ProxyConfig {
        clusters: vec![pb::Cluster {
            name: "c".to_owned(),
            endpoints: addrs
                .iter()
                .map(|a| pb::Endpoint {
                    address: (*a).to_owned(),
                    port: 80,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let old = ProxyConfig::try_from(&cfg(&["10.0.0.1", "10.0.0.2"])).unwrap();
    old.clusters[0].endpoints[1]
        .in_flight
        .store(7, Ordering::Relaxed);
    let mut new = ProxyConfig::try_from(&cfg(&["10.0.0.2", "10.0.0.3"])).unwrap();
    new.inherit_balancer_state(&old);
    assert_eq!(
        new.clusters[0].endpoints[0]
            .in_flight
            .load(Ordering::Relaxed),
        7
    );
    assert_eq!(
        new.clusters[0].endpoints[1]
            .in_flight
            .load(Ordering::Relaxed),
        0
    );
    // Shared, so requests started on the old config still decrement the new count.
    old.clusters[0].endpoints[1]
        .in_flight
        .fetch_sub(1, Ordering::Relaxed);
    assert_eq!(
        new.clusters[0].endpoints[0]
            .in_flight
            .load(Ordering::Relaxed),
        6
    );
}

fn with_tls(tls: pb::UpstreamTls) -> pb::ProxyConfig {
    pb::ProxyConfig {
        clusters: vec![pb::Cluster {
            name: "outbound|9080||reviews".to_owned(),
            service: "reviews.default.svc.cluster.local".to_owned(),
            port: 9080,
            tls: Some(tls),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn cluster_tls_unknown_mode_or_mutual_without_key_is_invalid_naming_cluster() {
    let unknown = with_tls(pb::UpstreamTls {
        mode: 42,
        ..Default::default()
    });
    let err = ProxyConfig::try_from(&unknown).unwrap_err().to_string();
    assert!(err.contains("cluster outbound|9080||reviews tls"), "{err}");
    let mutual = with_tls(pb::UpstreamTls {
        mode: pb::upstream_tls::Mode::Mutual as i32,
        client_certificate: "/c.pem".to_owned(),
        ..Default::default()
    });
    let err = ProxyConfig::try_from(&mutual).unwrap_err().to_string();
    assert!(err.contains("private_key"), "{err}");
}

#[test]
fn cluster_tls_simple_defaults_sni_to_service_host() {
    let simple = with_tls(pb::UpstreamTls {
        mode: pb::upstream_tls::Mode::Simple as i32,
        subject_alt_names: vec!["api.example.com".to_owned()],
        ..Default::default()
    });
    let cfg = ProxyConfig::try_from(&simple).unwrap();
    let tls = &cfg.clusters[0].tls;
    assert_eq!(tls.mode, TlsMode::Simple);
    let o = tls.origination.as_ref().unwrap();
    assert_eq!(o.sni, "reviews.default.svc.cluster.local");
    assert_eq!(o.sans, ["api.example.com"]);
}

#[test]
fn inbound_security_bad_policy_is_invalid() {
    let cfg = pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            security: Some(pb::InboundSecurity {
                policies: vec![pb::AuthorizationPolicy {
                    name: "default/bad".to_owned(),
                    rules: vec![pb::AuthorizationRule {
                        from: vec![pb::PeerMatch {
                            ip_blocks: vec!["not-an-ip".to_owned()],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = ProxyConfig::try_from(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("inbound security") && err.contains("default/bad"),
        "{err}"
    );
}

fn with_telemetry(tracing: pb::Tracing) -> pb::ProxyConfig {
    pb::ProxyConfig {
        telemetry: Some(pb::Telemetry {
            tracing: Some(tracing),
            access_log: Some(pb::AccessLog {
                encoding: pb::AccessLogEncoding::Json as i32,
                provider: "envoy".to_owned(),
                mode: pb::TracingMode::ClientAndServer as i32,
                filter: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn convert_telemetry_disabled_metrics_become_bits_and_unknown_ones_are_refused() {
    use crate::metrics::standard;
    let cfg = pb::ProxyConfig {
        telemetry: Some(pb::Telemetry {
            client_disabled_metrics: vec![
                pb::StandardMetric::RequestCount as i32,
                pb::StandardMetric::TcpSentBytes as i32,
            ],
            server_disabled_metrics: vec![pb::StandardMetric::RequestDuration as i32],
            ..Default::default()
        }),
        ..Default::default()
    };
    let running = ProxyConfig::try_from(&cfg).unwrap();
    let d = running.telemetry.disabled_metrics;
    assert_eq!(d.client, standard::REQUEST_COUNT | standard::TCP_SENT);
    assert_eq!(d.server, standard::REQUEST_DURATION);
    for bad in [0, 99] {
        let cfg = pb::ProxyConfig {
            telemetry: Some(pb::Telemetry {
                server_disabled_metrics: vec![bad],
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = ProxyConfig::try_from(&cfg).unwrap_err().to_string();
        assert!(err.contains("disabled metric"), "{err}");
    }
}

#[test]
fn convert_telemetry_is_carried_and_dumped() {
    use pb::custom_tag::Value;
    let tracing = pb::Tracing {
        sampling_percent: 12.5,
        otlp_endpoint: "otel-collector.istio-system:4317".to_owned(),
        service_name: "reviews.default".to_owned(),
        custom_tags: vec![
            pb::CustomTag {
                name: "team".to_owned(),
                value: Some(Value::Literal("books".to_owned())),
            },
            pb::CustomTag {
                name: "env".to_owned(),
                value: Some(Value::Environment(pb::EnvTag {
                    name: "SLUICE_TEST_SURELY_UNSET_VARIABLE".to_owned(),
                    default_value: "fallback".to_owned(),
                })),
            },
        ],
        mode: pb::TracingMode::Client as i32,
        provider: "otel".to_owned(),
    };
    let cfg = ProxyConfig::try_from(&with_telemetry(tracing)).unwrap();
    let t = cfg.telemetry.tracing.as_ref().unwrap();
    assert_eq!(t.sampling_percent, 12.5);
    assert_eq!(t.mode, crate::telemetry::TracingMode::Client);
    let dump = serde_json::to_value(&cfg).unwrap();
    assert_eq!(
        dump["telemetry"]["tracing"]["otlp_endpoint"],
        "otel-collector.istio-system:4317"
    );
    assert_eq!(dump["telemetry"]["access_log"]["encoding"], "JSON");
    assert_eq!(
        dump["telemetry"]["tracing"]["custom_tags"][1]["value"]["environment"]["value"],
        "fallback"
    );
    // Absent telemetry records nothing.
    let none = ProxyConfig::try_from(&pb::ProxyConfig::default()).unwrap();
    assert!(none.telemetry.tracing.is_none() && none.telemetry.access_log.is_none());
}

#[test]
fn convert_bad_telemetry_is_rejected() {
    let bad_percent = pb::Tracing {
        sampling_percent: 101.0,
        ..Default::default()
    };
    let err = ProxyConfig::try_from(&with_telemetry(bad_percent)).unwrap_err();
    assert!(err.to_string().contains("sampling_percent"), "{err}");
    let no_port = pb::Tracing {
        otlp_endpoint: "collector".to_owned(),
        ..Default::default()
    };
    let err = ProxyConfig::try_from(&with_telemetry(no_port)).unwrap_err();
    assert!(err.to_string().contains("otlp_endpoint"), "{err}");
    let bad_header = pb::Tracing {
        custom_tags: vec![pb::CustomTag {
            name: "h".to_owned(),
            value: Some(pb::custom_tag::Value::Header(pb::HeaderTag {
                name: "bad header".to_owned(),
                default_value: String::new(),
            })),
        }],
        ..Default::default()
    };
    assert!(ProxyConfig::try_from(&with_telemetry(bad_header)).is_err());
}

/// A config with one cluster per `(name, protocol, pool)`.
fn with_clusters(clusters: &[(&str, pb::Protocol, Option<pb::ConnectionPool>)]) -> ProxyConfig {
    let config = pb::ProxyConfig {
        clusters: clusters
            .iter()
            .map(|(name, protocol, pool)| pb::Cluster {
                name: (*name).to_owned(),
                service: "reviews.default.svc.cluster.local".to_owned(),
                port: 9080,
                protocol: *protocol as i32,
                connection_pool: *pool,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    ProxyConfig::try_from(&config).unwrap()
}

#[test]
fn upstream_h2_follows_declared_protocol_upgrade_policy_and_client_protocol() {
    use http::Version;
    use pb::connection_pool::H2UpgradePolicy;
    let pool = |policy: H2UpgradePolicy, client: bool| {
        let mut p = pb::ConnectionPool {
            use_client_protocol: client,
            ..Default::default()
        };
        p.set_h2_upgrade_policy(policy);
        Some(p)
    };
    let config = with_clusters(&[
        ("http", pb::Protocol::Http, None),
        ("http2", pb::Protocol::Http2, None),
        (
            "grpc",
            pb::Protocol::Grpc,
            pool(H2UpgradePolicy::DoNotUpgrade, false),
        ),
        ("sniffed", pb::Protocol::Unspecified, None),
        (
            "upgrade",
            pb::Protocol::Http,
            pool(H2UpgradePolicy::Upgrade, false),
        ),
        (
            "sniffed-upgrade",
            pb::Protocol::Unspecified,
            pool(H2UpgradePolicy::Upgrade, false),
        ),
        (
            "client",
            pb::Protocol::Http,
            pool(H2UpgradePolicy::Default, true),
        ),
        // The caller's version wins over a declared HTTP/2 port and an upgrade.
        (
            "client-grpc",
            pb::Protocol::Grpc,
            pool(H2UpgradePolicy::Upgrade, true),
        ),
        (
            "keep",
            pb::Protocol::Http,
            pool(H2UpgradePolicy::DoNotUpgrade, false),
        ),
    ]);
    let h2 = |name: &str, v: Version| config.cluster(name).unwrap().upstream_h2(v);
    // (cluster, HTTP/1.1 caller goes as h2, HTTP/2 caller goes as h2)
    for (name, from_h1, from_h2) in [
        ("http", false, false),
        ("http2", true, true),
        ("grpc", true, true),
        ("sniffed", false, true),
        ("upgrade", true, true),
        ("sniffed-upgrade", true, true),
        ("client", false, true),
        ("client-grpc", false, true),
        ("keep", false, false),
    ] {
        assert_eq!(h2(name, Version::HTTP_11), from_h1, "{name} from HTTP/1.1");
        assert_eq!(h2(name, Version::HTTP_2), from_h2, "{name} from HTTP/2");
    }
}

#[test]
fn convert_path_normalization_from_mesh_settings_or_refused_when_unknown() {
    use crate::path_normalization::PathNormalization;
    let mut cfg = config_with_route(forward_route());
    let mode = |cfg: &pb::ProxyConfig| ProxyConfig::try_from(cfg).map(|c| c.path_normalization);
    // Absent: Istio's default.
    assert_eq!(mode(&cfg).unwrap(), PathNormalization::Base);
    cfg.outbound = Some(pb::Outbound {
        path_normalization: pb::PathNormalization::DecodeAndMergeSlashes as i32,
        ..Default::default()
    });
    assert_eq!(
        mode(&cfg).unwrap(),
        PathNormalization::DecodeAndMergeSlashes
    );
    cfg.outbound = Some(pb::Outbound {
        path_normalization: 9,
        ..Default::default()
    });
    let err = mode(&cfg).unwrap_err().to_string();
    assert!(err.contains("path normalization"), "{err}");
}
