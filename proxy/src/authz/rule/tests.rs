//! Every source and operation field with its `not_` form, and every `when`
//! key of Istio's "Authorization Policy Conditions" reference, evaluated
//! through the public API over mTLS and plaintext.

use sluice_api::config as pb;
use sluice_api::config::authorization_policy::Action;

use crate::authz::Connection;
use crate::authz::tests::{
    FRONTEND, allows, call, compile, from, http, ip, mtls, plaintext, policy, strs, to, when,
};

/// Whether an ALLOW policy with one condition lets the call in over `conn`.
fn holds(key: &str, values: &[&str], not_values: &[&str], conn: &Connection<'_>) -> bool {
    let rule = when(key, values, not_values);
    let p = compile(vec![policy("default/when", Action::Allow, vec![rule])]);
    let c = call("GET", "/")
        .header("x-api-key", "k1")
        .header("x-multi", "one")
        .header("x-multi", "two");
    http(&p, conn, &c).allowed
}

#[test]
fn condition_every_key_values_and_not_values_match_as_documented() {
    // (key, values, not_values, over mTLS, over plaintext). The connection:
    // source 10.0.0.5, remote 192.0.2.7, destination 10.0.0.9:8080,
    // principal cluster.local/ns/default/sa/frontend and an SNI under mTLS.
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        bool,
        bool,
    );
    let cases: &[Case] = &[
        ("request.headers[x-api-key]", &["k1"], &[], true, true),
        ("request.headers[X-Api-Key]", &["k*"], &[], true, true),
        ("request.headers[x-api-key]", &["*"], &[], true, true),
        ("request.headers[x-api-key]", &["k2"], &[], false, false),
        ("request.headers[x-api-key]", &[], &["k1"], false, false),
        ("request.headers[x-absent]", &["*"], &[], false, false),
        ("request.headers[x-absent]", &[], &["*"], true, true),
        ("request.headers[x-multi]", &["two"], &[], true, true),
        ("request.headers[x-multi]", &[], &["one"], false, false),
        ("source.ip", &["10.0.0.0/24"], &[], true, true),
        ("source.ip", &["10.0.0.5"], &[], true, true),
        ("source.ip", &["192.0.2.7"], &[], false, false),
        ("source.ip", &[], &["10.0.0.0/8"], false, false),
        ("remote.ip", &["192.0.2.0/24"], &[], true, true),
        ("remote.ip", &["10.0.0.5"], &[], false, false),
        ("remote.ip", &[], &["198.51.100.0/24"], true, true),
        ("destination.ip", &["10.0.0.9/32"], &[], true, true),
        ("destination.ip", &["10.0.0.5"], &[], false, false),
        ("destination.ip", &[], &["10.0.0.9"], false, false),
        ("destination.port", &["80", "8080"], &[], true, true),
        ("destination.port", &["80"], &[], false, false),
        ("destination.port", &[], &["8080"], false, false),
        (
            "source.serviceAccount",
            &["default/frontend"],
            &[],
            true,
            false,
        ),
        (
            "source.serviceAccount",
            &["default/backend"],
            &[],
            false,
            false,
        ),
        (
            "source.serviceAccount",
            &[],
            &["default/frontend"],
            false,
            true,
        ),
        ("source.namespace", &["default"], &[], true, false),
        ("source.namespace", &["prod"], &[], false, false),
        ("source.namespace", &[], &["default"], false, true),
        (
            "source.principal",
            &["cluster.local/ns/default/sa/frontend"],
            &[],
            true,
            false,
        ),
        ("source.principal", &["*"], &[], true, false),
        ("source.principal", &[], &["*"], false, true),
        (
            "connection.sni",
            &["*.orders.default.svc.cluster.local"],
            &[],
            true,
            false,
        ),
        ("connection.sni", &[], &["*"], false, true),
        ("request.auth.principal", &["*"], &[], false, false),
        ("request.auth.principal", &[], &["*"], true, true),
        ("request.auth.audiences", &["api"], &[], false, false),
        ("request.auth.presenter", &[], &["x"], true, true),
        ("request.auth.claims[iss]", &["issuer"], &[], false, false),
        (
            "request.auth.claims[groups][0]",
            &[],
            &["admins"],
            true,
            true,
        ),
    ];
    for (key, values, not_values, over_mtls, over_plaintext) in cases {
        let got = holds(key, values, not_values, &mtls());
        assert_eq!(got, *over_mtls, "{key} {values:?} !{not_values:?} (mTLS)");
        let got = holds(key, values, not_values, &plaintext());
        assert_eq!(
            got, *over_plaintext,
            "{key} {values:?} !{not_values:?} (plaintext)"
        );
    }
}

#[test]
fn condition_ip_keys_ipv6_cidrs_match() {
    let v6 = Connection {
        source_ip: ip("2001:db8:1::5"),
        remote_ip: ip("2001:db8:2::7"),
        destination_ip: ip("fd00::9"),
        ..mtls()
    };
    assert!(holds("source.ip", &["2001:db8:1::/64"], &[], &v6));
    assert!(!holds("source.ip", &["2001:db8:2::/64"], &[], &v6));
    assert!(holds("remote.ip", &["2001:db8:2::7"], &[], &v6));
    assert!(holds("destination.ip", &["fd00::/8"], &[], &v6));
    assert!(!holds("destination.ip", &[], &["fd00::/8"], &v6));
}

