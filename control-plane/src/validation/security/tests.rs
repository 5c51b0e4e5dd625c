use crate::validation::tests::problems;

fn pa(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p}}\nspec: {spec}\n"
    ))
}

fn ap(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: a}}\nspec: {spec}\n"
    ))
}

const CUSTOM: &str = "spec.action: CUSTOM is not supported by Sluice (no external authorization providers); use ALLOW, DENY or AUDIT";

fn ap_one(spec: &str, expected: &str) {
    assert_eq!(
        ap(spec),
        [format!("AuthorizationPolicy default/a: {expected}")],
        "spec: {spec}"
    );
}

#[test]
fn peer_authentication_unknown_mode_is_refused() {
    assert_eq!(
        pa("{mtls: {mode: REQUIRED}}"),
        [
            "PeerAuthentication default/p: spec.mtls.mode: unknown value `REQUIRED` (expected one of UNSET, DISABLE, PERMISSIVE, STRICT)"
        ]
    );
}

#[test]
fn peer_authentication_port_level_needs_selector() {
    assert_eq!(
        pa("{mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}}}"),
        [
            "PeerAuthentication default/p: spec.portLevelMtls: portLevelMtls requires a workload selector with labels"
        ]
    );
    assert!(
        pa("{selector: {matchLabels: {app: a}}, portLevelMtls: {8080: {mode: DISABLE}}}")
            .is_empty()
    );
}

#[test]
fn peer_authentication_port_level_bad_port_is_refused() {
    assert_eq!(
        pa("{selector: {matchLabels: {app: a}}, portLevelMtls: {0: {mode: DISABLE}}}"),
        [
            "PeerAuthentication default/p: spec.portLevelMtls.0: port number 0 must be in the range 1..65535"
        ]
    );
}

#[test]
fn authorization_policy_unknown_action_is_refused() {
    ap_one(
        "{action: BLOCK}",
        "spec.action: unknown value `BLOCK` (expected one of ALLOW, DENY, AUDIT, CUSTOM)",
    );
}

#[test]
fn authorization_policy_allow_nothing_is_valid() {
    assert!(ap("{}").is_empty());
}

#[test]
fn authorization_policy_deny_without_rules_is_refused() {
    let lines = ap("{action: DENY}");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(
            "AuthorizationPolicy default/a: spec.rules: DENY action without `rules` is meaningless"
        ),
        "{lines:?}"
    );
}

#[test]
fn authorization_policy_custom_needs_provider() {
    assert_eq!(
        ap("{action: CUSTOM, rules: [{}]}"),
        [
            format!("AuthorizationPolicy default/a: {CUSTOM}"),
            "AuthorizationPolicy default/a: spec.provider.name: `provider.name` must not be empty"
                .to_string(),
        ]
    );
}

#[test]
fn authorization_policy_custom_is_unsupported() {
    ap_one(
        "{action: CUSTOM, provider: {name: ext}, rules: [{}]}",
        CUSTOM,
    );
}

#[test]
fn authorization_policy_provider_without_custom_is_refused() {
    ap_one(
        "{action: ALLOW, provider: {name: ext}}",
        "spec.provider: `provider` must not be with non CUSTOM action, found ALLOW",
    );
}

#[test]
fn authorization_policy_custom_with_principals_is_refused() {
    assert_eq!(
        ap("{action: CUSTOM, provider: {name: ext}, rules: [{from: [{source: {principals: [a]}}]}]}"),
        [
            format!("AuthorizationPolicy default/a: {CUSTOM}"),
            "AuthorizationPolicy default/a: spec.rules[0].from[0].source.principals: principals is currently not supported with CUSTOM action".to_string(),
        ]
    );
}

#[test]
fn authorization_policy_empty_source_is_refused() {
    ap_one(
        "{rules: [{from: [{source: {}}]}]}",
        "spec.rules[0].from[0].source: `from.source` must not be empty",
    );
}

#[test]
fn authorization_policy_empty_operation_is_refused() {
    ap_one(
        "{rules: [{to: [{operation: {}}]}]}",
        "spec.rules[0].to[0].operation: `to.operation` must not be empty",
    );
}

