use super::super::tests::{index_of, proxy_at};
use super::super::{ProxyIdentity, translate};
use crate::index::MeshIndex;
use sluice_api::config as pb;

/// Services in two namespaces, one with two ports, and a VirtualService of
/// `shop` that sends `cart` traffic to `carts` of `backend`.
const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: tcp, protocol: TCP}]
  endpoints: [{address: 127.0.9.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: backend}
spec:
  hosts: [ratings.backend.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.9.2}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: carts, namespace: backend}
spec:
  hosts: [carts.backend.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.9.3}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.9.4}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http: [{route: [{destination: {host: carts.backend.svc.cluster.local}}]}]
"#;

fn index(extra: &str) -> MeshIndex {
    index_of(MESH, extra)
}

/// A proxy at reviews' endpoint address.
fn proxy(namespace: &str, labels: &[(&str, &str)]) -> ProxyIdentity {
    proxy_at(namespace, labels, "127.0.9.1")
}

/// `host:port` of every virtual host and TCP service the proxy gets.
fn reachable(config: &pb::ProxyConfig) -> Vec<String> {
    let mut out: Vec<String> = config
        .virtual_hosts
        .iter()
        .map(|v| v.name.replace(".svc.cluster.local", ""))
        .chain(
            config
                .tcp_services
                .iter()
                .map(|t| format!("{}:{}", t.service.replace(".svc.cluster.local", ""), t.port)),
        )
        .collect();
    out.sort();
    out
}

fn policy(config: &pb::ProxyConfig) -> Option<pb::OutboundTrafficPolicy> {
    config.outbound.as_ref().map(|o| o.traffic_policy())
}

#[test]
fn without_a_sidecar_everything_is_reachable() {
    let idx = index("");
    assert_eq!(
        reachable(&translate(&idx, &proxy("shop", &[]))),
        [
            "cart.shop:80",
            "carts.backend:80",
            "ratings.backend:9080",
            "reviews.shop:9080",
            "reviews.shop:9090"
        ]
    );
}

#[test]
fn namespace_sidecar_imports_own_namespace_and_virtual_service_destinations() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["./*"]}]
"#,
    );
    // `carts` (backend) is not imported by name but is the destination of
    // the imported VirtualService `cart`.
    assert_eq!(
        reachable(&translate(&idx, &proxy("shop", &[]))),
        [
            "cart.shop:80",
            "carts.backend:80",
            "reviews.shop:9080",
            "reviews.shop:9090"
        ]
    );
    // Another namespace is not affected by shop's Sidecar.
    assert_eq!(reachable(&translate(&idx, &proxy("backend", &[]))).len(), 5);
}

#[test]
fn root_namespace_sidecar_is_the_default_and_dot_means_the_workloads_namespace() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress: [{hosts: ["./*"]}]
"#,
    );
    assert_eq!(
        reachable(&translate(&idx, &proxy("backend", &[]))),
        ["carts.backend:80", "ratings.backend:9080"]
    );
    // A namespace Sidecar wins over the root default.
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: backend}
spec:
  egress: [{hosts: ["shop/reviews.shop.svc.cluster.local"]}]
"#,
    );
    assert_eq!(
        reachable(&translate(&idx, &proxy("backend", &[]))),
        ["reviews.shop:9080", "reviews.shop:9090"]
    );
}

#[test]
fn selector_sidecar_wins_over_the_namespace_one_for_its_workloads() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ratings-only, namespace: shop}
spec:
  workloadSelector: {labels: {app: frontend}}
  egress: [{hosts: ["backend/ratings.backend.svc.cluster.local"]}]
"#,
    );
    assert_eq!(
        reachable(&translate(&idx, &proxy("shop", &[("app", "frontend")]))),
        ["ratings.backend:9080"]
    );
    assert_eq!(
        reachable(&translate(&idx, &proxy("shop", &[("app", "other")]))).len(),
        4
    );
}

#[test]
fn a_port_listener_shadows_the_catch_all_on_its_port() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: ["backend/*"]
  - hosts: ["./*"]
"#,
    );
    // 9080 goes to backend only (ratings); every other port to shop's own.
    assert_eq!(
        reachable(&translate(&idx, &proxy("shop", &[]))),
        [
            "cart.shop:80",
            "carts.backend:80",
            "ratings.backend:9080",
            "reviews.shop:9090"
        ]
    );
}

#[test]
fn none_namespace_and_wildcard_names() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["~/*", "*/*.backend.svc.cluster.local"]}]
"#,
    );
    assert_eq!(
        reachable(&translate(&idx, &proxy("shop", &[]))),
        ["carts.backend:80", "ratings.backend:9080"]
    );
}

#[test]
fn outbound_traffic_policy_of_the_sidecar_wins_over_the_mesh() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: open, namespace: shop}
spec:
  workloadSelector: {labels: {app: open}}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: unset, namespace: shop}
spec:
  workloadSelector: {labels: {app: unset}}
  outboundTrafficPolicy: {}
