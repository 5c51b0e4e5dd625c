use crate::index::MeshIndex;
use crate::resource::parse_documents;
use crate::translate::{ProxyIdentity, translate};
use pb::upstream_tls::Mode;
use sluice_api::config as pb;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1-0, namespace: default}
spec: {address: 127.0.9.1, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2-0, namespace: default}
spec: {address: 127.0.9.2, labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}, serviceAccount: reviews-v2}
"#;

fn config(extra: &str) -> pb::ProxyConfig {
    translate(&index_of(extra), &proxy_identity())
}

/// The index of `MESH` plus `extra`.
fn index_of(extra: &str) -> MeshIndex {
    let text = format!("{MESH}\n---\n{extra}");
    let resources = parse_documents(&text, "default")
        .into_iter()
        .map(|r| r.expect("test YAML parses"));
    MeshIndex::from_resources(1, resources)
}

fn proxy_identity() -> ProxyIdentity {
    ProxyIdentity {
        id: "p".into(),
        workload: "productpage-v1".into(),
        namespace: "default".into(),
        service_account: "productpage".into(),
        labels: Default::default(),
        ips: vec!["127.0.9.9".parse().expect("ip")],
        trust_domain: "cluster.local".into(),
    }
}

fn cluster<'a>(c: &'a pb::ProxyConfig, name: &str) -> &'a pb::Cluster {
    c.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn tls(c: &pb::Cluster) -> &pb::UpstreamTls {
    c.tls.as_ref().expect("tls always set")
}

const ALL: &str = "outbound|9080||reviews.default.svc.cluster.local";

#[test]
fn cluster_tls_without_rule_is_auto_with_service_accounts_of_endpoints() {
    let c = config("");
    let t = tls(cluster(&c, ALL));
    assert_eq!(t.mode(), Mode::Auto);
    assert_eq!(
        t.subject_alt_names,
        [
            "cluster.local/ns/default/sa/reviews",
            "cluster.local/ns/default/sa/reviews-v2"
        ]
    );
}

#[test]
fn cluster_tls_subset_level_overrides_top_level_mode() {
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
"#,
    );
    assert_eq!(
        tls(cluster(
            &c,
            "outbound|9080|v1|reviews.default.svc.cluster.local"
        ))
        .mode(),
        Mode::IstioMutual
    );
    assert_eq!(
        tls(cluster(
            &c,
            "outbound|9080|v2|reviews.default.svc.cluster.local"
        ))
        .mode(),
        Mode::Disable
    );
}

#[test]
fn cluster_tls_listed_subject_alt_names_replace_service_accounts() {
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/other"]}
"#,
    );
    assert_eq!(
        tls(cluster(&c, ALL)).subject_alt_names,
        ["cluster.local/ns/default/sa/other"]
    );
}

#[test]
fn cluster_tls_simple_origination_keeps_files_and_sni() {
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    portLevelSettings:
    - port: {number: 9080}
      tls: {mode: SIMPLE, caCertificates: /etc/ca.pem, sni: reviews.example.com}
"#,
    );
    let t = tls(cluster(&c, ALL));
    assert_eq!(t.mode(), Mode::Simple);
    assert_eq!(t.ca_certificates, "/etc/ca.pem");
    assert_eq!(t.sni, "reviews.example.com");
}

#[test]
fn endpoint_mtls_disabled_follows_workload_port_level_peer_authentication() {
    let c = config(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: v2, namespace: default}
spec:
  selector: {matchLabels: {version: v2}}
  portLevelMtls:
    9080: {mode: DISABLE}
"#,
    );
    let disabled: Vec<(&str, bool)> = cluster(&c, ALL)
        .endpoints
        .iter()
        .map(|e| (e.address.as_str(), e.mtls_disabled))
        .collect();
    assert_eq!(disabled, [("127.0.9.1", false), ("127.0.9.2", true)]);
}

#[test]
fn endpoint_mtls_disabled_by_namespace_policy() {
    let c = config(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: DISABLE}}
"#,
    );
    assert!(cluster(&c, ALL).endpoints.iter().all(|e| e.mtls_disabled));
}

#[test]
fn cluster_mesh_h2_upgrade_applies_to_declared_http_ports_without_a_rule_policy() {
    use pb::connection_pool::H2UpgradePolicy;
    let extra = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9090, name: http, protocol: HTTP}, {number: 9091, name: web}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: DO_NOT_UPGRADE}}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {connectionPool: {http: {maxRetries: 4}}}
  - name: v3
    labels: {version: v3}
    trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 40}
    - {destination: {host: reviews, subset: v3}, weight: 10}