#[test]
fn authorization_policy_bad_ip_block_is_refused() {
    ap_one(
        "{rules: [{from: [{source: {ipBlocks: [10.0.0.300]}}]}]}",
        "spec.rules[0].from[0].source.ipBlocks[0]: `10.0.0.300` is not a valid IP address or CIDR block",
    );
}

#[test]
fn authorization_policy_bad_port_is_refused() {
    ap_one(
        "{rules: [{to: [{operation: {ports: ['http']}}]}]}",
        "spec.rules[0].to[0].operation.ports[0]: `http` is not a port number",
    );
}

#[test]
fn authorization_policy_service_accounts_with_namespaces_are_refused() {
    ap_one(
        "{rules: [{from: [{source: {namespaces: [a], serviceAccounts: [a/b]}}]}]}",
        "spec.rules[0].from[0].source: cannot set serviceAccounts with namespaces or principals",
    );
}

#[test]
fn authorization_policy_condition_without_values_is_refused() {
    ap_one(
        "{rules: [{when: [{key: source.ip}]}]}",
        "spec.rules[0].when[0]: at least one of `values` or `notValues` must be set for key source.ip",
    );
}

#[test]
fn authorization_policy_unknown_condition_key_is_refused() {
    ap_one(
        "{rules: [{when: [{key: request.colour, values: [red]}]}]}",
        "spec.rules[0].when[0].key: unknown attribute `request.colour`",
    );
}

#[test]
fn authorization_policy_selector_and_target_ref_are_exclusive() {
    ap_one(
        "{selector: {matchLabels: {app: a}}, targetRef: {kind: Service, name: s}}",
        "spec: only one of selector, targetRef or targetRefs can be set",
    );
}

#[test]
fn authorization_policy_target_ref_kind_and_namespace_are_checked() {
    assert_eq!(
        ap("{targetRef: {kind: Deployment, name: d, namespace: other}}"),
        [
            "AuthorizationPolicy default/a: spec.targetRef.namespace: targetRef namespace must not be set; cross namespace referencing is not supported",
            "AuthorizationPolicy default/a: spec.targetRef: targetRef must be to a Service, ServiceEntry, Gateway or GatewayClass but was /Deployment",
        ]
    );
}

#[test]
fn authorization_policy_empty_value_is_refused() {
    ap_one(
        "{rules: [{to: [{operation: {methods: ['']}}]}]}",
        "spec.rules[0].to[0].operation.methods[0]: empty value is not allowed",
    );
}

#[test]
fn authorization_policy_wildcard_in_the_middle_of_a_principal_is_refused() {
    ap_one(
        "{rules: [{from: [{source: {principals: [\"cluster.local/ns/*/sa/x\"]}}]}]}",
        "spec.rules[0].from[0].source.principals[0]: `cluster.local/ns/*/sa/x`: `*` is allowed only as the whole value, a prefix or a suffix",
    );
}

#[test]
fn authorization_policy_prefix_suffix_and_presence_values_are_accepted() {
    assert!(
        ap("{rules: [{from: [{source: {principals: [\"*\", \"cluster.local/*\", \"*/sa/x\"], namespaces: [\"team-*\"]}}], to: [{operation: {hosts: [\"*.example.com\"], methods: [\"GET\"]}}]}]}")
            .is_empty()
    );
}

#[test]
fn authorization_policy_white_space_in_a_namespace_is_refused() {
    ap_one(
        "{rules: [{from: [{source: {namespaces: [\"my ns\"]}}]}]}",
        "spec.rules[0].from[0].source.namespaces[0]: `my ns` contains white space",
    );
}

#[test]
fn authorization_policy_envoy_filter_metadata_condition_is_refused() {
    ap_one(
        "{rules: [{when: [{key: \"experimental.envoy.filters.network.mysql_proxy[db.table]\", values: [\"[update]\"]}]}]}",
        "spec.rules[0].when[0].key: `experimental.envoy.filters.network.mysql_proxy[db.table]` is not supported by Sluice (no Envoy filter metadata)",
    );
}

