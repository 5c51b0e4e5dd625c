use super::*;
use crate::resource::parse_documents;

fn catalog(yaml: &str) -> ServiceCatalog {
    let resources: Vec<Resource> = parse_documents(yaml, "default")
        .into_iter()
        .map(|r| r.expect("test YAML parses"))
        .collect();
    ServiceCatalog::build(resources.iter())
}

/// A ServiceEntry `name` of `ns` for `host` with `extra` spec fields.
fn se(name: &str, ns: &str, host: &str, extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{hosts: [{host}], location: MESH_INTERNAL, resolution: STATIC, {extra}}}\n---\n"
    )
}

const PORT_80: &str = "ports: [{number: 80, name: http, protocol: HTTP}]";
const PORT_8080: &str = "ports: [{number: 8080, name: http-alt, protocol: HTTP}]";

fn ports(s: &Service) -> Vec<u32> {
    s.ports.iter().map(|p| p.number).collect()
}

fn addresses(s: &Service) -> Vec<&str> {
    s.endpoints.iter().map(|e| e.address.as_str()).collect()
}

#[test]
fn same_host_in_two_namespaces_keeps_both_declarations() {
    let c = catalog(&format!(
        "{}{}",
        se(
            "shared",
            "other",
            "shared.example",
            &format!("{PORT_80}, endpoints: [{{address: 127.0.9.2}}]")
        ),
        se(
            "shared",
            "default",
            "shared.example",
            &format!("{PORT_80}, endpoints: [{{address: 127.0.9.1}}]")
        ),
    ));
    let all: Vec<&str> = c
        .declarations("shared.example")
        .map(|s| s.namespace.as_str())
        .collect();
    // No creation times: namespace, then name, orders them.
    assert_eq!(all, ["default", "other"]);
    assert_eq!(c.services["shared.example"].namespace, "default");
    let other = c.declared_in("shared.example", "other").expect("other's");
    assert_eq!(addresses(other), ["127.0.9.2"]);
    assert_eq!(c.all().count(), 2);
    // Each endpoint is found under its own declaration.
    let ip = "127.0.9.2".parse().expect("ip");
    let at: Vec<&str> = c
        .endpoints_at(&ip)
        .map(|(s, _)| s.namespace.as_str())
        .collect();
    assert_eq!(at, ["other"]);
}

#[test]
fn oldest_declaration_comes_first() {
    let old = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
        metadata: {name: z, namespace: zz, creationTimestamp: '2020-01-01T00:00:00Z'}\n\
        spec: {hosts: [shared.example], ports: [{number: 80, name: http}]}\n---\n";
    let new = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
        metadata: {name: a, namespace: aa, creationTimestamp: '2024-01-01T00:00:00Z'}\n\
        spec: {hosts: [shared.example], ports: [{number: 80, name: http}]}\n---\n";
    let c = catalog(&format!("{new}{old}"));
    assert_eq!(c.services["shared.example"].namespace, "zz");
    assert_eq!(c.others["shared.example"][0].namespace, "aa");
}

#[test]
fn kubernetes_service_comes_before_an_older_service_entry() {
    let squat = se("squat", "aaa", "reviews.shop.svc.cluster.local", PORT_80);
    let k8s = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
        metadata: {name: reviews.svc, namespace: shop, \
        annotations: {sluice.io/kubernetes-service: 'true'}}\n\
        spec: {hosts: [reviews.shop.svc.cluster.local], ports: [{number: 9080, name: http}]}\n";
    let c = catalog(&format!("{squat}{k8s}"));
    let first = &c.services["reviews.shop.svc.cluster.local"];
    assert!(first.kubernetes);
    assert_eq!(first.namespace, "shop");
    assert_eq!(first.short_name, "reviews");
}

#[test]
fn same_namespace_entries_merge_ports_and_endpoints() {
    let c = catalog(&format!(
        "{}{}",
        se(
            "api-a",
            "default",
            "api.example",
            &format!("{PORT_80}, endpoints: [{{address: 127.0.9.1}}]")
        ),
        se(
            "api-b",
            "default",
            "api.example",
            &format!("{PORT_8080}, endpoints: [{{address: 127.0.9.1}}, {{address: 127.0.9.2}}]")
        ),
    ));
    let s = &c.services["api.example"];
    assert_eq!(ports(s), [80, 8080]);
    assert_eq!(addresses(s), ["127.0.9.1", "127.0.9.2"]);
    assert!(c.others.is_empty());
}