"#,
    );
    let shop = translate(&idx, &proxy("shop", &[]));
    assert_eq!(policy(&shop), Some(pb::OutboundTrafficPolicy::RegistryOnly));
    // No egress listeners: everything stays reachable.
    assert_eq!(reachable(&shop).len(), 5);
    let open = translate(&idx, &proxy("shop", &[("app", "open")]));
    assert_eq!(policy(&open), Some(pb::OutboundTrafficPolicy::AllowAny));
    // The proto's default mode is REGISTRY_ONLY.
    let unset = translate(&idx, &proxy("shop", &[("app", "unset")]));
    assert_eq!(
        policy(&unset),
        Some(pb::OutboundTrafficPolicy::RegistryOnly)
    );
    let other = translate(&idx, &proxy("backend", &[]));
    assert_eq!(policy(&other), Some(pb::OutboundTrafficPolicy::AllowAny));
}

#[test]
fn oldest_of_two_matching_selector_sidecars_wins() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: b-newer, namespace: shop, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  workloadSelector: {labels: {app: frontend}}
  egress: [{hosts: ["backend/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a-older, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  workloadSelector: {labels: {app: frontend}}
  egress: [{hosts: ["./*"]}]
"#,
    );
    assert_eq!(
        reachable(&translate(&idx, &proxy("shop", &[("app", "frontend")]))).len(),
        4
    );
}

#[test]
fn ingress_default_endpoint_sets_the_app_port() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
  - port: {number: 7070, protocol: TCP, name: extra}
    defaultEndpoint: 0.0.0.0:7071
  - port: {number: 6060, protocol: HTTP, name: sock}
    defaultEndpoint: unix:///var/run/app.sock
"#,
    );
    let config = translate(&idx, &proxy("shop", &[]));
    let ports: Vec<(u32, u32, u32, String)> = config
        .inbound
        .expect("inbound")
        .ports
        .iter()
        .map(|p| (p.target_port, p.service_port, p.app_port, p.service.clone()))
        .collect();
    assert_eq!(
        ports,
        [
            (6060, 6060, 0, String::new()),
            (7070, 7070, 7071, String::new()),
            (9080, 9080, 8080, "reviews.shop.svc.cluster.local".into()),
            (9090, 9090, 0, "reviews.shop.svc.cluster.local".into()),
        ]
    );
}

#[test]
fn sidecar_selector_labels_split_the_outbound_cache() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: shop}
spec:
  workloadSelector: {labels: {tier: edge}}
  egress: [{hosts: ["./cart.shop.svc.cluster.local"]}]
"#,
    );
    let edge = translate(&idx, &proxy("shop", &[("tier", "edge")]));
    let other = translate(&idx, &proxy("shop", &[("tier", "core")]));
    // `cart` and its VirtualService's destination `carts`.
    assert_eq!(reachable(&edge), ["cart.shop:80", "carts.backend:80"]);
    assert_eq!(reachable(&other).len(), 5);
}

#[test]
fn ingress_listener_protocol_replaces_the_service_ports() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  ingress:
  - port: {number: 9080, protocol: TCP, name: tcp}
    defaultEndpoint: 127.0.0.1:9080
"#,
    );
    let config = translate(&idx, &proxy("shop", &[]));
    let ports: Vec<(u32, pb::Protocol)> = config
        .inbound
        .expect("inbound")
        .ports
        .iter()
        .map(|p| (p.target_port, p.protocol()))
        .collect();
    // reviews declares 9080 HTTP; the listener makes it TCP. 9090 stays.
    assert_eq!(
        ports,
        [(9080, pb::Protocol::Tcp), (9090, pb::Protocol::Tcp)]
    );
    let without = translate(&index(""), &proxy("shop", &[]));
    assert_eq!(
        without.inbound.expect("inbound").ports[0].protocol(),
        pb::Protocol::Http
    );
}

#[test]
fn egress_listener_protocol_replaces_the_service_ports_for_its_proxies() {
    let idx = index(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: tcp, namespace: shop}
spec:
  workloadSelector: {labels: {app: tcp}}
  egress:
  - port: {number: 9080, protocol: TCP, name: tcp}
    hosts: ["*/*"]
  - hosts: ["*/*"]
"#,
    );
    let names = |c: &pb::ProxyConfig| {
        let vhosts: Vec<String> = c.virtual_hosts.iter().map(|v| v.name.clone()).collect();
        let tcp: Vec<String> = c.tcp_services.iter().map(|t| t.name.clone()).collect();
        (vhosts, tcp)
    };
    let (vhosts, tcp) = names(&translate(&idx, &proxy("shop", &[("app", "tcp")])));
    assert!(
        tcp.contains(&"reviews.shop.svc.cluster.local:9080".to_owned())
            && tcp.contains(&"ratings.backend.svc.cluster.local:9080".to_owned()),
        "{tcp:?}"
    );
    assert!(!vhosts.iter().any(|v| v.ends_with(":9080")), "{vhosts:?}");
    // Other ports, and proxies without the Sidecar, keep the services' protocols.
    assert!(vhosts.contains(&"cart.shop.svc.cluster.local:80".to_owned()));
    let (vhosts, tcp) = names(&translate(&idx, &proxy("shop", &[("app", "other")])));
    assert!(vhosts.contains(&"reviews.shop.svc.cluster.local:9080".to_owned()));
    assert!(!tcp.contains(&"reviews.shop.svc.cluster.local:9080".to_owned()));
}
