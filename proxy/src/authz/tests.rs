//! Evaluation through the public API: decision order, AUDIT, TCP and the
//! seed mesh's policy (shared fixtures for the sibling test modules too).

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use sluice_api::config as pb;
use sluice_api::config::authorization_policy::Action as PbAction;

use super::{Connection, DryRun, InboundPolicy, Request, Verdict};

pub(super) const FRONTEND: &str = "cluster.local/ns/default/sa/frontend";

/// Test fixture: an HTTP request with owned parts.
pub(super) struct Call {
    pub(super) method: &'static str,
    pub(super) path: &'static str,
    pub(super) host: &'static str,
    pub(super) headers: HeaderMap,
    /// The identity of a verified token.
    pub(super) auth: Option<crate::jwt::Identity>,
}

pub(super) fn call(method: &'static str, path: &'static str) -> Call {
    Call {
        method,
        path,
        host: "orders.default.svc.cluster.local:8080",
        headers: HeaderMap::new(),
        auth: None,
    }
}

impl Call {
    pub(super) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }

    /// The request carries a verified token with these claims.
    pub(super) fn token(mut self, claims: serde_json::Value) -> Self {
        let claims = claims.as_object().cloned().unwrap_or_default();
        let get = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let audiences = match claims.get("aud") {
            Some(serde_json::Value::String(a)) => vec![a.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        self.auth = Some(crate::jwt::Identity {
            principal: get("iss").zip(get("sub")).map(|(i, s)| format!("{i}/{s}")),
            audiences,
            presenter: get("azp"),
            claims,
            space_delimited: Vec::new(),
        });
        self
    }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An mTLS connection from the frontend workload.
pub(super) fn mtls() -> Connection<'static> {
    Connection {
        source_ip: ip("10.0.0.5"),
        remote_ip: ip("192.0.2.7"),
        destination_ip: ip("10.0.0.9"),
        destination_port: 8080,
        principal: Some(FRONTEND),
        sni: Some("outbound_.8080_._.orders.default.svc.cluster.local"),
    }
}

/// The same connection over plaintext: no identity, no SNI.
pub(super) fn plaintext() -> Connection<'static> {
    Connection {
        principal: None,
        sni: None,
        ..mtls()
    }
}

pub(super) fn policy(
    name: &str,
    action: PbAction,
    rules: Vec<pb::AuthorizationRule>,
) -> pb::AuthorizationPolicy {
    pb::AuthorizationPolicy {
        name: name.to_owned(),
        action: action as i32,
        rules,
        dry_run: false,
    }
}

pub(super) fn compile(policies: Vec<pb::AuthorizationPolicy>) -> InboundPolicy {
    InboundPolicy::compile(&pb::InboundSecurity {
        policies,
        ..Default::default()
    })
    .unwrap()
}

pub(super) fn http(p: &InboundPolicy, conn: &Connection<'_>, c: &Call) -> Verdict {
    p.check_http(
        conn,
        &Request {
            method: c.method,
            path: c.path,
            host: c.host,
            headers: &c.headers,
            auth: c.auth.as_ref(),
        },
    )
}

pub(super) fn from(peer: pb::PeerMatch) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        from: vec![peer],
        ..Default::default()
    }
}

pub(super) fn to(op: pb::OperationMatch) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        to: vec![op],
        ..Default::default()
    }
}

pub(super) fn when(key: &str, values: &[&str], not_values: &[&str]) -> pb::AuthorizationRule {
    pb::AuthorizationRule {
        when: vec![pb::ConditionMatch {
            key: key.to_owned(),
            values: values.iter().map(|v| v.to_string()).collect(),
            not_values: not_values.iter().map(|v| v.to_string()).collect(),
        }],
        ..Default::default()
    }
}

pub(super) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn allow_all() -> pb::AuthorizationRule {
    pb::AuthorizationRule::default()
}

fn deny(rules: Vec<pb::AuthorizationRule>) -> pb::AuthorizationPolicy {
    policy("default/deny", PbAction::Deny, rules)
}

