use super::*;
use crate::resource::parse_documents;

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
spec: {address: 127.0.9.2, labels: {app: reviews, version: v2, security.istio.io/tlsMode: disabled}, serviceAccount: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: X-User}}}
"#;

fn index(extra: &str) -> MeshIndex {
    index_of(MESH, extra)
}

/// An index of the objects of `mesh` and then `extra` (YAML documents).
pub(super) fn index_of(mesh: &str, extra: &str) -> MeshIndex {
    let text = format!("{mesh}\n---\n{extra}");
    let resources = parse_documents(&text, "default")
        .into_iter()
        .map(|r| r.expect("test YAML parses"));
    MeshIndex::from_resources(1, resources)
}

fn proxy(namespace: &str, labels: &[(&str, &str)]) -> ProxyIdentity {
    proxy_at(namespace, labels, "127.0.9.9")
}

/// A `productpage-v1` proxy of `namespace` with `labels` at `ip`.
pub(super) fn proxy_at(namespace: &str, labels: &[(&str, &str)], ip: &str) -> ProxyIdentity {
    ProxyIdentity {
        id: "p".into(),
        workload: "productpage-v1".into(),
        namespace: namespace.into(),
        service_account: "productpage".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ips: vec![ip.parse().expect("ip")],
        trust_domain: "cluster.local".into(),
    }
}

fn reviews_host(config: &pb::ProxyConfig) -> &pb::VirtualHost {
    config
        .virtual_hosts
        .iter()
        .find(|v| v.service == "reviews.default.svc.cluster.local")
        .expect("reviews virtual host")
}

fn forward(route: &pb::Route) -> Vec<(String, u32)> {
    match &route.action {
        Some(pb::route::Action::Forward(w)) => w
            .clusters
            .iter()
            .map(|c| (c.cluster.clone(), c.weight))
            .collect(),
        other => panic!("not a forward: {other:?}"),
    }
}

#[test]
fn translate_no_virtual_service_routes_to_all_endpoints() {
    let config = translate(&index(""), &proxy("default", &[]));
    let vh = reviews_host(&config);
    assert_eq!(vh.port, 9080);
    for d in [
        "reviews",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
    ] {
        assert!(vh.domains.iter().any(|x| x == d), "missing domain {d}");
    }
    assert_eq!(vh.routes.len(), 1);
    let targets = forward(&vh.routes[0]);
    assert_eq!(
        targets,
        vec![(
            "outbound|9080||reviews.default.svc.cluster.local".into(),
            100
        )]
    );
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == targets[0].0)
        .expect("cluster");
    assert_eq!(cluster.endpoints.len(), 2);
    let sidecars: Vec<bool> = cluster.endpoints.iter().map(|e| e.sidecar).collect();
    assert_eq!(sidecars, vec![true, false]);
}

#[test]
fn translate_short_name_not_a_domain_from_other_namespace() {
    let config = translate(&index(""), &proxy("other", &[]));
    let vh = reviews_host(&config);
    assert!(!vh.domains.iter().any(|d| d == "reviews"));
    assert!(vh.domains.iter().any(|d| d == "reviews.default"));
}

