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