fn allow(rules: Vec<pb::AuthorizationRule>) -> pb::AuthorizationPolicy {
    policy("default/allow", PbAction::Allow, rules)
}

/// Whether a single ALLOW policy with this one rule lets the HTTP call in.
pub(super) fn allows(rule: pb::AuthorizationRule, conn: &Connection<'_>, c: &Call) -> bool {
    http(&compile(vec![allow(vec![rule])]), conn, c).allowed
}

#[test]
fn no_policies_any_request_allowed_without_attribution() {
    let p = compile(vec![]);
    assert!(!p.has_policies());
    let v = http(&p, &plaintext(), &call("GET", "/"));
    assert_eq!(
        v,
        Verdict {
            allowed: true,
            policy: None,
            audit: None,
            dry_run: None,
        }
    );
    assert!(p.check_tcp(&plaintext()).allowed);
}

#[test]
fn deny_and_allow_both_matching_deny_wins() {
    let p = compile(vec![allow(vec![allow_all()]), deny(vec![allow_all()])]);
    let v = http(&p, &mtls(), &call("GET", "/"));
    assert!(!v.allowed);
    assert_eq!(v.policy.as_deref(), Some("default/deny"));
}

#[test]
fn deny_unmatched_without_allow_allowed() {
    let rule = to(pb::OperationMatch {
        methods: strs(&["DELETE"]),
        ..Default::default()
    });
    let p = compile(vec![deny(vec![rule])]);
    let v = http(&p, &mtls(), &call("GET", "/"));
    assert_eq!((v.allowed, v.policy), (true, None));
    assert!(!http(&p, &mtls(), &call("DELETE", "/")).allowed);
}

#[test]
fn allow_present_unmatched_denied() {
    let rule = to(pb::OperationMatch {
        methods: strs(&["GET"]),
        ..Default::default()
    });
    let p = compile(vec![allow(vec![rule])]);
    let v = http(&p, &mtls(), &call("POST", "/"));
    assert_eq!((v.allowed, v.policy), (false, None));
    let v = http(&p, &mtls(), &call("GET", "/"));
    assert_eq!(v.policy.as_deref(), Some("default/allow"));
    assert!(v.allowed);
}

#[test]
fn allow_with_empty_rules_denies_everything() {
    let p = compile(vec![allow(vec![])]);
    assert!(p.has_policies());
    assert!(!http(&p, &mtls(), &call("GET", "/")).allowed);
    assert!(!p.check_tcp(&mtls()).allowed);
}

#[test]
fn deny_with_empty_rules_never_matches() {
    let p = compile(vec![deny(vec![])]);
    assert!(http(&p, &mtls(), &call("GET", "/")).allowed);
}

#[test]
fn allow_with_empty_rule_allows_everything() {
    let p = compile(vec![allow(vec![allow_all()])]);
    assert!(http(&p, &plaintext(), &call("GET", "/")).allowed);
    assert!(p.check_tcp(&plaintext()).allowed);
}

#[test]
fn allow_several_policies_any_match_allows_in_order() {
    let get = to(pb::OperationMatch {
        methods: strs(&["GET"]),
        ..Default::default()
    });
    let p = compile(vec![
        policy("istio-system/root", PbAction::Allow, vec![get]),
        policy("default/all", PbAction::Allow, vec![allow_all()]),
    ]);
    let v = http(&p, &mtls(), &call("GET", "/"));
    assert_eq!(v.policy.as_deref(), Some("istio-system/root"));
    let v = http(&p, &mtls(), &call("PUT", "/"));
    assert_eq!(v.policy.as_deref(), Some("default/all"));
}