"#;
    // The outbound translation is cached per index: one index per mesh setting.
    let index = |h2_upgrade: bool| {
        let mut index = index_of(extra);
        index.mesh = std::sync::Arc::new(crate::mesh_config::MeshConfig {
            h2_upgrade,
            ..Default::default()
        });
        index
    };
    let policy = |c: &pb::ProxyConfig, name: &str| {
        cluster(c, name)
            .connection_pool
            .as_ref()
            .map(|p| p.h2_upgrade_policy())
    };
    let ratings = "outbound|9090||ratings.default.svc.cluster.local";
    let sniffed = "outbound|9091||ratings.default.svc.cluster.local";
    let v1 = "outbound|9080|v1|reviews.default.svc.cluster.local";
    let v2 = "outbound|9080|v2|reviews.default.svc.cluster.local";

    // Istio's default mesh (DO_NOT_UPGRADE) adds nothing.
    let plain = translate(&index(false), &proxy_identity());
    assert_eq!(policy(&plain, ratings), None);
    assert_eq!(policy(&plain, v2), Some(H2UpgradePolicy::Default));

    let c = translate(&index(true), &proxy_identity());
    assert_eq!(policy(&c, ratings), Some(H2UpgradePolicy::Upgrade));
    // Other pool fields of a rule stay; its explicit policy wins over the mesh.
    assert_eq!(policy(&c, v2), Some(H2UpgradePolicy::Upgrade));
    assert_eq!(
        cluster(&c, v2)
            .connection_pool
            .as_ref()
            .map(|p| p.max_retries),
        Some(4)
    );
    assert_eq!(policy(&c, v1), Some(H2UpgradePolicy::DoNotUpgrade));
    // useClientProtocol is a choice too: the caller's version, not the mesh's upgrade.
    let v3 = "outbound|9080|v3|reviews.default.svc.cluster.local";
    assert_eq!(policy(&c, v3), Some(H2UpgradePolicy::Default));
    // A port of unknown protocol keeps the caller's protocol.
    assert_eq!(policy(&c, sniffed), None);
}

#[test]
fn cluster_http_pool_idle_timeout_falls_back_to_tcp_and_zero_means_never() {
    let extra = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {connectionPool: {tcp: {idleTimeout: 5s, maxConnectionDuration: 1m}}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}
  - name: v3
    labels: {version: v3}
    trafficPolicy: {connectionPool: {http: {idleTimeout: 2s}, tcp: {idleTimeout: 0s}}}
  - name: v4
    labels: {version: v4}
    trafficPolicy: {connectionPool: {http: {maxRetries: 1}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 25}
    - {destination: {host: reviews, subset: v2}, weight: 25}
    - {destination: {host: reviews, subset: v3}, weight: 25}
    - {destination: {host: reviews, subset: v4}, weight: 25}
"#;
    let c = config(extra);
    let pool = |subset: &str| {
        let name = format!("outbound|9080|{subset}|reviews.default.svc.cluster.local");
        let p = cluster(&c, &name).connection_pool.as_ref().expect("pool");
        (p.idle_timeout_ms, p.max_connection_duration_ms)
    };
    // Istio's cluster builder: http.idleTimeout, else tcp.idleTimeout.
    assert_eq!(pool("v1"), (5_000, 60_000));
    // `0s` turns the idle timer off.
    assert_eq!(pool("v2"), (u64::MAX, 0));
    assert_eq!(pool("v3"), (2_000, 0));
    // Unset: the proxy's default (1 h).
    assert_eq!(pool("v4"), (0, 0));
}

#[test]
fn cluster_tcp_routes_take_the_top_level_tcp_timeouts_of_the_first_destinations_rule() {
    let rules = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mysql, namespace: default}
spec:
  host: mysql
  trafficPolicy:
    connectionPool: {tcp: {idleTimeout: 5s, maxConnectionDuration: 1m}}
    portLevelSettings:
    - port: {number: 3306}
      connectionPool: {tcp: {idleTimeout: 7s}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {connectionPool: {tcp: {idleTimeout: 1s}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: redis, namespace: default}
spec:
  host: redis
  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: redis, namespace: default}
spec:
  hosts: [redis]
  tcp:
  - route:
    - {destination: {host: mysql, subset: v1}, weight: 50}
    - {destination: {host: redis}, weight: 50}
"#;
    let extra = [("mysql", 3306), ("redis", 6379), ("mongo", 27017)]
        .map(|(name, port)| tcp_service_entry(name, port))
        .join("---\n")
        + "---\n"
        + rules;
    let c = config(&extra);
    let route = |service: &str| {
        let svc = c
            .tcp_services
            .iter()
            .find(|s| s.service == format!("{service}.default.svc.cluster.local"))
            .unwrap_or_else(|| panic!("no tcp service {service}"));
        let r = &svc.routes[0];
        (r.idle_timeout_ms, r.max_connection_duration_ms)
    };
    // Top level only: subset and port-level settings shape clusters, not the route.
    assert_eq!(route("mysql"), (Some(5_000), 60_000));
    // A VirtualService's TCP route takes its first destination's rule (mysql's),
    // not the rule of the host it is bound to.
    assert_eq!(route("redis"), (Some(5_000), 60_000));
    // No rule: the proxy's defaults.
    assert_eq!(route("mongo"), (None, 0));
    // The cluster still follows Istio's precedence for its own pool.
    let v1 = cluster(&c, "outbound|3306|v1|mysql.default.svc.cluster.local");
    let pool = v1.connection_pool.as_ref().expect("pool");
    assert_eq!(pool.idle_timeout_ms, 1_000);
}

#[test]
fn cluster_tcp_route_zero_idle_timeout_is_sent_as_never() {
    let extra = tcp_service_entry("redis", 6379)
        + r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: redis, namespace: default}
spec:
  host: redis
  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 0s}}}