#[test]
fn condition_namespace_unparsable_principal_never_matches() {
    let odd = Connection {
        principal: Some("example.org/workload/frontend"),
        ..mtls()
    };
    assert!(!holds("source.namespace", &["*"], &[], &odd));
    assert!(holds("source.namespace", &[], &["default"], &odd));
    assert!(holds("source.principal", &["example.org/*"], &[], &odd));
}

#[test]
fn peer_fields_each_value_and_not_form_match_as_documented() {
    type Case = (&'static str, pb::PeerMatch, bool, bool);
    let p = |f: fn(&mut pb::PeerMatch, Vec<String>), v: &[&str]| {
        let mut m = pb::PeerMatch::default();
        f(&mut m, strs(v));
        m
    };
    // (what, source, allowed over mTLS, allowed over plaintext)
    let cases: Vec<Case> = vec![
        (
            "principal exact",
            p(|m, v| m.principals = v, &[FRONTEND]),
            true,
            false,
        ),
        (
            "principal prefix",
            p(|m, v| m.principals = v, &["cluster.local/ns/default/*"]),
            true,
            false,
        ),
        (
            "principal suffix",
            p(|m, v| m.principals = v, &["*/sa/frontend"]),
            true,
            false,
        ),
        (
            "principal presence",
            p(|m, v| m.principals = v, &["*"]),
            true,
            false,
        ),
        (
            "principal other",
            p(|m, v| m.principals = v, &["cluster.local/ns/default/sa/x"]),
            false,
            false,
        ),
        (
            "not principal presence",
            p(|m, v| m.not_principals = v, &["*"]),
            false,
            true,
        ),
        (
            "not principal other",
            p(|m, v| m.not_principals = v, &["*/sa/x"]),
            true,
            true,
        ),
        (
            "not principal self",
            p(|m, v| m.not_principals = v, &[FRONTEND]),
            false,
            true,
        ),
        (
            "namespace",
            p(|m, v| m.namespaces = v, &["default"]),
            true,
            false,
        ),
        (
            "namespace prefix",
            p(|m, v| m.namespaces = v, &["def*"]),
            true,
            false,
        ),
        (
            "namespace other",
            p(|m, v| m.namespaces = v, &["prod"]),
            false,
            false,
        ),
        (
            "not namespace self",
            p(|m, v| m.not_namespaces = v, &["default"]),
            false,
            true,
        ),
        (
            "not namespace other",
            p(|m, v| m.not_namespaces = v, &["prod"]),
            true,
            true,
        ),
        (
            "ip block cidr",
            p(|m, v| m.ip_blocks = v, &["10.0.0.0/24"]),
            true,
            true,
        ),
        (
            "ip block single",
            p(|m, v| m.ip_blocks = v, &["10.0.0.5"]),
            true,
            true,
        ),
        (
            "ip block other",
            p(|m, v| m.ip_blocks = v, &["10.0.1.0/24"]),
            false,
            false,
        ),
        (
            "ip block is not remote",
            p(|m, v| m.ip_blocks = v, &["192.0.2.7"]),
            false,
            false,
        ),
        (
            "not ip block self",
            p(|m, v| m.not_ip_blocks = v, &["10.0.0.0/8"]),
            false,
            false,
        ),
        (
            "not ip block other",
            p(|m, v| m.not_ip_blocks = v, &["172.16.0.0/12"]),
            true,
            true,
        ),
        (
            "remote ip block",
            p(|m, v| m.remote_ip_blocks = v, &["192.0.2.0/24"]),
            true,
            true,
        ),
        (
            "remote ip block is not source",
            p(|m, v| m.remote_ip_blocks = v, &["10.0.0.5"]),
            false,
            false,
        ),
        (
            "not remote ip block self",
            p(|m, v| m.not_remote_ip_blocks = v, &["192.0.2.7"]),
            false,
            false,
        ),
        (
            "not remote ip block other",
            p(|m, v| m.not_remote_ip_blocks = v, &["10.0.0.0/8"]),
            true,
            true,
        ),
        (
            "request principals absent",
            p(|m, v| m.request_principals = v, &["*"]),
            false,
            false,
        ),
        (
            "not request principals hold",
            p(|m, v| m.not_request_principals = v, &["*"]),
            true,
            true,
        ),
    ];
    for (what, peer, over_mtls, over_plaintext) in cases {
        let c = call("GET", "/");
        assert_eq!(
            allows(from(peer.clone()), &mtls(), &c),
            over_mtls,
            "{what} (mTLS)"
        );
        assert_eq!(
            allows(from(peer), &plaintext(), &c),
            over_plaintext,
            "{what} (plaintext)"
        );
    }
}

#[test]
fn peer_ipv6_blocks_match_v6_sources_only() {
    let v6 = Connection {
        source_ip: ip("2001:db8:1::5"),
        remote_ip: ip("2001:db8:2::7"),
        ..mtls()
    };
    let src = |blocks: &[&str]| {
        from(pb::PeerMatch {
            ip_blocks: strs(blocks),
            ..Default::default()
        })
    };
    let c = call("GET", "/");
    assert!(allows(src(&["2001:db8:1::/48"]), &v6, &c));
    assert!(allows(src(&["2001:db8:1::5"]), &v6, &c));
    assert!(!allows(src(&["2001:db8:2::/48"]), &v6, &c));
    assert!(!allows(src(&["0.0.0.0/0"]), &v6, &c));
    assert!(!allows(src(&["::/0"]), &mtls(), &c));
    let remote = from(pb::PeerMatch {
        remote_ip_blocks: strs(&["2001:db8:2::/64"]),
        ..Default::default()
    });
    assert!(allows(remote, &v6, &c));
}

#[test]
fn operation_fields_each_value_and_not_form_match_as_documented() {
    type Case = (&'static str, pb::OperationMatch, bool);
    let o = |f: fn(&mut pb::OperationMatch, Vec<String>), v: &[&str]| {
        let mut m = pb::OperationMatch::default();
        f(&mut m, strs(v));
        m
    };
    let ports = |any: &[u32], none: &[u32]| pb::OperationMatch {
        ports: any.to_vec(),
        not_ports: none.to_vec(),
        ..Default::default()
    };
    // Request: GET /orders/42 to orders.default.svc.cluster.local:8080.
    let cases: Vec<Case> = vec![
        (
            "host with port",
            o(
                |m, v| m.hosts = v,
                &["orders.default.svc.cluster.local:8080"],
            ),
            true,
        ),
        (
            "host without port",
            o(|m, v| m.hosts = v, &["orders.default.svc.cluster.local"]),
            false,
        ),
        (
            "host with any port",
            o(|m, v| m.hosts = v, &["orders.default.svc.cluster.local:*"]),
            true,
        ),
        (
            "host any case",
            o(
                |m, v| m.hosts = v,
                &["ORDERS.Default.svc.cluster.local:8080"],
            ),
            true,
        ),
        ("host prefix", o(|m, v| m.hosts = v, &["orders.*"]), true),
        (
            "host suffix",
            o(|m, v| m.hosts = v, &["*.svc.cluster.local:8080"]),
            true,
        ),
        (
            "host suffix without the port",
            o(|m, v| m.hosts = v, &["*.svc.cluster.local"]),
            false,
        ),
        ("host other", o(|m, v| m.hosts = v, &["payments"]), false),
        (
            "not host self",
            o(|m, v| m.not_hosts = v, &["orders.*"]),
            false,
        ),
        (
            "not host other",
            o(|m, v| m.not_hosts = v, &["payments.*"]),
            true,
        ),
        ("port", ports(&[8080], &[]), true),
        ("port other", ports(&[9090], &[]), false),
        ("not port self", ports(&[], &[8080]), false),
        ("not port other", ports(&[], &[9090]), true),
        ("method", o(|m, v| m.methods = v, &["GET", "HEAD"]), true),
        (
            "method is case-sensitive",
            o(|m, v| m.methods = v, &["get"]),
            false,
        ),
        ("method suffix", o(|m, v| m.methods = v, &["*ET"]), true),
        (
            "not method self",
            o(|m, v| m.not_methods = v, &["GET"]),
            false,
        ),
        (
            "not method other",
            o(|m, v| m.not_methods = v, &["POST"]),
            true,
        ),
        ("path exact", o(|m, v| m.paths = v, &["/orders/42"]), true),
        ("path prefix", o(|m, v| m.paths = v, &["/orders/*"]), true),
        ("path suffix", o(|m, v| m.paths = v, &["*/42"]), true),
        (
            "path is case-sensitive",
            o(|m, v| m.paths = v, &["/Orders/42"]),
            false,
        ),
        (
            "path template",
            o(|m, v| m.paths = v, &["/orders/{*}"]),
            true,
        ),
        (
            "path template deeper",
            o(|m, v| m.paths = v, &["/{**}"]),
            true,
        ),
        ("path other", o(|m, v| m.paths = v, &["/payments/*"]), false),
        (
            "not path self",
            o(|m, v| m.not_paths = v, &["/orders/*"]),
            false,
        ),
        (
            "not path other",
            o(|m, v| m.not_paths = v, &["/admin/*"]),
            true,
        ),
    ];
    for (what, op, want) in cases {
        assert_eq!(
            allows(to(op), &mtls(), &call("GET", "/orders/42")),
            want,
            "{what}"
        );
    }
}

#[test]
fn operation_host_ipv6_authority_matches_with_its_port() {
    let rule = to(pb::OperationMatch {
        hosts: strs(&["[2001:db8::1]", "[2001:db8::1]:*"]),
        ..Default::default()
    });
    let mut c = call("GET", "/");
    c.host = "[2001:db8::1]:8080";
    assert!(allows(rule.clone(), &mtls(), &c));
    c.host = "[2001:db8::1]";
    assert!(allows(rule.clone(), &mtls(), &c));
    c.host = "[2001:db8::2]:8080";
    assert!(!allows(rule, &mtls(), &c));
}
