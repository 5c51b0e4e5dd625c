use crate::validation::tests::problems;

fn rlp(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: sluice.io/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: l}}\nspec: {spec}\n"
    ))
}

#[test]
fn rate_limit_policy_complete_is_valid() {
    assert!(rlp(
        "{selector: {matchLabels: {app: orders}}, maxTokens: 10, tokensPerFill: 5, fillInterval: 1s, \
         match: [{uri: {prefix: /orders}, method: {exact: POST}}], sourcePrincipals: [cluster.local/ns/default/sa/frontend]}"
    )
    .is_empty());
}

#[test]
fn rate_limit_policy_zero_tokens_are_refused() {
    assert_eq!(
        rlp("{maxTokens: 0, tokensPerFill: -2, fillInterval: 1s}"),
        [
            "RateLimitPolicy default/l: spec.maxTokens: must be > 0",
            "RateLimitPolicy default/l: spec.tokensPerFill: must be > 0",
        ]
    );
}

#[test]
fn rate_limit_policy_bad_fill_interval_is_refused() {
    assert_eq!(
        rlp("{maxTokens: 1, tokensPerFill: 1, fillInterval: soon}"),
        [
            "RateLimitPolicy default/l: spec.fillInterval: invalid duration `soon` (expected e.g. 1.5s, 100ms, 1m, 1h)"
        ]
    );
    assert_eq!(
        rlp("{maxTokens: 1, tokensPerFill: 1}"),
        ["RateLimitPolicy default/l: spec.fillInterval: fillInterval is required"]
    );
}

#[test]
fn rate_limit_policy_bad_match_regex_is_refused() {
    let lines = rlp(
        "{maxTokens: 1, tokensPerFill: 1, fillInterval: 1s, match: [{headers: {x-user: {regex: '['}}}]}",
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "RateLimitPolicy default/l: spec.match[0].headers.x-user.regex: invalid regex"
        ),
        "{lines:?}"
    );
}

#[test]
fn rate_limit_policy_empty_match_is_refused() {
    assert_eq!(
        rlp("{maxTokens: 1, tokensPerFill: 1, fillInterval: 1s, match: [{}]}"),
        [
            "RateLimitPolicy default/l: spec.match[0]: match must set at least one of uri, method or headers"
        ]
    );
}