#[test]
fn translate_seed_reviews_routes_in_order_with_subsets() {
    let vs = r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {user-agent: {regex: '.*Mobile.*'}}}]
    route: [{destination: {host: reviews, subset: mobile}}]
  - match: [{headers: {cookie: {regex: '^(.*?;)?(beta=true)(;.*)?$'}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
"#;
    let config = translate(&index(vs), &proxy("default", &[]));
    let vh = reviews_host(&config);
    assert_eq!(vh.routes.len(), 3);
    assert_eq!(vh.routes[0].virtual_service, "default/reviews");
    let m = &vh.routes[0].matches[0].headers["user-agent"];
    assert_eq!(
        m.kind,
        Some(pb::string_match::Kind::Regex(".*Mobile.*".into()))
    );
    assert_eq!(
        forward(&vh.routes[2]),
        vec![
            (
                "outbound|9080|v1|reviews.default.svc.cluster.local".into(),
                90
            ),
            (
                "outbound|9080|v2|reviews.default.svc.cluster.local".into(),
                10
            )
        ]
    );
    let by_name = |n: &str| config.clusters.iter().find(|c| c.name == n).expect(n);
    let v1 = by_name("outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_eq!(v1.endpoints.len(), 1);
    assert_eq!(v1.endpoints[0].address, "127.0.9.1");
    assert_eq!(
        v1.endpoints[0]
            .workload
            .as_ref()
            .map(|w| w.version.as_str()),
        Some("v1")
    );
    let lb = v1.load_balancer.as_ref().expect("lb");
    assert_eq!(lb.simple, pb::load_balancer::Simple::RoundRobin as i32);
    // The subset's own policy overrides the top level.
    let v2 = by_name("outbound|9080|v2|reviews.default.svc.cluster.local");
    let hash = v2
        .load_balancer
        .as_ref()
        .and_then(|l| l.consistent_hash.as_ref());
    assert_eq!(
        hash.and_then(|h| h.key.clone()),
        Some(pb::consistent_hash::Key::Header("x-user".into()))
    );
    // No subset named mobile: a named cluster with no endpoints (503), not a dangling reference.
    let mobile = by_name("outbound|9080|mobile|reviews.default.svc.cluster.local");
    assert!(mobile.endpoints.is_empty());
}

#[test]
fn translate_source_labels_drop_rule_for_other_proxies() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{sourceNamespace: prod}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;
    let idx = index(vs);
    let from_productpage = translate(&idx, &proxy("default", &[("app", "productpage")]));
    assert_eq!(reviews_host(&from_productpage).routes.len(), 2);
    let from_other = translate(&idx, &proxy("default", &[("app", "ratings")]));
    let routes = &reviews_host(&from_other).routes;
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].rule_index, 2);
    let from_prod = translate(&idx, &proxy("prod", &[]));
    assert_eq!(reviews_host(&from_prod).routes[0].rule_index, 1);
}

#[test]
fn translate_gateway_only_virtual_service_not_bound_to_sidecars() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [istio-system/ingress]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
"#;
    let config = translate(&index(vs), &proxy("default", &[]));
    assert_eq!(reviews_host(&config).routes[0].virtual_service, "");
}

#[test]
fn translate_export_to_dot_hides_from_other_namespaces() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
"#;
    let idx = index(vs);
    let same = translate(&idx, &proxy("default", &[]));
    assert_eq!(
        reviews_host(&same).routes[0].virtual_service,
        "default/reviews"
    );
    let other = translate(&idx, &proxy("other", &[]));
    assert_eq!(reviews_host(&other).routes[0].virtual_service, "");
}

#[test]
fn translate_inbound_lists_ports_of_own_services() {
    let mut p = proxy("default", &[("app", "reviews")]);
    p.ips = vec!["127.0.9.1".parse().expect("ip")];
    let config = translate(&index(""), &p);
    let inbound = config.inbound.expect("inbound");
    assert_eq!(inbound.ports.len(), 1);
    assert_eq!(inbound.ports[0].target_port, 9080);
    assert_eq!(inbound.ports[0].service_name, "reviews");
}

#[test]
fn translate_regex_rewrite_uses_rust_group_syntax() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - rewrite: {uriRegexRewrite: {match: '^/v1/(.*)$', rewrite: '/api/\1?x=$'}}
    route: [{destination: {host: reviews}}]
"#;
    let config = translate(&index(vs), &proxy("default", &[]));
    let rw = reviews_host(&config).routes[0]
        .rewrite
        .clone()
        .expect("rewrite");
    assert_eq!(rw.uri_regex.expect("regex").substitution, "/api/${1}?x=$$");
}