#[test]
fn audit_matching_reported_without_changing_decision() {
    let audit = |name: &str| policy(name, PbAction::Audit, vec![allow_all()]);
    // Audit only: still allowed, first audit policy reported.
    let p = compile(vec![audit("default/a1"), audit("default/a2")]);
    assert!(p.has_policies());
    let v = http(&p, &mtls(), &call("GET", "/"));
    assert_eq!((v.allowed, v.audit.as_deref()), (true, Some("default/a1")));
    // Audit next to a matching DENY: denied, audit still reported.
    let p = compile(vec![audit("default/a1"), deny(vec![allow_all()])]);
    let v = http(&p, &mtls(), &call("GET", "/"));
    assert_eq!((v.allowed, v.audit.as_deref()), (false, Some("default/a1")));
    // Audit next to an unmatched ALLOW: denied.
    let p = compile(vec![audit("default/a1"), allow(vec![])]);
    assert!(!http(&p, &mtls(), &call("GET", "/")).allowed);
    // Unmatched audit: nothing reported.
    let never = policy("default/never", PbAction::Audit, vec![]);
    let v = http(&compile(vec![never]), &mtls(), &call("GET", "/"));
    assert_eq!((v.allowed, v.audit), (true, None));
}

#[test]
fn rule_from_to_when_all_required() {
    let rule = pb::AuthorizationRule {
        from: vec![pb::PeerMatch {
            principals: strs(&[FRONTEND]),
            ..Default::default()
        }],
        to: vec![pb::OperationMatch {
            methods: strs(&["GET"]),
            ..Default::default()
        }],
        when: when("request.headers[x-token]", &["t"], &[]).when,
    };
    let ok = call("GET", "/").header("x-token", "t");
    assert!(allows(rule.clone(), &mtls(), &ok));
    assert!(!allows(rule.clone(), &plaintext(), &ok));
    assert!(!allows(
        rule.clone(),
        &mtls(),
        &call("POST", "/").header("x-token", "t")
    ));
    assert!(!allows(rule, &mtls(), &call("GET", "/")));
}

#[test]
fn rule_entries_any_from_any_to_all_when() {
    let rule = pb::AuthorizationRule {
        from: vec![
            pb::PeerMatch {
                principals: strs(&["cluster.local/ns/x/sa/other"]),
                ..Default::default()
            },
            pb::PeerMatch {
                namespaces: strs(&["default"]),
                ..Default::default()
            },
        ],
        to: vec![
            pb::OperationMatch {
                paths: strs(&["/a"]),
                ..Default::default()
            },
            pb::OperationMatch {
                paths: strs(&["/b"]),
                ..Default::default()
            },
        ],
        when: [
            when("source.ip", &["10.0.0.0/8"], &[]).when,
            when("destination.port", &["8080"], &[]).when,
        ]
        .concat(),
    };
    assert!(allows(rule.clone(), &mtls(), &call("GET", "/b")));
    assert!(!allows(rule.clone(), &mtls(), &call("GET", "/c")));
    let other_port = Connection {
        destination_port: 9090,
        ..mtls()
    };
    assert!(!allows(rule, &other_port, &call("GET", "/a")));
}

#[test]
fn tcp_allow_rule_with_http_only_field_never_matches() {
    // authz-tcp task: `methods` + `ports: 9000` in ALLOW → port 9000 rejected.
    let rule = to(pb::OperationMatch {
        methods: strs(&["GET"]),
        ports: vec![8080],
        ..Default::default()
    });
    let p = compile(vec![allow(vec![rule])]);
    assert!(!p.check_tcp(&mtls()).allowed);
    assert!(http(&p, &mtls(), &call("GET", "/")).allowed);
    // Every HTTP-only field does the same, its not_ form included.
    let http_only = [
        to(pb::OperationMatch {
            hosts: strs(&["*"]),
            ..Default::default()
        }),
        to(pb::OperationMatch {
            not_paths: strs(&["/admin"]),
            ..Default::default()
        }),
        from(pb::PeerMatch {
            not_request_principals: strs(&["*"]),
            ..Default::default()
        }),
        when("request.headers[x-a]", &[], &["b"]),
        when("request.auth.claims[iss]", &[], &["x"]),
    ];
    for rule in http_only {
        let p = compile(vec![allow(vec![rule.clone(), to(ports_only(9090))])]);
        assert!(!p.check_tcp(&mtls()).allowed, "{rule:?}");
    }
}

