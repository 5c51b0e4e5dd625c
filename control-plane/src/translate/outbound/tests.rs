//! Hosts declared more than once, and VirtualService hosts under wildcard
//! services, as each proxy's outbound half sees them.

use super::super::tests::{index_of, proxy_at};
use super::super::{rules_for_service, service_for, translate};
use crate::index::MeshIndex;
use sluice_api::config as pb;

/// `shared.internal.example` declared in `default` (backed by 127.0.9.1)
/// and in `other` (127.0.9.2), each with `export` as exportTo.
fn shared(export: &str) -> String {
    let se = |ns: &str, ip: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: shared, namespace: {ns}}}\n\
             spec:\n  hosts: [shared.internal.example]\n  exportTo: {export}\n  \
             location: MESH_INTERNAL\n  resolution: STATIC\n  \
             ports: [{{number: 80, name: http, protocol: HTTP}}]\n  \
             endpoints: [{{address: {ip}, labels: {{version: {ns}}}}}]\n---\n"
        )
    };
    format!("{}{}", se("default", "127.0.9.1"), se("other", "127.0.9.2"))
}

fn index(mesh: &str, extra: &str) -> MeshIndex {
    index_of(mesh, extra)
}

fn cluster<'c>(config: &'c pb::ProxyConfig, name: &str) -> &'c pb::Cluster {
    config
        .clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

fn addresses(c: &pb::Cluster) -> Vec<&str> {
    c.endpoints.iter().map(|e| e.address.as_str()).collect()
}

fn vhost<'c>(config: &'c pb::ProxyConfig, name: &str) -> &'c pb::VirtualHost {
    config
        .virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

fn forward(route: &pb::Route) -> Vec<&str> {
    match &route.action {
        Some(pb::route::Action::Forward(w)) => {
            w.clusters.iter().map(|c| c.cluster.as_str()).collect()
        }
        other => panic!("not a forward: {other:?}"),
    }
}

const SHARED: &str = "outbound|80||shared.internal.example";

#[test]
fn each_namespace_sees_only_the_declaration_exported_to_it() {
    let idx = index(&shared("['.']"), "");
    let mine = translate(&idx, &proxy_at("default", &[], "127.0.8.1"));
    let theirs = translate(&idx, &proxy_at("other", &[], "127.0.8.2"));
    assert_eq!(addresses(cluster(&mine, SHARED)), ["127.0.9.1"]);
    assert_eq!(cluster(&mine, SHARED).service_namespace, "default");
    assert_eq!(addresses(cluster(&theirs, SHARED)), ["127.0.9.2"]);
    assert_eq!(cluster(&theirs, SHARED).service_namespace, "other");
    // Two groups, each with its own cluster under the same name.
    assert_eq!(idx.outbound_cache.len(), 2);
    let third = translate(&idx, &proxy_at("third", &[], "127.0.8.3"));
    assert!(third.clusters.iter().all(|c| c.name != SHARED));
    assert!(third.virtual_hosts.is_empty());
}

#[test]
fn own_namespace_declaration_wins_else_the_first() {
    let idx = index(&shared("['*']"), "");
    let ns_of = |ns: &str| {
        let config = translate(&idx, &proxy_at(ns, &[], "127.0.8.1"));
        let c = cluster(&config, SHARED);
        (c.service_namespace.clone(), addresses(c).join(","))
    };
    assert_eq!(ns_of("default"), ("default".into(), "127.0.9.1".into()));
    assert_eq!(ns_of("other"), ("other".into(), "127.0.9.2".into()));
    // Neither own: the first (no creation times: namespace order).
    assert_eq!(ns_of("third"), ("default".into(), "127.0.9.1".into()));
    let viewer = proxy_at("other", &[], "127.0.8.1");
    let chosen = service_for(&idx, &viewer, "shared.internal.example").expect("seen");
    assert_eq!(chosen.namespace, "other");
}

#[test]
fn destination_rule_and_virtual_service_follow_the_chosen_declaration() {
    // A DestinationRule of the declaring namespace applies to proxies that
    // use that namespace's declaration, and to no one else.
    let rules = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shared, namespace: other}
spec:
  host: shared.internal.example
  subsets: [{name: mine, labels: {version: other}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shared, namespace: third}
spec:
  hosts: [shared.internal.example]
  exportTo: ['*']
  http: [{route: [{destination: {host: shared.internal.example, subset: mine}}]}]
"#;
    let idx = index(&shared("['*']"), rules);
    let in_other = proxy_at("other", &[], "127.0.8.1");
    let in_default = proxy_at("default", &[], "127.0.8.2");
    let subset = "outbound|80|mine|shared.internal.example";
    let config = translate(&idx, &in_other);
    assert_eq!(addresses(cluster(&config, subset)), ["127.0.9.2"]);
    let (vs, dr) = rules_for_service(&idx, &in_other, "shared.internal.example");
    assert!(vs.is_some());
    assert_eq!(
        dr.as_deref().and_then(|d| d.metadata.namespace.as_deref()),
        Some("other")
    );
    // From default, its own declaration is used: the rule of `other` does
    // not apply, so the subset is unknown (no endpoints).
    let config = translate(&idx, &in_default);
    assert!(cluster(&config, subset).endpoints.is_empty());
    assert!(
        rules_for_service(&idx, &in_default, "shared.internal.example")
            .1
            .is_none()
    );
}

#[test]
fn sidecar_import_picks_the_declaration() {
    let sidecar = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: [other/shared.internal.example]}]