#[test]
fn translate_cors_policy_as_istio_gives_it_to_envoy() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /ignore}}]
    corsPolicy:
      allowOrigin: [https://legacy.example]
      unmatchedPreflights: IGNORE
    route: [{destination: {host: reviews}}]
  - corsPolicy:
      allowOrigins: [{exact: https://example.com}, {regex: 'https://.*\.example\.org'}]
      allowMethods: [POST, GET]
      allowHeaders: [X-Foo-Bar]
      exposeHeaders: [X-Expose]
      maxAge: 24h
      allowCredentials: false
    route: [{destination: {host: reviews}}]
"#;
    let config = translate(&index(vs), &proxy("default", &[]));
    let routes = &reviews_host(&config).routes;
    let ignore = routes[0].cors.clone().expect("cors");
    assert!(ignore.ignore_unmatched_preflights);
    assert_eq!(ignore.max_age_s, None, "no maxAge, no header");
    let exact = |s: &str| pb::StringMatch {
        kind: Some(pb::string_match::Kind::Exact(s.to_owned())),
    };
    assert_eq!(ignore.allow_origins, vec![exact("https://legacy.example")]);
    let cors = routes[1].cors.clone().expect("cors");
    assert!(!cors.ignore_unmatched_preflights, "FORWARD is the default");
    assert_eq!(cors.max_age_s, Some(86_400));
    assert_eq!(cors.allow_methods, ["POST", "GET"]);
    assert_eq!(cors.allow_headers, ["X-Foo-Bar"]);
    assert_eq!(cors.expose_headers, ["X-Expose"]);
    assert!(!cors.allow_credentials);
    assert_eq!(cors.allow_origins.len(), 2);
    assert_eq!(cors.allow_origins[0], exact("https://example.com"));
}

#[test]
fn translate_delegate_rules_replace_the_naming_rule_in_place() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: gone
    match: [{uri: {prefix: /missing}}]
    delegate: {name: nowhere}
  - name: hidden
    match: [{uri: {prefix: /hidden}}]
    delegate: {name: private, namespace: team}
  - name: v2
    match: [{uri: {prefix: /v2}}]
    timeout: 3s
    delegate: {name: reviews-v2, namespace: team}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-v2, namespace: team}
spec:
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}, uri: {prefix: /v2/beta}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - match: [{uri: {prefix: /other}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]
    timeout: 1s
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: team}
spec:
  exportTo: [.]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local}}]
"#;
    let config = translate(&index(vs), &proxy("default", &[]));
    let routes = &reviews_host(&config).routes;
    // The missing and the hidden delegate drop their rules; the delegate's
    // rule outside /v2 conflicts with the root's match and is dropped too.
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["v2-jason", "v2", ""]);
    let v2 = cname_of("reviews", 9080, "v2");
    let v1 = cname_of("reviews", 9080, "v1");
    assert_eq!(forward(&routes[0]), [(v2, 100)]);
    let m = &routes[0].matches[0];
    assert!(m.headers.contains_key("end-user"));
    assert_eq!(
        m.uri.as_ref().and_then(|u| u.kind.clone()),
        Some(pb::string_match::Kind::Prefix("/v2/beta".into()))
    );
    // The root's timeout where the delegate sets none, the delegate's own otherwise.
    assert_eq!(routes[0].timeout_ms, 3000);
    assert_eq!(forward(&routes[1]), [(v1.clone(), 100)]);
    assert_eq!(routes[1].timeout_ms, 1000);
    assert_eq!(
        routes[1].matches[0]
            .uri
            .as_ref()
            .and_then(|u| u.kind.clone()),
        Some(pb::string_match::Kind::Prefix("/v2".into()))
    );
    assert_eq!(forward(&routes[2]), [(v1, 100)]);
    // A delegate is never a VirtualService of its own.
    assert!(config.virtual_hosts.iter().all(|h| {
        h.routes
            .iter()
            .all(|r| !r.virtual_service.starts_with("team/"))
    }));
}

fn cname_of(service: &str, port: u32, subset: &str) -> String {
    format!("outbound|{port}|{subset}|{service}.default.svc.cluster.local")
}

const SEED: &str = include_str!("../../../../shared/seed-mesh.yaml");

fn seed_index() -> MeshIndex {
    let orders = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [orders.default.svc.cluster.local]
  ports: [{number: 8080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: orders}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: orders-v1-0, namespace: default}
spec: {address: 127.0.9.5, labels: {app: orders, version: v1}, serviceAccount: orders}
"#;
    index(&format!("{orders}\n---\n{SEED}"))
}

#[test]
fn translate_seed_destination_rule_outlier_and_pool_in_force() {
    let config = translate(&seed_index(), &proxy("default", &[]));
    let v1 = config
        .clusters
        .iter()
        .find(|c| c.name == "outbound|9080|v1|reviews.default.svc.cluster.local")
        .expect("v1 cluster");
    let od = v1.outlier_detection.as_ref().expect("outlier detection");
    // Deprecated consecutiveErrors counts gateway errors only and turns the 5xx rule off.
    assert_eq!(od.consecutive_gateway_errors, 5);
    assert_eq!(od.consecutive_5xx_errors, 0);
    assert_eq!(od.interval_ms, 30_000);
    assert_eq!(od.base_ejection_time_ms, 30_000);
    assert_eq!(od.max_ejection_percent, 50);
    assert_eq!(od.min_health_percent, 50);
    let cp = v1.connection_pool.as_ref().expect("connection pool");
    assert_eq!(
        (
            cp.max_connections,
            cp.http1_max_pending_requests,
            cp.http2_max_requests
        ),
        (100, 50, 100)
    );
    assert_eq!((cp.max_requests_per_connection, cp.max_retries), (2, 3));
    let lb = v1.load_balancer.as_ref().expect("lb");
    assert_eq!(lb.simple, pb::load_balancer::Simple::LeastRequest as i32);
}