#[test]
fn same_namespace_entries_that_differ_do_not_merge() {
    // istiod's canMergeServices: resolution, labels, selector and exportTo
    // must agree; otherwise the older entry stands alone.
    for extra in [
        "resolution: DNS",
        "exportTo: ['.']",
        "workloadSelector: {labels: {app: b}}",
    ] {
        let second = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: api-b, namespace: default}}\n\
             spec: {{hosts: [api.example], location: MESH_INTERNAL, {extra}, {PORT_8080}}}\n"
        );
        let second = second.replace(
            "resolution: DNS",
            "resolution: DNS, endpoints: [{address: x.example}]",
        );
        let c = catalog(&format!(
            "{}{second}",
            se(
                "api-a",
                "default",
                "api.example",
                &format!("{PORT_80}, endpoints: [{{address: 127.0.9.1}}]")
            )
        ));
        let s = &c.services["api.example"];
        assert_eq!(ports(s), [80], "{extra}");
        assert_eq!(addresses(s), ["127.0.9.1"], "{extra}");
    }
    let labelled = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
        metadata: {name: api-b, namespace: default, labels: {team: b}}\n\
        spec: {hosts: [api.example], location: MESH_INTERNAL, resolution: STATIC, \
        ports: [{number: 8080, name: http-alt}]}\n";
    let c = catalog(&format!(
        "{}{labelled}",
        se("api-a", "default", "api.example", PORT_80)
    ));
    assert_eq!(ports(&c.services["api.example"]), [80]);
}

#[test]
fn same_ports_unite_endpoints_even_when_entries_differ() {
    let c = catalog(&format!(
        "{}{}",
        se(
            "a",
            "default",
            "api.example",
            &format!("{PORT_80}, endpoints: [{{address: 127.0.9.1}}]")
        ),
        se(
            "b",
            "default",
            "api.example",
            &format!("{PORT_80}, exportTo: ['.'], endpoints: [{{address: 127.0.9.2}}]")
        ),
    ));
    let s = &c.services["api.example"];
    assert_eq!(addresses(s), ["127.0.9.1", "127.0.9.2"]);
    assert!(s.export_to.is_empty(), "the older entry's exportTo stands");
}

#[test]
fn choose_prefers_own_namespace_then_first() {
    let c = catalog(&format!(
        "{}{}",
        se("s", "a", "shared.example", PORT_80),
        se("s", "b", "shared.example", PORT_80),
    ));
    let pick = |ns: &str| {
        choose(c.declarations("shared.example"), ns)
            .map(|s| s.namespace.clone())
            .unwrap_or_default()
    };
    assert_eq!(pick("b"), "b");
    assert_eq!(pick("a"), "a");
    assert_eq!(pick("c"), "a");
}

#[test]
fn service_entry_port_protocol_comes_from_the_protocol_field_only() {
    let c = catalog(&se(
        "api",
        "default",
        "api.example",
        "ports: [{number: 80, name: tcp-web}, {number: 81, name: http-x, protocol: TCP}, {number: 82, name: grpc, protocol: GRPC}]",
    ));
    let protocols: Vec<PortProtocol> = c.services["api.example"]
        .ports
        .iter()
        .map(|p| p.protocol)
        .collect();
    assert_eq!(
        protocols,
        [
            PortProtocol::Unspecified,
            PortProtocol::Tcp,
            PortProtocol::Grpc
        ]
    );
    // Names still count where Istio reads them (Kubernetes Services, Sidecar ports).
    assert_eq!(PortProtocol::select(None, "tcp-web"), PortProtocol::Tcp);
}

#[test]
fn workload_with_a_service_account_and_no_tls_mode_label_runs_a_sidecar() {
    let we = |name: &str, extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: {name}, namespace: default{extra}}}\n---\n"
        )
    };
    let c = catalog(&format!(
        "{}{}{}{}{}{}",
        se(
            "vm",
            "default",
            "vm.example",
            &format!("{PORT_80}, workloadSelector: {{labels: {{app: vm}}}}")
        ),
        we(
            "sa",
            "}\nspec: {address: 127.0.9.1, labels: {app: vm}, serviceAccount: legacy-vm"
        ),
        we("none", "}\nspec: {address: 127.0.9.2, labels: {app: vm}"),
        we(
            "off",
            "}\nspec: {address: 127.0.9.3, labels: {app: vm, security.istio.io/tlsMode: disabled}, serviceAccount: x"
        ),
        we(
            "pod",
            ", annotations: {sluice.io/kubernetes-pod: 'true'}}\nspec: {address: 127.0.9.4, labels: {app: vm}, serviceAccount: default"
        ),
        "",
    ));
    let sidecar: Vec<(&str, bool)> = c.services["vm.example"]
        .endpoints
        .iter()
        .map(|e| (e.address.as_str(), e.has_sidecar()))
        .collect();
    assert_eq!(
        sidecar,
        [
            ("127.0.9.1", true),
            ("127.0.9.2", false),
            ("127.0.9.3", false),
            ("127.0.9.4", false)
        ]
    );
}