"#;
    let c = config(&extra);
    let svc = &c.tcp_services[0];
    assert_eq!(svc.routes[0].idle_timeout_ms, Some(0));
}

/// A mesh-internal ServiceEntry for `name` with one TCP port.
fn tcp_service_entry(name: &str, port: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: tcp, protocol: TCP}}]
  workloadSelector: {{labels: {{app: {name}}}}}
"
    )
}

#[test]
fn cluster_port_level_settings_replace_their_level_whole() {
    // Istio: a port-level entry is that level's whole policy for the port;
    // what it leaves out is unset, not taken from the level around it.
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}}
    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      outlierDetection: {consecutive5xxErrors: 2}
      portLevelSettings:
      - port: {number: 9080}
        connectionPool: {tcp: {maxConnections: 5}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      outlierDetection: {consecutive5xxErrors: 3}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
"#,
    );
    let pool = |c: &pb::Cluster| c.connection_pool.as_ref().map_or(0, |p| p.max_connections);
    let ejecting = |c: &pb::Cluster| {
        c.outlier_detection
            .as_ref()
            .map(|o| o.consecutive_5xx_errors)
    };
    // v1: its port-level entry (pool 5) decides every field: no outlier
    // detection, neither its own nor the top level's.
    let v1 = cluster(&c, "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_eq!(pool(v1), 5);
    assert_eq!(ejecting(v1), None);
    // v2: its own outlier detection, the top level's pool.
    let v2 = cluster(&c, "outbound|9080|v2|reviews.default.svc.cluster.local");
    assert_eq!(ejecting(v2), Some(3));
    assert_eq!(pool(v2), 1);
}

#[test]
fn cluster_top_level_port_entry_leaves_out_what_it_does_not_set() {
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1}}
    outlierDetection: {consecutive5xxErrors: 1}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: ROUND_ROBIN}
"#,
    );
    let all = cluster(&c, ALL);
    assert!(all.outlier_detection.is_none(), "{all:?}");
    assert_eq!(
        all.connection_pool
            .as_ref()
            .map_or(0, |p| p.max_connections),
        0
    );
}

#[test]
fn cluster_retry_budget_subset_over_top_with_istio_defaults() {
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    retryBudget: {minRetryConcurrency: 0}
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {tcp: {maxConnections: 5}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      retryBudget: {percent: 50, minRetryConcurrency: 7, budgetInterval: 10s}
  - name: v2
    labels: {version: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
"#,
    );
    let budget = |name: &str| cluster(&c, name).retry_budget;
    // A port-level entry carries no budget, so the top level's stays; its
    // unset percent is 20 and a minRetryConcurrency of 0 means 3, as istiod reads it.
    let top = pb::ConcurrentRetryBudget {
        percent: 20.0,
        min_retry_concurrency: 3,
        interval_ms: 0,
    };
    assert_eq!(
        budget("outbound|9080|v2|reviews.default.svc.cluster.local"),
        Some(top)
    );
    assert_eq!(
        budget("outbound|9080|v1|reviews.default.svc.cluster.local"),
        Some(pb::ConcurrentRetryBudget {
            percent: 50.0,
            min_retry_concurrency: 7,
            interval_ms: 10_000,
        })
    );
}

#[test]
fn cluster_tls_service_entry_names_join_the_selected_workloads_accounts() {
    // ServiceEntry `subjectAltNames`: the selected workloads' service
    // accounts are verified as well; an inline endpoint adds none.
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.internal.example]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9080}]
  subjectAltNames: ["spiffe://cluster.local/ns/default/sa/api-front"]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.internal.example]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  subjectAltNames: ["spiffe://cluster.local/ns/default/sa/legacy"]
  endpoints: [{address: 127.0.9.50}]