fn ra(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: r}}\nspec: {spec}\n"
    ))
}

#[test]
fn request_authentication_from_istio_docs_is_valid() {
    let spec = r#"
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwksUri: "https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json"
    audiences: [bookinfo]
    fromHeaders: [{name: x-jwt-assertion, prefix: "Bearer "}]
    fromParams: [my_token]
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{header: x-jwt-claim-foo, claim: foo}]
    forwardOriginalToken: true
    timeout: 3s
  - issuer: other
    jwks: 'JWKS'
"#;
    let jwks = include_str!("../../../../proxy/testdata/jwt-rsa-test-jwks.json").trim();
    assert_eq!(ra(&spec.replace("JWKS", jwks)), Vec::<String>::new());
    // The older snake_case spelling of jwksUri is read too.
    assert_eq!(
        ra("{jwtRules: [{issuer: a, jwks_uri: 'http://idp.local/keys'}]}"),
        Vec::<String>::new()
    );
}

#[test]
fn request_authentication_errors_name_the_field() {
    let cases = [
        (
            "{jwtRules: [{audiences: [a]}]}",
            "spec.jwtRules[0].issuer: issuer or jwksUri must be non-empty string",
        ),
        (
            "{jwtRules: [{issuer: a, jwksUri: 'ftp://x/keys'}]}",
            "spec.jwtRules[0].jwksUri: URI scheme \"ftp\" is not supported",
        ),
        (
            "{jwtRules: [{issuer: a, jwks: 'nope'}]}",
            "spec.jwtRules[0].jwks: jwks parse error",
        ),
        (
            "{jwtRules: [{issuer: a, jwks: '{\"keys\":[{\"kty\":\"RSA\",\"n\":\"**\",\"e\":\"AQAB\"}]}'}]}",
            "spec.jwtRules[0].jwks: jwks parse error: keys[0].n must be a non-empty base64url string",
        ),
        (
            "{jwtRules: [{issuer: a, fromHeaders: [{prefix: x}]}]}",
            "spec.jwtRules[0].fromHeaders[0].name: location header name must be non-empty string",
        ),
        (
            "{jwtRules: [{issuer: a, fromParams: ['']}]}",
            "spec.jwtRules[0].fromParams[0]: location query must be non-empty string",
        ),
        (
            "{jwtRules: [{issuer: a, outputClaimToHeaders: [{header: x}]}]}",
            "spec.jwtRules[0].outputClaimToHeaders[0]: outputClaimToHeaders header and claim value must be non-empty string",
        ),
        (
            "{jwtRules: [{issuer: a, outputClaimToHeaders: [{header: 'x y', claim: c}]}]}",
            "spec.jwtRules[0].outputClaimToHeaders[0].header: header name x y is not a valid header name",
        ),
        (
            "{jwtRules: [{issuer: a, audiences: ['']}]}",
            "spec.jwtRules[0].audiences[0]: audience must be non-empty string",
        ),
        (
            "{jwtRules: [{issuer: a, timeout: 1ms}]}",
            "spec.jwtRules[0].timeout: duration must be greater than 1ms",
        ),
        (
            "{selector: {matchLabels: {app: a}}, targetRef: {kind: Gateway, name: g}, jwtRules: [{issuer: a}]}",
            "spec: only one of selector, targetRef or targetRefs can be set",
        ),
    ];
    for (spec, want) in cases {
        let got = ra(spec);
        assert!(
            got.iter()
                .any(|p| p.starts_with(&format!("RequestAuthentication default/r: {want}"))),
            "spec {spec}: {got:?}"
        );
    }
    // An unknown field is refused, never ignored.
    let yaml = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: {jwtRules: [{issuer: a, jwksUrl: 'http://x'}]}\n";
    let docs = crate::resource::parse_documents(yaml, "default");
    let err = docs[0].as_ref().map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("spec.jwtRules[0].jwksUrl: unknown field"),
        "{err}"
    );
}
