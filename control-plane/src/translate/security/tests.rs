use super::*;
use crate::index::MeshIndex;
use crate::resource::parse_documents;
use crate::translate::{ProxyIdentity, View};

const SEED: &str = include_str!("../../../../../shared/seed-mesh.yaml");

fn index(yaml: &str) -> MeshIndex {
    MeshIndex::from_resources(
        1,
        parse_documents(yaml, "default")
            .into_iter()
            .map(|r| r.expect("parses")),
    )
}

fn proxy(namespace: &str, labels: &[(&str, &str)]) -> ProxyIdentity {
    ProxyIdentity {
        id: "p".into(),
        workload: "w".into(),
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

fn security(idx: &MeshIndex, p: &ProxyIdentity) -> pb::InboundSecurity {
    inbound_security(&View::new(idx, p))
}

const LEVELS: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: legacy}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: db, namespace: legacy}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: UNSET}
  portLevelMtls:
    5432: {mode: DISABLE}
    9000: {mode: UNSET}
"#;

#[test]
fn peer_authentication_mesh_level_applies_everywhere() {
    let s = security(&index(LEVELS), &proxy("default", &[]));
    assert_eq!(s.mtls, pb::MtlsMode::Strict as i32);
    assert_eq!(s.mtls_sources, ["istio-system/default"]);
}

#[test]
fn peer_authentication_namespace_overrides_mesh_and_unset_inherits() {
    let idx = index(LEVELS);
    let web = security(&idx, &proxy("legacy", &[("app", "web")]));
    assert_eq!(web.mtls, pb::MtlsMode::Permissive as i32);
    // The workload policy's UNSET inherits the namespace's PERMISSIVE; its
    // port 5432 is DISABLE and its UNSET port inherits too.
    let db = security(&idx, &proxy("legacy", &[("app", "db")]));
    assert_eq!(db.mtls, pb::MtlsMode::Permissive as i32);
    assert_eq!(
        db.port_mtls.get(&5432),
        Some(&(pb::MtlsMode::Disable as i32))
    );
    assert_eq!(
        db.port_mtls.get(&9000),
        Some(&(pb::MtlsMode::Permissive as i32))
    );
}

#[test]
fn peer_authentication_none_means_permissive() {
    let s = security(&index(""), &proxy("default", &[]));
    assert_eq!(s.mtls, pb::MtlsMode::Permissive as i32);
    assert!(s.policies.is_empty());
}

#[test]
fn seed_authorization_policy_selects_orders_only() {
    let idx = index(SEED);
    let orders = security(&idx, &proxy("default", &[("app", "orders")]));
    assert_eq!(orders.policies.len(), 1);
    let p = &orders.policies[0];
    assert_eq!(p.name, "default/orders-policy");
    assert_eq!(p.action, pb::authorization_policy::Action::Allow as i32);
    let rule = &p.rules[0];
    assert_eq!(
        rule.from[0].principals,
        ["cluster.local/ns/default/sa/frontend"]
    );
    assert_eq!(rule.from[0].namespaces, ["default"]);
    assert_eq!(rule.to[0].methods, ["GET", "POST"]);
    assert_eq!(rule.to[0].paths, ["/orders/*"]);
    assert_eq!(rule.when[0].key, "request.headers[x-api-key]");
    assert_eq!(rule.when[0].values, ["*"]);
    let reviews = security(&idx, &proxy("default", &[("app", "reviews")]));
    assert!(reviews.policies.is_empty());
    // The seed's PeerAuthentication is for the production namespace only.
    assert_eq!(orders.mtls, pb::MtlsMode::Permissive as i32);
    let prod = security(&idx, &proxy("production", &[]));
    assert_eq!(prod.mtls, pb::MtlsMode::Strict as i32);
}

#[test]
fn authorization_root_namespace_first_and_service_accounts_become_principals() {
    let idx = index(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: z-local, namespace: default}
spec:
  action: DENY
  rules: [{from: [{source: {serviceAccounts: [default/bad], notPrincipals: ["spiffe://cluster.local/ns/x/sa/y"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a-global, namespace: istio-system}
spec: {}
"#,
    );
    let s = security(&idx, &proxy("default", &[]));
    let names: Vec<&str> = s.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["istio-system/a-global", "default/z-local"]);
    // `{}` (no rules) is an ALLOW policy that matches nothing: deny all.
    assert!(s.policies[0].rules.is_empty());
    let from = &s.policies[1].rules[0].from[0];
    assert_eq!(from.principals, ["cluster.local/ns/default/sa/bad"]);
    assert_eq!(from.not_principals, ["cluster.local/ns/x/sa/y"]);
}

#[test]
fn authorization_policy_dry_run_annotation_marks_the_policy() {
    let idx = index(
        r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: shadow
  namespace: default
  annotations: {"istio.io/dry-run": "true"}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["DELETE"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: real, namespace: default}
spec:
  action: DENY
  rules: [{to: [{operation: {methods: ["PATCH"]}}]}]
"#,
    );
    let s = security(&idx, &proxy("default", &[]));
    let flags: Vec<(&str, bool)> = s
        .policies
        .iter()
        .map(|p| (p.name.as_str(), p.dry_run))
        .collect();
    assert_eq!(flags, [("default/real", false), ("default/shadow", true)]);
}

const JWT_POLICIES: &str = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: mesh, namespace: istio-system}
spec:
  jwtRules:
  - issuer: mesh-issuer
    jwksUri: http://127.0.0.1:1/keys
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: testing@secure.istio.io
    jwks: '{"keys":[]}'
    audiences: [bookinfo]
    fromHeaders: [{name: x-jwt}]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: gateway-only, namespace: foo}
spec:
  targetRef: {kind: Gateway, name: ingress}
  jwtRules: [{issuer: gw, jwks: '{"keys":[]}'}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: other, namespace: bar}
spec:
  jwtRules: [{issuer: bar-issuer, jwks: '{"keys":[]}'}]
"#;

#[test]
fn request_authentications_merge_root_first_and_unfetched_keys_carry_the_reason() {
    let idx = index(JWT_POLICIES);
    let rules = security(&idx, &proxy("foo", &[("app", "httpbin")])).jwt_rules;
    let issuers: Vec<&str> = rules.iter().map(|r| r.issuer.as_str()).collect();
    // Root namespace first; the gateway policy and other namespaces never apply.
    assert_eq!(issuers, ["mesh-issuer", "testing@secure.istio.io"]);
    assert_eq!(rules[0].policy, "istio-system/mesh");
    // Nothing fetched in this index: the proxy is told why there are no keys.
    assert!(rules[0].jwks.is_empty());
    assert!(!rules[0].jwks_error.is_empty());
    let own = &rules[1];
    assert_eq!(own.jwks, r#"{"keys":[]}"#);
    assert_eq!(own.audiences, ["bookinfo"]);
    assert_eq!(own.from_headers[0].name, "x-jwt");
    assert_eq!(own.from_headers[0].prefix, "");
    assert!(own.forward_original_token);
    assert_eq!(own.output_claim_to_headers[0].claim, "sub");
    // Another workload of the namespace gets the mesh rule only.
    let rules = security(&idx, &proxy("foo", &[("app", "other")])).jwt_rules;
    assert_eq!(rules.len(), 1);
    assert!(security(&idx, &proxy("baz", &[])).jwt_rules.len() == 1);
}
