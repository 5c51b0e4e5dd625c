use super::*;

fn m(yaml: &str) -> HttpMatchRequest {
    serde_yaml::from_str(yaml).expect("match parses")
}

fn merged(root: &str, leaf: &str) -> Option<HttpMatchRequest> {
    merge_match(&m(root), &m(leaf))
}

#[test]
fn delegate_uri_must_narrow_the_roots() {
    // Istio's example: root prefix /productpage, delegate exact /productpage/v1.
    let got = merged(
        "{uri: {prefix: /productpage}, headers: {end-user: {exact: jason}}}",
        "{uri: {exact: /productpage/v1}}",
    )
    .expect("compatible");
    assert_eq!(got.uri, m("{uri: {exact: /productpage/v1}}").uri);
    assert_eq!(
        got.headers,
        m("{headers: {end-user: {exact: jason}}}").headers
    );
    assert!(
        merged(
            "{uri: {prefix: /productpage}}",
            "{uri: {prefix: /productpage/v2}}"
        )
        .is_some()
    );
    // Outside the root's prefix, or a different exact value, or any regex: conflict.
    assert!(merged("{uri: {prefix: /productpage}}", "{uri: {exact: /reviews}}").is_none());
    assert!(merged("{uri: {exact: /a}}", "{uri: {exact: /b}}").is_none());
    assert!(merged("{uri: {exact: /a}}", "{uri: {prefix: /a}}").is_none());
    assert!(merged("{uri: {regex: /a.*}}", "{uri: {prefix: /a}}").is_none());
    assert!(merged("{uri: {prefix: /a}}", "{uri: {regex: /a.*}}").is_none());
    // A regex on one side only, the other leaving the field unset, is kept.
    let got = merged("{uri: {regex: '/a.*'}}", "{method: {exact: GET}}").expect("compatible");
    assert_eq!(got.uri, m("{uri: {regex: '/a.*'}}").uri);
    assert_eq!(got.method, m("{method: {exact: GET}}").method);
}

#[test]
fn maps_are_joined_and_shared_keys_must_agree() {
    let got = merged(
        "{headers: {x-a: {prefix: v}}, queryParams: {q: {exact: '1'}}, sourceLabels: {app: web}}",
        "{headers: {x-a: {exact: v2}, x-b: {exact: b}}, sourceLabels: {version: v1}}",
    )
    .expect("compatible");
    assert_eq!(
        got.headers,
        m("{headers: {x-a: {exact: v2}, x-b: {exact: b}}}").headers
    );
    assert_eq!(
        got.query_params,
        m("{queryParams: {q: {exact: '1'}}}").query_params
    );
    assert_eq!(
        got.source_labels,
        m("{sourceLabels: {app: web, version: v1}}").source_labels
    );
    assert!(
        merged(
            "{headers: {x-a: {exact: v}}}",
            "{headers: {x-a: {exact: w}}}"
        )
        .is_none()
    );
    assert!(merged("{sourceLabels: {app: web}}", "{sourceLabels: {app: api}}").is_none());
    assert!(
        merged(
            "{withoutHeaders: {x-a: {exact: v}}}",
            "{withoutHeaders: {x-a: {prefix: v}}}"
        )
        .is_none()
    );
}

#[test]
fn scalar_fields_follow_istios_rules() {
    assert!(merged("{port: 9080}", "{port: 9081}").is_none());
    assert_eq!(
        merged("{port: 9080}", "{}").and_then(|x| x.port),
        Some(9080)
    );
    assert!(
        merged("{ignoreUriCase: true}", "{}").is_none(),
        "values differ"
    );
    // A root's sourceNamespace must be repeated by the delegate.
    assert!(merged("{sourceNamespace: shop}", "{}").is_none());
    assert!(merged("{sourceNamespace: shop}", "{sourceNamespace: shop}").is_some());
    assert_eq!(
        merged("{}", "{sourceNamespace: shop}").and_then(|x| x.source_namespace),
        Some("shop".to_owned())
    );
    assert!(merged("{gateways: [mesh]}", "{gateways: [mesh, edge]}").is_none());
    assert_eq!(
        merged(
            "{gateways: [mesh, edge], name: root}",
            "{gateways: [mesh], name: leaf}"
        )
        .map(|x| (x.gateways, x.name)),
        Some((vec!["mesh".to_owned()], Some("root-leaf".to_owned())))
    );
}

fn rule(yaml: &str) -> HttpRoute {
    serde_yaml::from_str(yaml).expect("rule parses")
}

#[test]
fn rules_take_what_the_delegate_leaves_unset_from_the_root() {
    let root = rule(
        "{name: root, match: [{uri: {prefix: /api}}, {uri: {prefix: /v2/api}}], \
          timeout: 3s, retries: {attempts: 5}, headers: {request: {set: {x-root: '1'}}}, \
          mirror: {host: shadow}, delegate: {name: api}}",
    );
    let leaf = rule(
        "{name: users, match: [{uri: {prefix: /api/users}}], timeout: 1s, \
          route: [{destination: {host: users}}]}",
    );
    let got = merge_rule(&root, "default", &leaf).expect("merged");
    assert_eq!(got.name.as_deref(), Some("root-users"));
    assert_eq!(
        got.timeout.as_deref(),
        Some("1s"),
        "the delegate's own wins"
    );
    assert_eq!(got.retries, root.retries);
    assert_eq!(got.headers, root.headers);
    assert_eq!(got.route, leaf.route);
    assert!(got.delegate.is_none());
    // An inherited mirror keeps resolving in the root's namespace.
    let mirror = got.mirror.as_ref().map(|m| m.host.as_str());
    assert_eq!(mirror, Some("shadow.default.svc.cluster.local"));
    // Only the root match the delegate narrows survives.
    assert_eq!(got.match_.len(), 1);
    assert_eq!(got.match_[0].uri, leaf.match_[0].uri);
    // No match compatible with the root: the delegate rule is dropped.
    let elsewhere = rule("{match: [{uri: {prefix: /web}}], route: [{destination: {host: web}}]}");
    assert!(merge_rule(&root, "default", &elsewhere).is_none());
    // A delegate rule without matches takes the root's.
    let catch_all = rule("{route: [{destination: {host: api}}]}");
    assert_eq!(
        merge_rule(&root, "default", &catch_all)
            .expect("merged")
            .match_,
        root.match_
    );
}