fn ports_only(port: u32) -> pb::OperationMatch {
    pb::OperationMatch {
        ports: vec![port],
        ..Default::default()
    }
}

#[test]
fn tcp_allow_rule_with_tcp_fields_only_matches() {
    let rule = pb::AuthorizationRule {
        from: vec![pb::PeerMatch {
            principals: strs(&[FRONTEND]),
            ..Default::default()
        }],
        to: vec![ports_only(8080)],
        when: when("source.ip", &["10.0.0.0/8"], &[]).when,
    };
    let p = compile(vec![allow(vec![rule])]);
    assert!(p.check_tcp(&mtls()).allowed);
    assert!(!p.check_tcp(&plaintext()).allowed);
}

#[test]
fn tcp_deny_rule_with_http_only_fields_ignores_them() {
    // authz-tcp task: DENY with only `methods` denies all TCP traffic ...
    let p = compile(vec![deny(vec![to(pb::OperationMatch {
        methods: strs(&["GET"]),
        ..Default::default()
    })])]);
    assert!(!p.check_tcp(&mtls()).allowed);
    assert!(http(&p, &mtls(), &call("POST", "/")).allowed);
    // ... and with `methods` + `ports: 9000`, only port 9000.
    let p = compile(vec![deny(vec![to(pb::OperationMatch {
        methods: strs(&["GET"]),
        ports: vec![9000],
        ..Default::default()
    })])]);
    let port = |destination_port| Connection {
        destination_port,
        ..mtls()
    };
    assert!(!p.check_tcp(&port(9000)).allowed);
    assert!(p.check_tcp(&port(9001)).allowed);
    // HTTP-only conditions are skipped too, the rest still applies.
    let mut rule = when("request.headers[x-a]", &["b"], &[]);
    rule.when
        .extend(when("source.namespace", &["prod"], &[]).when);
    let p = compile(vec![deny(vec![rule])]);
    assert!(p.check_tcp(&mtls()).allowed);
}

#[test]
fn tcp_audit_rule_with_http_only_fields_ignores_them() {
    let rule = to(pb::OperationMatch {
        paths: strs(&["/x"]),
        ..Default::default()
    });
    let p = compile(vec![policy("default/audit", PbAction::Audit, vec![rule])]);
    let v = p.check_tcp(&mtls());
    assert_eq!(
        (v.allowed, v.audit.as_deref()),
        (true, Some("default/audit"))
    );
}

#[test]
fn seed_orders_policy_frontend_with_key_allowed_others_denied() {
    // /work/shared/seed-mesh.yaml, AuthorizationPolicy orders-policy.
    let rule = pb::AuthorizationRule {
        from: vec![pb::PeerMatch {
            principals: strs(&[FRONTEND]),
            namespaces: strs(&["default"]),
            ..Default::default()
        }],
        to: vec![pb::OperationMatch {
            methods: strs(&["GET", "POST"]),
            paths: strs(&["/orders/*"]),
            ..Default::default()
        }],
        when: when("request.headers[x-api-key]", &["*"], &[]).when,
    };
    let p = compile(vec![policy(
        "default/orders-policy",
        PbAction::Allow,
        vec![rule],
    )]);
    let keyed = |m, path| call(m, path).header("x-api-key", "k1");
    let v = http(&p, &mtls(), &keyed("GET", "/orders/1"));
    assert_eq!(v.policy.as_deref(), Some("default/orders-policy"));
    assert!(v.allowed);
    assert!(http(&p, &mtls(), &keyed("POST", "/orders/new")).allowed);
    let denied = [
        ("DELETE", keyed("DELETE", "/orders/1"), mtls()),
        ("wrong path", keyed("GET", "/payments/1"), mtls()),
        ("no key", call("GET", "/orders/1"), mtls()),
        (
            "empty key",
            call("GET", "/orders/1").header("x-api-key", ""),
            mtls(),
        ),
        ("plaintext", keyed("GET", "/orders/1"), plaintext()),
        (
            "other caller",
            keyed("GET", "/orders/1"),
            Connection {
                principal: Some("cluster.local/ns/default/sa/batch"),
                ..mtls()
            },
        ),
    ];
    for (what, c, conn) in denied {
        assert!(!http(&p, &conn, &c).allowed, "{what}");
    }
    assert!(
        !p.check_tcp(&mtls()).allowed,
        "TCP: the rule uses HTTP-only fields"
    );
}