#[test]
fn translate_outlier_defaults_follow_istio() {
    let text = MESH.replace(
        "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n",
        "  trafficPolicy: {outlierDetection: {baseEjectionTime: 1s}}\n",
    );
    let resources = parse_documents(&text, "default")
        .into_iter()
        .map(|r| r.expect("parses"));
    let config = translate(
        &MeshIndex::from_resources(1, resources),
        &proxy("default", &[]),
    );
    let c = config
        .clusters
        .iter()
        .find(|c| c.name == "outbound|9080||reviews.default.svc.cluster.local")
        .expect("cluster");
    let od = c.outlier_detection.as_ref().expect("outlier");
    assert_eq!(od.consecutive_5xx_errors, 5);
    assert_eq!(od.consecutive_gateway_errors, 0);
    assert_eq!(od.interval_ms, 10_000);
    assert_eq!(od.base_ejection_time_ms, 1_000);
    assert_eq!(od.max_ejection_percent, 10);
    assert_eq!(od.min_health_percent, 0);
}

#[test]
fn translate_seed_orders_retries_timeout_and_no_budget() {
    let config = translate(&seed_index(), &proxy("default", &[]));
    let vh = config
        .virtual_hosts
        .iter()
        .find(|v| v.service == "orders.default.svc.cluster.local")
        .expect("orders vhost");
    let route = &vh.routes[0];
    assert_eq!(route.timeout_ms, 10_000);
    let r = route.retries.as_ref().expect("retries");
    assert_eq!((r.attempts, r.per_try_timeout_ms), (3, 2_000));
    assert_eq!(r.retry_on, "5xx,reset,connect-failure,refused-stream");
    assert!(!r.is_default && r.retry_ignore_previous_hosts);
    // As Istio: retries bounded by `attempts` only, unless a budget is set.
    assert_eq!(r.budget, None);
    assert_eq!(r.backoff_base_ms, 25);
}

#[test]
fn translate_seed_envoy_filter_limits_orders_inbound_only() {
    let idx = seed_index();
    let mut orders = proxy("default", &[("app", "orders")]);
    orders.ips = vec!["127.0.9.5".parse().expect("ip")];
    let limits = translate(&idx, &orders)
        .inbound
        .expect("inbound")
        .rate_limits;
    assert_eq!(limits.len(), 1);
    let l = &limits[0];
    assert_eq!(l.name, "default/EnvoyFilter/rate-limit-filter");
    assert_eq!(
        (l.max_tokens, l.tokens_per_fill, l.fill_interval_ms),
        (100, 10, 1_000)
    );
    assert_eq!((l.enabled_percent, l.enforced_percent), (100.0, 100.0));
    let other = translate(&idx, &proxy("default", &[("app", "reviews")]));
    assert!(other.inbound.expect("inbound").rate_limits.is_empty());
}

#[test]
fn translate_rate_limit_policy_with_match_and_principals() {
    let rl = r#"
apiVersion: sluice.io/v1alpha1
kind: RateLimitPolicy
metadata: {name: reviews-api}
spec:
  selector: {matchLabels: {app: reviews}}
  maxTokens: 5
  tokensPerFill: 1
  fillInterval: 2s
  match: [{uri: {prefix: /api}, method: {exact: POST}}]
  sourcePrincipals: ["spiffe://cluster.local/ns/default/sa/frontend"]
"#;
    let limits = translate(&index(rl), &proxy("default", &[("app", "reviews")]))
        .inbound
        .expect("inbound")
        .rate_limits;
    assert_eq!(limits.len(), 1);
    let l = &limits[0];
    assert_eq!(
        (l.max_tokens, l.tokens_per_fill, l.fill_interval_ms),
        (5, 1, 2_000)
    );
    assert_eq!(
        l.source_principals,
        vec!["cluster.local/ns/default/sa/frontend"]
    );
    assert_eq!(
        l.matches[0].uri.as_ref().and_then(|u| u.kind.clone()),
        Some(pb::string_match::Kind::Prefix("/api".into()))
    );
    let elsewhere = translate(&index(rl), &proxy("other", &[("app", "reviews")]));
    assert!(elsewhere.inbound.expect("inbound").rate_limits.is_empty());
}