"#;
    let idx = index(&shared("['*']"), sidecar);
    let config = translate(&idx, &proxy_at("default", &[], "127.0.8.1"));
    let c = cluster(&config, SHARED);
    assert_eq!(c.service_namespace, "other");
    assert_eq!(addresses(c), ["127.0.9.2"]);
    vhost(&config, "shared.internal.example:80");
}

#[test]
fn virtual_service_destinations_never_override_an_explicit_import() {
    // istiod adds a VirtualService's destinations only for hosts the Sidecar
    // listener does not import itself: the `other` declaration stays, though
    // the VirtualService sits in `default`, whose own declaration would
    // otherwise win.
    let extra = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: [other/*, ./front.internal.example]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: default}
spec:
  hosts: [front.internal.example]
  http: [{route: [{destination: {host: shared.internal.example}}]}]
"#;
    let idx = index(&shared("['*']"), extra);
    let config = translate(&idx, &proxy_at("default", &[], "127.0.8.1"));
    let c = cluster(&config, SHARED);
    assert_eq!(c.service_namespace, "other");
    assert_eq!(addresses(c), ["127.0.9.2"]);
}

#[test]
fn inbound_side_serves_its_own_namespace_declaration() {
    let idx = index(&shared("['*']"), "");
    let config = translate(&idx, &proxy_at("other", &[], "127.0.9.2"));
    let ports = &config.inbound.as_ref().expect("inbound").ports;
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].service_namespace, "other");
}

#[test]
fn same_namespace_entries_serve_both_ports() {
    let mesh = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-a, namespace: default}
spec:
  hosts: [api.internal.example]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9080}]
  endpoints: [{address: 127.0.9.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-b, namespace: default}
spec:
  hosts: [api.internal.example]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http-alt, protocol: HTTP, targetPort: 9080}]
  endpoints: [{address: 127.0.9.1}]
"#;
    let config = translate(&index(mesh, ""), &proxy_at("default", &[], "127.0.8.1"));
    for port in [80, 8080] {
        let c = cluster(&config, &format!("outbound|{port}||api.internal.example"));
        assert_eq!(addresses(c), ["127.0.9.1"]);
        assert_eq!(c.endpoints[0].port, 9080);
        vhost(&config, &format!("api.internal.example:{port}"));
    }
}

const WILDCARD: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.internal.example"]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 5432, name: tcp, protocol: TCP}]
  endpoints: [{address: 127.0.9.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.9.2, labels: {version: v2}}]
"#;

const CANARY: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: canary, namespace: default}
spec:
  hosts: [canary.internal.example]
  http: [{route: [{destination: {host: reviews}}]}]
"#;

fn vhost_names(config: &pb::ProxyConfig) -> Vec<&str> {
    config
        .virtual_hosts
        .iter()
        .map(|v| v.name.as_str())
        .collect()
}

#[test]
fn virtual_service_host_under_a_wildcard_service_gets_its_own_virtual_host() {
    let config = translate(
        &index(WILDCARD, CANARY),
        &proxy_at("default", &[], "127.0.8.1"),
    );
    let canary = vhost(&config, "canary.internal.example:80");
    assert_eq!(canary.domains, ["canary.internal.example"]);
    assert_eq!(canary.port, 80);
    assert_eq!(canary.protocol, pb::Protocol::Http as i32);
    assert_eq!(canary.routes.len(), 1);
    assert_eq!(canary.routes[0].virtual_service, "default/canary");
    assert_eq!(
        forward(&canary.routes[0]),
        ["outbound|9080||reviews.default.svc.cluster.local"]
    );
    // The wildcard keeps its own virtual host and default route.
    let wild = vhost(&config, "*.internal.example:80");
    assert_eq!(
        forward(&wild.routes[0]),
        ["outbound|80||*.internal.example"]
    );
    // Only HTTP ports get one.
    assert!(!vhost_names(&config).contains(&"canary.internal.example:5432"));
}

#[test]
fn virtual_service_host_needs_a_visible_covering_wildcard() {
    // Not covered: no virtual host.
    let elsewhere = CANARY.replace("canary.internal.example", "canary.elsewhere.example");
    let config = translate(
        &index(WILDCARD, &elsewhere),
        &proxy_at("default", &[], "127.0.8.1"),
    );
    assert!(
        vhost_names(&config)
            .iter()
            .all(|v| !v.starts_with("canary."))
    );
    // The wildcard hidden from the proxy's namespace: none either.
    let hidden = WILDCARD.replace(
        "hosts: [\"*.internal.example\"]",
        "hosts: [\"*.internal.example\"]\n  exportTo: ['.']",
    );
    let canary = CANARY.replace("http:", "exportTo: ['*']\n  http:");
    let config = translate(
        &index(&hidden, &canary),
        &proxy_at("other", &[], "127.0.8.1"),
    );
    assert!(!vhost_names(&config).contains(&"canary.internal.example:80"));
    // A host that is itself a service keeps being routed as that service.
    let exact = format!(
        "{CANARY}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: canary, namespace: default}}\n\
         spec: {{hosts: [canary.internal.example], location: MESH_INTERNAL, resolution: STATIC, \
         ports: [{{number: 8000, name: http, protocol: HTTP}}], endpoints: [{{address: 127.0.9.3}}]}}\n"
    );
    let config = translate(
        &index(WILDCARD, &exact),
        &proxy_at("default", &[], "127.0.8.1"),
    );
    assert!(!vhost_names(&config).contains(&"canary.internal.example:80"));
    vhost(&config, "canary.internal.example:8000");
}
