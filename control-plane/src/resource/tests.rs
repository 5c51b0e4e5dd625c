use super::*;

const SEED: &str = include_str!("../../../../shared/seed-mesh.yaml");

fn one(text: &str) -> Result<Resource, ParseError> {
    let mut docs = parse_documents(text, "default");
    assert_eq!(docs.len(), 1, "{docs:?}");
    docs.remove(0)
}

#[test]
fn parse_documents_seed_mesh_parses_all_six() {
    let docs = parse_documents(SEED, "default");
    let keys: Vec<String> = docs
        .into_iter()
        .map(|d| {
            d.map(|r| r.key().to_string())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    assert_eq!(
        keys,
        [
            "VirtualService default/reviews",
            "DestinationRule default/reviews",
            "VirtualService default/orders",
            "PeerAuthentication production/default",
            "AuthorizationPolicy default/orders-policy",
            "EnvoyFilter default/rate-limit-filter",
        ]
    );
}

#[test]
fn parse_documents_unknown_spec_field_names_path() {
    let err = one(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\n\
         spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {hots: reviews}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "VirtualService default/reviews: spec.http[0].route[0].destination.hots: unknown field, expected one of `host`, `subset`, `port`"
    );
}

#[test]
fn parse_documents_wrong_type_names_path() {
    let err = one(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\n\
         spec:\n  http:\n  - route:\n    - destination: {host: r}\n      weight: heavy\n",
    )
    .unwrap_err();
    assert_eq!(
        err.key.as_ref().map(|k| k.to_string()).as_deref(),
        Some("VirtualService shop/r")
    );
    assert_eq!(err.path, "spec.http[0].route[0].weight");
    assert!(
        err.message.starts_with("invalid type: string \"heavy\""),
        "{}",
        err.message
    );
}

#[test]
fn parse_documents_unknown_kind_is_refused() {
    let err = one(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: g}\nspec: {}\n",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("document 1: unsupported kind `WorkloadGroup`"),
        "{err}"
    );
}

#[test]
fn parse_documents_unserved_version_is_refused() {
    let err = one("apiVersion: security.istio.io/v1alpha3\nkind: PeerAuthentication\nmetadata: {name: d}\nspec: {}\n")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "PeerAuthentication default/d: apiVersion: PeerAuthentication is not served at `security.istio.io/v1alpha3` (served: security.istio.io/v1, security.istio.io/v1beta1)"
    );
}

#[test]
fn parse_documents_unknown_top_level_key_is_refused() {
    let err = one(
        "apiVersion: sluice.io/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: d}\nspex: {}\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "RateLimitPolicy default/d: spex: unknown field"
    );
}

#[test]
fn parse_documents_empty_documents_are_skipped() {
    let docs = parse_documents("---\n---\n# only a comment\n---\n", "default");
    assert!(docs.is_empty(), "{docs:?}");
}

#[test]
fn parse_documents_missing_namespace_gets_default() {
    let r = one("apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\nmetadata: {name: vm}\nspec: {address: 127.0.0.9}\n")
        .unwrap();
    assert_eq!(r.namespace(), "team-a".replace("team-a", "default"));
    let r = parse_documents("apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\nmetadata: {name: vm}\nspec: {}\n", "team-a")
        .remove(0)
        .unwrap();
    assert_eq!(r.key().to_string(), "WorkloadEntry team-a/vm");
}

#[test]
fn parse_documents_syntax_error_names_document() {
    let docs = parse_documents("apiVersion: v1\nkind: X\n---\nkind: [unclosed\n", "default");
    let last = docs.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.document, 2);
    assert!(last.message.starts_with("invalid YAML"), "{last}");
}

#[test]
fn parse_documents_presence_string_match_parses() {
    let r = one("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r}\n\
                 spec:\n  http:\n  - match:\n    - headers: {x-canary: {}}\n    route:\n    - destination: {host: r}\n")
        .unwrap();
    let Resource::VirtualService(vs) = r else {
        panic!()
    };
    assert_eq!(
        vs.spec.http[0].match_[0].headers["x-canary"],
        crate::crd::StringMatch::default()
    );
}

#[test]
fn parse_documents_port_level_mtls_keys_parse_as_ports() {
    for key in ["8080", "\"8080\""] {
        let text = format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p}}\n\
             spec:\n  selector: {{matchLabels: {{app: a}}}}\n  portLevelMtls:\n    {key}: {{mode: DISABLE}}\n"
        );
        let Resource::PeerAuthentication(pa) = one(&text).unwrap() else {
            panic!()
        };
        assert_eq!(
            pa.spec.port_level_mtls[&crate::crd::PortKey(8080)]
                .mode
                .as_deref(),
            Some("DISABLE")
        );
    }
}

#[test]
fn parse_keys_reads_only_identity() {
    let keys = parse_keys(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: x}\nspec: {bogus: 1}\n---\nkind: Nope\nmetadata: {name: b}\n",
        "default",
    );
    assert_eq!(keys[0].as_ref().unwrap().to_string(), "VirtualService x/a");
    assert!(keys[1].is_err());
}

#[test]
fn resource_serializes_as_the_object() {
    let r = one("apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: d}\nspec: {host: d}\n")
        .unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["kind"], "DestinationRule");
    assert_eq!(json["spec"]["host"], "d");
}

#[test]
fn parse_object_reads_json_with_the_same_rules() {
    let ok = serde_json::json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "p", "namespace": "shop"},
        "spec": {"mtls": {"mode": "STRICT"}}
    });
    assert_eq!(
        parse_object(&ok, "default").unwrap().key().to_string(),
        "PeerAuthentication shop/p"
    );
    let typo = serde_json::json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "p"},
        "spec": {"mtl": {}}
    });
    assert_eq!(
        parse_object(&typo, "default").unwrap_err().to_string(),
        "PeerAuthentication default/p: spec.mtl: unknown field, expected one of `selector`, `mtls`, `portLevelMtls`"
    );
}

#[test]
fn keys_order_by_kind_then_namespace_then_name_whether_or_not_their_text_is_shared() {
    let key = |kind: &'static str, ns: &str, name: &str| ResourceKey {
        kind,
        namespace: ns.into(),
        name: name.into(),
    };
    let a = key("ServiceEntry", "default", "a");
    // Equal text in separate allocations is the same key.
    let also_a = key(String::from("ServiceEntry").leak(), "default", "a");
    assert_eq!(a.cmp(&also_a), std::cmp::Ordering::Equal);
    assert_eq!(a, also_a);
    let shared = a.clone();
    assert_eq!(a.cmp(&shared), std::cmp::Ordering::Equal);
    let mut keys = [
        key("VirtualService", "a", "a"),
        key("ServiceEntry", "b", "a"),
        key("ServiceEntry", "a", "b"),
        key("ServiceEntry", "a", "a"),
    ];
    keys.sort();
    let order: Vec<String> = keys.iter().map(ToString::to_string).collect();
    assert_eq!(
        order,
        [
            "ServiceEntry a/a",
            "ServiceEntry a/b",
            "ServiceEntry b/a",
            "VirtualService a/a"
        ]
    );
}