#[test]
fn translate_retry_budget_annotation_overrides_mesh_default() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  annotations: {retry.sluice.io/budget-percent: "5", retry.sluice.io/budget-min-retries-per-second: "1"}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 2, retryOn: 5xx}
"#;
    let config = translate(&index(vs), &proxy("default", &[]));
    let b = reviews_host(&config).routes[0]
        .retries
        .as_ref()
        .and_then(|r| r.budget)
        .expect("budget");
    assert_eq!((b.percent, b.min_retries_per_second), (5.0, 1));
}

#[test]
fn translate_retry_budget_mesh_default_and_partial_annotation() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  annotations: {retry.sluice.io/budget-min-retries-per-second: "3"}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
"#;
    let budget = |idx: &MeshIndex| {
        let config = translate(idx, &proxy("default", &[]));
        reviews_host(&config).routes[0]
            .retries
            .as_ref()
            .and_then(|r| r.budget)
            .map(|b| (b.percent, b.min_retries_per_second))
    };
    // One annotation: the other part is Linkerd's default.
    assert_eq!(budget(&index(vs)), Some((20.0, 3)));
    // With a mesh budget, the unset part comes from it; without any
    // annotation the mesh budget applies, also to the default policy.
    // (A fresh index each time: outbound halves are cached per index.)
    let mut idx = index(vs);
    let mut mesh = (*idx.mesh).clone();
    mesh.retry_budget = Some(crate::mesh_config::RetryBudget {
        percent: 50.0,
        min_per_second: 7,
    });
    idx.mesh = std::sync::Arc::new(mesh.clone());
    assert_eq!(budget(&idx), Some((50.0, 3)));
    assert_eq!(budget(&index("")), None);
    let mut plain = index("");
    plain.mesh = std::sync::Arc::new(mesh);
    assert_eq!(budget(&plain), Some((50.0, 7)));
}

#[test]
fn translate_default_retry_policy_leaves_503_alone_like_istio_1_24() {
    let config = translate(&index(""), &proxy("default", &[]));
    let r = reviews_host(&config).routes[0]
        .retries
        .clone()
        .expect("retries");
    assert!(r.is_default);
    assert_eq!(r.attempts, 2);
    assert_eq!(
        r.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 4}
"#;
    let config = translate(&index(vs), &proxy("default", &[]));
    let r = reviews_host(&config).routes[0]
        .retries
        .clone()
        .expect("retries");
    assert_eq!((r.attempts, r.is_default), (4, false));
    assert!(
        r.retry_on.ends_with("retriable-status-codes"),
        "{}",
        r.retry_on
    );
}

#[test]
fn translate_outbound_built_once_per_group_of_alike_proxies() {
    let idx = index("");
    let a = translate(&idx, &proxy("default", &[("app", "ratings")]));
    let mut twin = proxy("default", &[("app", "ratings")]);
    twin.id = "twin".into();
    twin.ips = vec!["127.0.9.1".parse().expect("ip")];
    let b = translate(&idx, &twin);
    assert_eq!(a.virtual_hosts, b.virtual_hosts);
    assert_eq!(a.clusters, b.clusters);
    assert_ne!(a.inbound, b.inbound, "inbound stays per proxy");
    assert_eq!(idx.outbound_cache.len(), 1);
    let other = translate(&idx, &proxy("other", &[("app", "ratings")]));
    assert_eq!(idx.outbound_cache.len(), 2);
    assert_ne!(
        a.virtual_hosts, other.virtual_hosts,
        "short names differ by namespace"
    );
}

#[test]
fn translate_outbound_groups_only_by_labels_objects_select_on() {
    let idx = index("");
    translate(&idx, &proxy("default", &[("app", "a")]));
    translate(&idx, &proxy("default", &[("app", "b")]));
    assert_eq!(idx.outbound_cache.len(), 1, "nothing selects by app");
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: a}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;
    let idx = index(vs);
    let a = translate(&idx, &proxy("default", &[("app", "a"), ("pod", "1")]));
    let a2 = translate(&idx, &proxy("default", &[("app", "a"), ("pod", "2")]));
    let b = translate(&idx, &proxy("default", &[("app", "b")]));
    assert_eq!(idx.outbound_cache.len(), 2);
    assert_eq!(a.virtual_hosts, a2.virtual_hosts);
    assert_ne!(a.virtual_hosts, b.virtual_hosts);
}