"#,
    );
    assert_eq!(
        tls(cluster(&c, "outbound|80||api.internal.example")).subject_alt_names,
        [
            "cluster.local/ns/default/sa/api-front",
            "cluster.local/ns/default/sa/reviews",
            "cluster.local/ns/default/sa/reviews-v2"
        ]
    );
    assert_eq!(
        tls(cluster(&c, "outbound|80||legacy.internal.example")).subject_alt_names,
        ["cluster.local/ns/default/sa/legacy"]
    );
}

#[test]
fn cluster_tls_mesh_external_service_gets_no_auto_mtls() {
    let c = config(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9080}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext-mtls, namespace: default}
spec:
  hosts: [ext-mtls.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9080}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext-mtls, namespace: default}
spec:
  host: ext-mtls.example.com
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"#,
    );
    // Even though the selected workloads run sidecars.
    assert_eq!(
        tls(cluster(&c, "outbound|80||ext.example.com")).mode(),
        Mode::Disable
    );
    assert_eq!(
        tls(cluster(&c, "outbound|80||ext-mtls.example.com")).mode(),
        Mode::IstioMutual
    );
    assert_eq!(tls(cluster(&c, ALL)).mode(), Mode::Auto);
}

/// Routes to both subsets, so their clusters exist.
const BOTH_SUBSETS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
---
"#;

#[test]
fn destination_rules_of_one_namespace_for_one_host_merge_as_istiod() {
    // Two rules for reviews in default (same creation time: name order):
    // `a` defines v1 and no policy, `b` defines v1 again (ignored), v2 and a
    // policy, which the merged rule takes since `a` has none.
    let c = config(&format!(
        r#"{BOTH_SUBSETS}
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: a, namespace: default}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: b, namespace: default}}
spec:
  host: reviews
  trafficPolicy: {{tls: {{mode: DISABLE}}}}
  subsets:
  - {{name: v1, labels: {{version: v2}}}}
  - {{name: v2, labels: {{version: v2}}}}
"#
    ));
    let v1 = cluster(&c, "outbound|9080|v1|reviews.default.svc.cluster.local");
    let v2 = cluster(&c, "outbound|9080|v2|reviews.default.svc.cluster.local");
    assert_eq!(v1.endpoints.len(), 1);
    assert_eq!(
        v1.endpoints[0].address, "127.0.9.1",
        "the first definition of v1 wins"
    );
    assert_eq!(v2.endpoints[0].address, "127.0.9.2");
    assert!(!v1.missing && !v2.missing);
    assert_eq!(
        tls(v2).mode,
        Mode::Disable as i32,
        "b's policy fills a's gap"
    );
}

#[test]
fn destination_rules_with_different_export_to_stay_apart() {
    // `b` is private, `a` public: they are not merged, and from default the
    // last selector-less entry (b) is the one in force: no v1 subset.
    let c = config(&format!(
        r#"{BOTH_SUBSETS}
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: a, namespace: default}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: b, namespace: default}}
spec:
  host: reviews
  exportTo: ["."]
  subsets: [{{name: v2, labels: {{version: v2}}}}]
"#
    ));
    let v1 = cluster(&c, "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert!(v1.missing, "v1 is only in the rule not in force");
    assert!(!cluster(&c, "outbound|9080|v2|reviews.default.svc.cluster.local").missing);
}

#[test]
fn selector_rule_that_misses_the_client_hides_other_namespaces_rules() {
    // A selector rule in the client's namespace that does not pick it: the
    // lookup stops there (istiod), so the service namespace's rule is not used.
    let extra = format!(
        r#"{BOTH_SUBSETS}
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: mine, namespace: shop}}
spec:
  host: reviews.default.svc.cluster.local
  workloadSelector: {{matchLabels: {{app: other}}}}
  subsets: [{{name: v1, labels: {{version: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: owner, namespace: default}}
spec:
  host: reviews
  subsets: [{{name: v2, labels: {{version: v2}}}}]
"#
    );
    let mut proxy = proxy_identity();
    proxy.namespace = "shop".into();
    let c = translate(&index_of(&extra), &proxy);
    assert!(cluster(&c, "outbound|9080|v2|reviews.default.svc.cluster.local").missing);
    let mut picked = proxy_identity();
    picked.namespace = "shop".into();
    picked.labels = [("app".to_owned(), "other".to_owned())]
        .into_iter()
        .collect();
    let c = translate(&index_of(&extra), &picked);
    assert!(!cluster(&c, "outbound|9080|v1|reviews.default.svc.cluster.local").missing);
}