#[test]
fn dry_run_deny_matching_reported_but_request_allowed() {
    let mut shadow = deny(vec![allow_all()]);
    shadow.name = "default/dry".to_owned();
    shadow.dry_run = true;
    let p = compile(vec![shadow]);
    assert!(p.has_policies());
    let v = http(&p, &plaintext(), &call("GET", "/"));
    assert!(v.allowed);
    assert_eq!(v.policy, None);
    assert_eq!(
        v.dry_run,
        Some(DryRun {
            allowed: false,
            policy: Some("default/dry".to_owned())
        })
    );
}

#[test]
fn dry_run_allow_unmatched_would_deny_without_touching_enforced_allow() {
    let mut shadow = policy("default/dry-allow", PbAction::Allow, vec![]);
    shadow.dry_run = true;
    let enforced = policy("default/allow", PbAction::Allow, vec![allow_all()]);
    let p = compile(vec![shadow, enforced]);
    let v = http(&p, &plaintext(), &call("GET", "/"));
    assert!(v.allowed);
    assert_eq!(v.policy.as_deref(), Some("default/allow"));
    assert_eq!(
        v.dry_run,
        Some(DryRun {
            allowed: false,
            policy: None
        })
    );
}

#[test]
fn request_principals_and_auth_conditions_read_the_verified_token() {
    let token = || {
        call("GET", "/productpage").token(serde_json::json!({
            "iss": "testing@secure.istio.io", "sub": "testing@secure.istio.io",
            "aud": ["bookinfo", "reviews"], "azp": "web",
            "groups": ["group1", "group2"], "org": {"team": "blue"}, "admin": true,
        }))
    };
    let anonymous = || call("GET", "/productpage");
    let principal = |values: &[&str]| {
        from(pb::PeerMatch {
            request_principals: strs(values),
            ..Default::default()
        })
    };
    let cases: Vec<(pb::AuthorizationRule, bool, bool)> = vec![
        // (rule, allows the token, allows no token)
        (principal(&["*"]), true, false),
        (
            principal(&["testing@secure.istio.io/testing@secure.istio.io"]),
            true,
            false,
        ),
        (principal(&["testing@secure.istio.io/*"]), true, false),
        (principal(&["other/*"]), false, false),
        (
            from(pb::PeerMatch {
                not_request_principals: strs(&["*"]),
                ..Default::default()
            }),
            false,
            true,
        ),
        (
            when(
                "request.auth.principal",
                &["testing@secure.istio.io/*"],
                &[],
            ),
            true,
            false,
        ),
        (
            when("request.auth.audiences", &["reviews"], &[]),
            true,
            false,
        ),
        (when("request.auth.presenter", &["web"], &[]), true, false),
        (
            when("request.auth.claims[groups]", &["group1"], &[]),
            true,
            false,
        ),
        (
            when("request.auth.claims[groups]", &["group3"], &[]),
            false,
            false,
        ),
        (
            when("request.auth.claims[org][team]", &["blue"], &[]),
            true,
            false,
        ),
        // Only strings and lists of strings match.
        (
            when("request.auth.claims[admin]", &["true"], &[]),
            false,
            false,
        ),
        (
            when("request.auth.claims[groups]", &[], &["group2"]),
            false,
            true,
        ),
    ];
    for (i, (rule, with_token, without)) in cases.into_iter().enumerate() {
        let p = compile(vec![allow(vec![rule])]);
        assert_eq!(
            http(&p, &mtls(), &token()).allowed,
            with_token,
            "case {i} with a token"
        );
        assert_eq!(
            http(&p, &mtls(), &anonymous()).allowed,
            without,
            "case {i} without"
        );
    }
}