#[test]
fn outbound_traffic_policy_follows_mesh_config() {
    let mut idx = index("");
    let policy = |idx: &MeshIndex| {
        translate(idx, &proxy("default", &[]))
            .outbound
            .map(|o| o.traffic_policy())
    };
    // Istio's default: unknown destinations pass through.
    assert_eq!(policy(&idx), Some(pb::OutboundTrafficPolicy::AllowAny));
    let (mesh, _) = crate::mesh_config::parse_mesh_config(
        "outboundTrafficPolicy: {mode: REGISTRY_ONLY}",
        (*idx.mesh).clone(),
    )
    .expect("mesh config parses");
    idx.mesh = std::sync::Arc::new(mesh);
    assert_eq!(policy(&idx), Some(pb::OutboundTrafficPolicy::RegistryOnly));
}

#[test]
fn path_normalization_follows_mesh_config() {
    let mode = |idx: &MeshIndex| {
        translate(idx, &proxy("default", &[]))
            .outbound
            .map(|o| o.path_normalization())
    };
    let mut idx = index("");
    assert_eq!(mode(&idx), Some(pb::PathNormalization::Base));
    let (mesh, _) = crate::mesh_config::parse_mesh_config(
        "pathNormalization: {normalization: MERGE_SLASHES}",
        (*idx.mesh).clone(),
    )
    .expect("mesh config parses");
    idx.mesh = std::sync::Arc::new(mesh);
    assert_eq!(mode(&idx), Some(pb::PathNormalization::MergeSlashes));
}

#[test]
fn translate_gateway_binds_no_sidecar_and_changes_no_config() {
    // Istio's bookinfo-gateway.yaml, plus a VirtualService bound to the
    // gateway and to `mesh`: only `mesh` reaches sidecars, and the Gateway
    // itself changes nothing a sidecar gets.
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [bookinfo-gateway, mesh]
  http:
  - route: [{destination: {host: reviews, subset: v2}}]
"#;
    let gateway = r#"
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
"#;
    let with_gateway = index(&format!("{vs}{gateway}"));
    assert!(
        with_gateway.rejected.is_empty(),
        "{:?}",
        with_gateway.rejected
    );
    assert_eq!(
        with_gateway.of_kind(crate::resource::kind::GATEWAY).count(),
        1
    );
    let p = proxy("default", &[]);
    let config = translate(&with_gateway, &p);
    assert_eq!(
        reviews_host(&config).routes[0].virtual_service,
        "default/reviews"
    );
    assert_eq!(config, translate(&index(vs), &p));
}

#[test]
fn translate_host_header_operations_become_authority_rewrites() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - headers: {request: {set: {Host: set.example, x-a: "1"}, add: {host: added.example}, remove: [host, x-b]}}
    retries: {attempts: 2, backoff: 2s}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
      headers: {request: {add: {":authority": dest.example}}}
    - destination: {host: reviews, subset: v2}
      weight: 50
"#,
    );
    let config = translate(&idx, &proxy("default", &[]));
    let vh = config
        .virtual_hosts
        .iter()
        .find(|v| v.service == "reviews.default.svc.cluster.local")
        .expect("reviews vhost");
    let route = &vh.routes[0];
    // `set` wins over `add`; Envoy cannot set `host` as a header.
    assert_eq!(
        route.rewrite.as_ref().expect("rewrite").authority,
        "set.example"
    );
    let ops = route.request_headers.as_ref().expect("ops");
    assert_eq!(ops.set.keys().collect::<Vec<_>>(), ["x-a"]);
    assert!(ops.add.is_empty());
    assert_eq!(ops.remove, ["x-b"]);
    let Some(pb::route::Action::Forward(w)) = &route.action else {
        panic!("forward")
    };
    assert_eq!(w.clusters[0].authority, "dest.example");
    assert!(
        w.clusters[0]
            .request_headers
            .as_ref()
            .expect("ops")
            .add
            .is_empty()
    );
    assert_eq!(w.clusters[1].authority, "");
    assert_eq!(
        route.retries.as_ref().expect("retries").backoff_base_ms,
        2_000
    );
}
