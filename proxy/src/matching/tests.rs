use std::collections::BTreeMap;

use http::HeaderMap;
use sluice_api::config as pb;

use super::*;
use crate::model::ProxyConfig;

fn sm(kind: pb::string_match::Kind) -> pb::StringMatch {
    pb::StringMatch { kind: Some(kind) }
}

fn exact(s: &str) -> pb::StringMatch {
    sm(pb::string_match::Kind::Exact(s.to_owned()))
}

fn forward(matches: Vec<pb::RouteMatch>, cluster: &str) -> pb::Route {
    pb::Route {
        matches,
        action: Some(pb::route::Action::Forward(pb::WeightedClusters {
            clusters: vec![pb::WeightedCluster {
                cluster: cluster.to_owned(),
                weight: 1,
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

fn vh(name: &str, port: u32, domains: &[&str], routes: Vec<pb::Route>) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.to_owned(),
        port,
        domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        routes,
        ..Default::default()
    }
}

fn build(vhosts: Vec<pb::VirtualHost>) -> ProxyConfig {
    ProxyConfig::try_from(&pb::ProxyConfig {
        virtual_hosts: vhosts,
        ..Default::default()
    })
    .unwrap()
}

fn view<'a>(path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestView<'a> {
    RequestView {
        method: "GET",
        scheme: "http",
        authority: "reviews:9080",
        path,
        query,
        headers,
    }
}

#[test]
fn string_match_kinds_behave_like_istio() {
    assert!(StringMatch::Exact("/a".into()).matches(Some("/a"), false));
    assert!(!StringMatch::Exact("/a".into()).matches(Some("/A"), false));
    assert!(StringMatch::Exact("/a".into()).matches(Some("/A"), true));
    assert!(StringMatch::Prefix("/api".into()).matches(Some("/API/x"), true));
    assert!(!StringMatch::Prefix("/api".into()).matches(Some("/ap"), true));
    assert!(StringMatch::Present.matches(Some(""), false));
    assert!(!StringMatch::Present.matches(None, false));
    let re = StringMatch::Regex(crate::model::Pattern::full(".*Mobile.*").unwrap());
    assert!(re.matches(Some("Agent Mobile 1"), false));
    assert!(!re.matches(None, false));
}

#[test]
fn route_match_requires_all_conditions_and_explains_the_first_failure() {
    let m = pb::RouteMatch {
        uri: Some(sm(pb::string_match::Kind::Prefix("/api".to_owned()))),
        headers: BTreeMap::from([("end-user".to_owned(), exact("jason"))]),
        query_params: BTreeMap::from([(
            "v".to_owned(),
            sm(pb::string_match::Kind::Regex("[0-9]+".to_owned())),
        )]),
        ..Default::default()
    };
    let cfg = build(vec![vh(
        "r",
        9080,
        &["reviews"],
        vec![forward(vec![m], "c")],
    )]);
    let rm = &cfg.virtual_hosts[0].routes[0].matches[0];
    let mut headers = HeaderMap::new();
    headers.insert("end-user", "jason".parse().unwrap());
    assert!(rm.check(&view("/api/x", Some("v=12"), &headers)).is_ok());
    let err = rm
        .check(&view("/api/x", Some("v=1a"), &headers))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "query \"v\": \"1a\" does not fully match regex \"[0-9]+\""
    );
    let err = rm.check(&view("/web", Some("v=1"), &headers)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "uri: \"/web\" does not start with \"/api\""
    );
    headers.insert("end-user", "bob".parse().unwrap());
    let err = rm.check(&view("/api", Some("v=1"), &headers)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "header \"end-user\": \"bob\" does not equal \"jason\""
    );
    let err = rm
        .check(&view("/api", None, &HeaderMap::new()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "header \"end-user\" is absent (wanted exact \"jason\")"
    );
}

#[test]
fn without_headers_absent_satisfies_and_matching_value_fails() {
    let m = pb::RouteMatch {
        without_headers: BTreeMap::from([("x-canary".to_owned(), exact("1"))]),
        ..Default::default()
    };
    let cfg = build(vec![vh("r", 80, &["r"], vec![forward(vec![m], "c")])]);
    let rm = &cfg.virtual_hosts[0].routes[0].matches[0];
    let mut headers = HeaderMap::new();
    assert!(rm.check(&view("/", None, &headers)).is_ok());
    headers.insert("x-canary", "2".parse().unwrap());
    assert!(rm.check(&view("/", None, &headers)).is_ok());
    headers.insert("x-canary", "1".parse().unwrap());
    let err = rm.check(&view("/", None, &headers)).unwrap_err();
    assert!(err.negated);
}

#[test]
fn first_matching_route_wins_and_any_alternative_applies() {
    let a = pb::RouteMatch {
        uri: Some(exact("/a")),
        ..Default::default()
    };
    let b = pb::RouteMatch {
        uri: Some(exact("/b")),
        ..Default::default()
    };
    let cfg = build(vec![vh(
        "r",
        80,
        &["r"],
        vec![
            forward(vec![a, b], "first"),
            forward(vec![], "catch-all"),
            forward(vec![], "never"),
        ],
    )]);
    let headers = HeaderMap::new();
    let vh = &cfg.virtual_hosts[0];
    let (i, _, m) = vh.route_for(&view("/b", None, &headers)).unwrap();
    assert_eq!((i, m), (0, Matched::Alternative(1)));
    let (i, _, m) = vh.route_for(&view("/zzz", None, &headers)).unwrap();
    assert_eq!((i, m), (1, Matched::Always));
}

#[test]
fn select_vhost_prefers_exact_then_longest_wildcard_then_unique_other_port() {
    let cfg = build(vec![
        vh("star", 80, &["*"], vec![]),
        vh("wild", 80, &["*.example.com"], vec![]),
        vh("deeper", 80, &["*.api.example.com"], vec![]),
        vh("exact", 80, &["www.example.com"], vec![]),
        vh("reviews", 9080, &["reviews"], vec![]),
        vh("dup-a", 81, &["dup"], vec![]),
        vh("dup-b", 82, &["dup"], vec![]),
    ]);
    let name = |host: &str, port: u16| select_vhost(&cfg, host, port).map(|v| v.name.as_str());
    assert_eq!(name("www.example.com", 80), Some("exact"));
    assert_eq!(name("v1.api.example.com", 80), Some("deeper"));
    assert_eq!(name("shop.example.com", 80), Some("wild"));
    assert_eq!(name("other.org", 80), Some("star"));
    assert_eq!(name("reviews", 80), Some("star"));
    assert_eq!(name("reviews", 7000), Some("reviews"));
    assert_eq!(name("dup", 7000), None);
    assert_eq!(name("example.com", 81), None);
    // Under REGISTRY_ONLY a port the registry does not declare finds nothing.
    let mut cfg = cfg;
    cfg.registry_only = true;
    assert_eq!(
        select_vhost(&cfg, "reviews", 7000).map(|v| v.name.as_str()),
        None
    );
    assert_eq!(
        select_vhost(&cfg, "reviews", 9080).map(|v| v.name.as_str()),
        Some("reviews")
    );
}

#[test]
fn host_and_port_of_authority_are_split_and_lower_cased() {
    assert_eq!(host_of("Reviews.Default:9080"), "reviews.default");
    assert_eq!(port_of("reviews:9080"), Some(9080));
    assert_eq!(port_of("reviews"), None);
    assert_eq!(port_of("[::1]:8080"), Some(8080));
}
