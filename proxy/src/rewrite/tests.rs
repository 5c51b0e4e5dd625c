use sluice_api::config as pb;

use super::*;
use crate::model::{Action, ProxyConfig};

fn route(m: pb::string_match::Kind, rewrite: pb::Rewrite) -> ProxyConfig {
    let r = pb::Route {
        matches: vec![pb::RouteMatch {
            uri: Some(pb::StringMatch { kind: Some(m) }),
            ..Default::default()
        }],
        rewrite: Some(rewrite),
        action: Some(pb::route::Action::Forward(pb::WeightedClusters::default())),
        ..Default::default()
    };
    let vh = pb::VirtualHost {
        name: "v".to_owned(),
        port: 80,
        routes: vec![r],
        ..Default::default()
    };
    ProxyConfig::try_from(&pb::ProxyConfig {
        virtual_hosts: vec![vh],
        ..Default::default()
    })
    .unwrap()
}

fn uri(u: &str) -> pb::Rewrite {
    pb::Rewrite {
        uri: u.to_owned(),
        ..Default::default()
    }
}

#[test]
fn rewrite_prefix_match_replaces_only_the_prefix() {
    let cfg = route(
        pb::string_match::Kind::Prefix("/old".to_owned()),
        uri("/new"),
    );
    let r = &cfg.virtual_hosts[0].routes[0];
    assert_eq!(
        rewritten_path(r, Matched::Alternative(0), "/old/page"),
        "/new/page"
    );
}

#[test]
fn rewrite_exact_or_regex_match_replaces_the_whole_path() {
    let cfg = route(pb::string_match::Kind::Exact("/a/b".to_owned()), uri("/c"));
    assert_eq!(
        rewritten_path(
            &cfg.virtual_hosts[0].routes[0],
            Matched::Alternative(0),
            "/a/b"
        ),
        "/c"
    );
    let cfg = route(pb::string_match::Kind::Regex("/a/.*".to_owned()), uri("/c"));
    assert_eq!(
        rewritten_path(
            &cfg.virtual_hosts[0].routes[0],
            Matched::Alternative(0),
            "/a/b"
        ),
        "/c"
    );
}

#[test]
fn rewrite_uri_regex_substitutes_groups() {
    let rr = pb::Rewrite {
        uri_regex: Some(pb::RegexRewrite {
            pattern: "^/v1/(.*)$".to_owned(),
            substitution: "/api/${1}".to_owned(),
        }),
        ..Default::default()
    };
    let cfg = route(pb::string_match::Kind::Prefix("/v1".to_owned()), rr);
    assert_eq!(
        rewritten_path(
            &cfg.virtual_hosts[0].routes[0],
            Matched::Alternative(0),
            "/v1/users"
        ),
        "/api/users"
    );
}

fn redirect(r: pb::Redirect) -> crate::model::Redirect {
    let route = pb::Route {
        action: Some(pb::route::Action::Redirect(r)),
        ..Default::default()
    };
    let vh = pb::VirtualHost {
        name: "v".to_owned(),
        port: 80,
        routes: vec![route],
        ..Default::default()
    };
    let mut cfg = ProxyConfig::try_from(&pb::ProxyConfig {
        virtual_hosts: vec![vh],
        ..Default::default()
    })
    .unwrap();
    match cfg.virtual_hosts.remove(0).routes.remove(0).action {
        Action::Redirect(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn redirect_location_keeps_unset_parts_and_query() {
    let r = redirect(pb::Redirect {
        uri: "/new".to_owned(),
        ..Default::default()
    });
    assert_eq!(r.status, 301);
    assert_eq!(
        redirect_location(&r, "http", "reviews:9080", "/old", Some("a=1")),
        "http://reviews:9080/new?a=1"
    );
    let r = redirect(pb::Redirect {
        authority: "ratings".to_owned(),
        ..Default::default()
    });
    assert_eq!(
        redirect_location(&r, "http", "reviews:9080", "/p", None),
        "http://ratings/p"
    );
}

#[test]
fn redirect_location_derives_ports_from_scheme_or_request() {
    let https = redirect(pb::Redirect {
        scheme: "https".to_owned(),
        derive_port: 1,
        ..Default::default()
    });
    assert_eq!(
        redirect_location(&https, "http", "shop:8080", "/", None),
        "https://shop/"
    );
    let keep = redirect(pb::Redirect {
        authority: "other".to_owned(),
        derive_port: 2,
        ..Default::default()
    });
    assert_eq!(
        redirect_location(&keep, "http", "shop:8080", "/", None),
        "http://other:8080/"
    );
    let explicit = redirect(pb::Redirect {
        port: 443,
        scheme: "https".to_owned(),
        status: 308,
        ..Default::default()
    });
    assert_eq!(explicit.status, 308);
    assert_eq!(
        redirect_location(&explicit, "http", "shop:8080", "/x", None),
        "https://shop/x"
    );
}

#[test]
fn rewrite_without_uri_match_replaces_the_leading_slash() {
    // istiod matches a rule without a uri condition with prefix `/`, so
    // Envoy's prefix_rewrite swaps only that slash.
    let header_only = pb::Route {
        matches: vec![pb::RouteMatch {
            headers: [(
                "x-v".to_owned(),
                pb::StringMatch {
                    kind: Some(pb::string_match::Kind::Exact("2".to_owned())),
                },
            )]
            .into(),
            ..Default::default()
        }],
        rewrite: Some(uri("/v2")),
        action: Some(pb::route::Action::Forward(pb::WeightedClusters::default())),
        ..Default::default()
    };
    let no_match = pb::Route {
        matches: vec![],
        ..header_only.clone()
    };
    let cfg = ProxyConfig::try_from(&pb::ProxyConfig {
        virtual_hosts: vec![pb::VirtualHost {
            name: "v".to_owned(),
            port: 80,
            routes: vec![header_only, no_match],
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap();
    let routes = &cfg.virtual_hosts[0].routes;
    assert_eq!(
        rewritten_path(&routes[0], Matched::Alternative(0), "/foo"),
        "/v2foo"
    );
    assert_eq!(rewritten_path(&routes[1], Matched::Always, "/"), "/v2");
}
