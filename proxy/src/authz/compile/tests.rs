//! Refusals: every error names the policy, the Istio field path and why.

use sluice_api::config as pb;
use sluice_api::config::authorization_policy::Action;

use crate::authz::tests::{from, policy, strs, to, when};
use crate::authz::{AuthzError, InboundPolicy};

fn refuse(rule: pb::AuthorizationRule) -> AuthzError {
    let good = policy(
        "default/good",
        Action::Allow,
        vec![pb::AuthorizationRule::default()],
    );
    let bad = policy(
        "default/bad",
        Action::Deny,
        vec![pb::AuthorizationRule::default(), rule],
    );
    InboundPolicy::compile(&pb::InboundSecurity {
        policies: vec![good, bad],
        ..Default::default()
    })
    .unwrap_err()
}

fn assert_refused(rule: pb::AuthorizationRule, field: &str, reason_has: &str) {
    let e = refuse(rule);
    assert_eq!(e.policy, "default/bad");
    assert_eq!(e.field, field);
    assert!(e.reason.contains(reason_has), "{field}: {}", e.reason);
}

#[test]
fn compile_bad_ip_blocks_refused_naming_field() {
    let peer = |f: fn(&mut pb::PeerMatch, Vec<String>)| {
        let mut m = pb::PeerMatch::default();
        f(&mut m, strs(&["10.0.0.0/8", "10.0.0.0/40"]));
        from(m)
    };
    let cases: [(pb::AuthorizationRule, &str); 4] = [
        (peer(|m, v| m.ip_blocks = v), "ipBlocks"),
        (peer(|m, v| m.not_ip_blocks = v), "notIpBlocks"),
        (peer(|m, v| m.remote_ip_blocks = v), "remoteIpBlocks"),
        (peer(|m, v| m.not_remote_ip_blocks = v), "notRemoteIpBlocks"),
    ];
    for (rule, name) in cases {
        let field = format!("rules[1].from[0].source.{name}[1]");
        assert_refused(rule, &field, "prefix length");
    }
    let v6 = from(pb::PeerMatch {
        ip_blocks: strs(&["2001:db8::/129"]),
        ..Default::default()
    });
    assert_refused(v6, "rules[1].from[0].source.ipBlocks[0]", "prefix length");
    let word = from(pb::PeerMatch {
        ip_blocks: strs(&["not-an-ip"]),
        ..Default::default()
    });
    assert_refused(
        word,
        "rules[1].from[0].source.ipBlocks[0]",
        "not an IP address",
    );
}

#[test]
fn compile_bad_condition_values_refused_naming_field() {
    assert_refused(
        when("source.ip", &["10.0.0.300"], &[]),
        "rules[1].when[0].values[0]",
        "not an IP",
    );
    assert_refused(
        when("remote.ip", &[], &["10.0.0.0/8", "x"]),
        "rules[1].when[0].notValues[1]",
        "not an IP",
    );
    assert_refused(
        when("destination.port", &["80", "http"], &[]),
        "rules[1].when[0].values[1]",
        "not a port",
    );
    assert_refused(
        when("destination.port", &["65536"], &[]),
        "rules[1].when[0].values[0]",
        "not a port",
    );
    assert_refused(
        when("source.ip", &[], &[]),
        "rules[1].when[0]",
        "values or notValues",
    );
}

#[test]
fn compile_unknown_or_unsupported_keys_refused() {
    let cases = [
        ("source.user", "unknown condition key"),
        ("request.headers", "unknown condition key"),
        ("request.headers[]", "unknown condition key"),
        ("request.headers[bad header]", "not a valid header name"),
        ("request.auth.claims", "unknown condition key"),
        (
            "experimental.envoy.filters.network.mysql_proxy[db.table]",
            "not supported",
        ),
        ("", "unknown condition key"),
    ];
    for (key, reason) in cases {
        assert_refused(when(key, &["x"], &[]), "rules[1].when[0].key", reason);
    }
}

#[test]
fn compile_bad_ports_refused_naming_field() {
    let rule = to(pb::OperationMatch {
        ports: vec![80, 70000],
        ..Default::default()
    });
    assert_refused(rule, "rules[1].to[0].operation.ports[1]", "70000");
    let rule = to(pb::OperationMatch {
        not_ports: vec![65536],
        ..Default::default()
    });
    assert_refused(rule, "rules[1].to[0].operation.notPorts[0]", "not a port");
}

#[test]
fn compile_empty_values_and_entries_refused() {
    let empty_principal = from(pb::PeerMatch {
        principals: strs(&[""]),
        ..Default::default()
    });
    assert_refused(
        empty_principal,
        "rules[1].from[0].source.principals[0]",
        "empty value",
    );
    let empty_path = to(pb::OperationMatch {
        not_paths: strs(&["/a", ""]),
        ..Default::default()
    });
    assert_refused(
        empty_path,
        "rules[1].to[0].operation.notPaths[1]",
        "empty value",
    );
    assert_refused(
        from(pb::PeerMatch::default()),
        "rules[1].from[0].source",
        "at least one",
    );
    assert_refused(
        to(pb::OperationMatch::default()),
        "rules[1].to[0].operation",
        "at least one",
    );
    let template = to(pb::OperationMatch {
        paths: strs(&["/{**}/x"]),
        ..Default::default()
    });
    assert_refused(
        template,
        "rules[1].to[0].operation.paths[0]",
        "last operator",
    );
}

#[test]
fn compile_unknown_action_refused() {
    let mut p = policy("default/odd", Action::Allow, vec![]);
    p.action = 7;
    let e = InboundPolicy::compile(&pb::InboundSecurity {
        policies: vec![p],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        (e.policy.as_str(), e.field.as_str()),
        ("default/odd", "action")
    );
    assert!(
        e.to_string()
            .starts_with("authorization policy default/odd: action:")
    );
}

#[test]
fn compile_modes_per_port_and_default_kept() {
    let security = pb::InboundSecurity {
        mtls: pb::MtlsMode::Strict as i32,
        port_mtls: [(9090, pb::MtlsMode::Disable as i32)].into_iter().collect(),
        ..Default::default()
    };
    let p = InboundPolicy::compile(&security).unwrap();
    assert_eq!(p.mode_for(8080), crate::authz::MtlsMode::Strict);
    assert_eq!(p.mode_for(9090), crate::authz::MtlsMode::Disable);
}
