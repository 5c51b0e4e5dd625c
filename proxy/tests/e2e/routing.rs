//! Outbound HTTP routing through the real proxy: matches, splits, rewrites,
//! redirects, direct responses and header operations.

use std::collections::BTreeMap;

use sluice_api::config as pb;

use crate::harness::*;

fn reviews_two_versions(net: u8, routes: Vec<pb::Route>) -> pb::ProxyConfig {
    let v1 = format!("127.0.{net}.11:9080").parse().unwrap();
    let v2 = format!("127.0.{net}.12:9080").parse().unwrap();
    pb::ProxyConfig {
        virtual_hosts: vec![vhost("reviews", 9080, routes)],
        clusters: vec![
            cluster(
                "reviews",
                9080,
                "v1",
                vec![endpoint(v1, "reviews-v1", "v1")],
            ),
            cluster(
                "reviews",
                9080,
                "v2",
                vec![endpoint(v2, "reviews-v2", "v2")],
            ),
        ],
        ..Default::default()
    }
}

async fn start_backends(net: u8) {
    backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    backend(format!("127.0.{net}.12:9080").parse().unwrap(), "v2").await;
}

#[tokio::test]
async fn routing_header_uri_and_query_matches_select_the_subset() {
    let net = 11;
    start_backends(net).await;
    let by_header = pb::RouteMatch {
        headers: BTreeMap::from([("end-user".to_owned(), exact("jason"))]),
        ..Default::default()
    };
    let by_uri = pb::RouteMatch {
        uri: Some(prefix("/v2/")),
        ..Default::default()
    };
    let by_query = pb::RouteMatch {
        query_params: BTreeMap::from([("canary".to_owned(), regex("yes|true"))]),
        ..Default::default()
    };
    let routes = vec![
        forward(
            vec![by_header, by_uri, by_query],
            &[(&cname("reviews", 9080, "v2"), 100)],
        ),
        forward(vec![], &[(&cname("reviews", 9080, "v1"), 100)]),
    ];
    let (_ctl, proxy) = mesh_of_one(net, reviews_two_versions(net, routes)).await;
    let out = proxy.outbound();

    let plain = send(out, get("/x", "reviews:9080")).await.unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("x-backend"), "v1");

    let mut jason = get("/x", "reviews:9080");
    jason
        .headers_mut()
        .insert("end-user", "jason".parse().unwrap());
    assert_eq!(send(out, jason).await.unwrap().header("x-backend"), "v2");

    let mut bob = get("/x", "reviews:9080");
    bob.headers_mut().insert("end-user", "bob".parse().unwrap());
    assert_eq!(send(out, bob).await.unwrap().header("x-backend"), "v1");

    assert_eq!(
        send(out, get("/v2/items", "reviews:9080"))
            .await
            .unwrap()
            .header("x-backend"),
        "v2"
    );
    assert_eq!(
        send(out, get("/x?canary=yes", "reviews:9080"))
            .await
            .unwrap()
            .header("x-backend"),
        "v2"
    );
    assert_eq!(
        send(out, get("/x?canary=yesplease", "reviews:9080"))
            .await
            .unwrap()
            .header("x-backend"),
        "v1"
    );

    // Absolute-form request (explicit proxy) and the short name without a port.
    let absolute = http::Request::builder()
        .uri("http://reviews.default:9080/abs")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let got = send(out, absolute).await.unwrap();
    assert_eq!(got.header("x-backend"), "v1");
    assert_eq!(got.header("x-seen-path"), "/abs");
    assert_eq!(
        send(out, get("/x", "reviews"))
            .await
            .unwrap()
            .header("x-backend"),
        "v1"
    );

    // Unknown host: 404 from the proxy itself.
    let unknown = send(out, get("/x", "ratings:9080")).await.unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("x-backend"), "");
}

#[tokio::test]
async fn routing_weighted_split_follows_the_weights() {
    let net = 12;
    start_backends(net).await;
    let routes = vec![forward(
        vec![],
        &[
            (&cname("reviews", 9080, "v1"), 75),
            (&cname("reviews", 9080, "v2"), 25),
        ],
    )];
    let (_ctl, proxy) = mesh_of_one(net, reviews_two_versions(net, routes)).await;
    let mut v2 = 0;
    let n = 400;
    for _ in 0..n {
        let got = send(proxy.outbound(), get("/", "reviews:9080"))
            .await
            .unwrap();
        assert_eq!(got.status, 200);
        if got.header("x-backend") == "v2" {
            v2 += 1;
        }
    }
    let share = f64::from(v2) / f64::from(n);
    assert!((share - 0.25).abs() < 0.07, "v2 share {share}");
}

#[tokio::test]
async fn routing_rewrite_redirect_direct_response_and_header_ops_apply() {
    let net = 13;
    start_backends(net).await;
    let mut rewrite = forward(
        vec![pb::RouteMatch {
            uri: Some(prefix("/old/")),
            ..Default::default()
        }],
        &[(&cname("reviews", 9080, "v1"), 100)],
    );
    rewrite.rewrite = Some(pb::Rewrite {
        uri: "/new/".to_owned(),
        authority: "reviews.internal".to_owned(),
        ..Default::default()
    });
    rewrite.request_headers = Some(pb::HeaderOps {
        set: BTreeMap::from([("x-route".to_owned(), "rewrite".to_owned())]),
        add: BTreeMap::new(),
        remove: vec!["x-drop-me".to_owned()],
    });
    rewrite.response_headers = Some(pb::HeaderOps {
        set: BTreeMap::from([("x-answered-by".to_owned(), "sluice".to_owned())]),
        add: BTreeMap::new(),
        remove: vec!["x-seen-version".to_owned()],
    });
    let redirect = pb::Route {
        matches: vec![pb::RouteMatch {
            uri: Some(exact("/moved")),
            ..Default::default()
        }],
        action: Some(pb::route::Action::Redirect(pb::Redirect {
            uri: "/here".to_owned(),
            authority: "ratings".to_owned(),
            port: 9090,
            ..Default::default()
        })),
        ..Default::default()
    };
    let direct = pb::Route {
        matches: vec![pb::RouteMatch {
            uri: Some(exact("/teapot")),
            ..Default::default()
        }],
        action: Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: 418,
            body: b"short and stout".to_vec(),
        })),
        ..Default::default()
    };
    let mut regex_rewrite = forward(
        vec![pb::RouteMatch {
            uri: Some(regex("/items/[0-9]+")),
            ..Default::default()
        }],
        &[(&cname("reviews", 9080, "v2"), 100)],
    );
    regex_rewrite.rewrite = Some(pb::Rewrite {
        uri_regex: Some(pb::RegexRewrite {
            pattern: "^/items/([0-9]+)$".to_owned(),
            substitution: "/item?id=${1}".to_owned(),
        }),
        ..Default::default()
    });
    let routes = vec![rewrite, redirect, direct, regex_rewrite];
    let (_ctl, proxy) = mesh_of_one(net, reviews_two_versions(net, routes)).await;
    let out = proxy.outbound();

    let mut req = get("/old/page?q=1", "reviews:9080");
    req.headers_mut().insert("x-drop-me", "1".parse().unwrap());
    let got = send(out, req).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-seen-path"), "/new/page?q=1");
    assert_eq!(got.header("x-seen-host"), "reviews.internal");
    assert!(got.body.contains("x-route: rewrite"), "{}", got.body);
    assert!(!got.body.contains("x-drop-me"), "{}", got.body);
    assert!(got.body.contains("x-request-id: "), "{}", got.body);
    assert!(got.body.contains("x-forwarded-proto: http"), "{}", got.body);
    assert_eq!(got.header("x-answered-by"), "sluice");
    assert_eq!(got.header("x-seen-version"), "");

    let moved = send(out, get("/moved", "reviews:9080")).await.unwrap();
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), "http://ratings:9090/here");

    let teapot = send(out, get("/teapot", "reviews:9080")).await.unwrap();
    assert_eq!(teapot.status, 418);
    assert_eq!(teapot.body, "short and stout");

    let items = send(out, get("/items/42", "reviews:9080")).await.unwrap();
    assert_eq!(items.header("x-backend"), "v2");
    assert_eq!(items.header("x-seen-path"), "/item?id=42");

    // Matched nothing: 404.
    let none = send(out, get("/elsewhere", "reviews:9080")).await.unwrap();
    assert_eq!(none.status, 404);
}

#[tokio::test]
async fn routing_unreachable_or_empty_cluster_answers_503() {
    let net = 14;
    // No backend listens on .11; .12's cluster has no endpoints.
    let mut config = reviews_two_versions(
        net,
        vec![
            forward(
                vec![pb::RouteMatch {
                    uri: Some(prefix("/empty")),
                    ..Default::default()
                }],
                &[(&cname("reviews", 9080, "v2"), 1)],
            ),
            forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)]),
        ],
    );
    config.clusters[1].endpoints.clear();
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let refused = send(proxy.outbound(), get("/x", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(refused.status, 503);
    let empty = send(proxy.outbound(), get("/empty", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(empty.status, 503);
    assert_eq!(
        proxy
            .metric("istio_requests_total", &[("response_flags", "UF")])
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric("istio_requests_total", &[("response_flags", "UH")])
            .await,
        1.0
    );
}

fn with_origin(
    mut req: http::Request<http_body_util::Full<bytes::Bytes>>,
    method: &str,
    pairs: &[(&str, &str)],
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    *req.method_mut() = method.parse().unwrap();
    for (k, v) in pairs {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    req
}

#[tokio::test]
async fn routing_cors_policy_answers_preflights_and_decorates_allowed_origins() {
    let net = 142;
    let seen = recording_backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    backend(format!("127.0.{net}.12:9080").parse().unwrap(), "v2").await;
    let mut shop = forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)]);
    shop.cors = Some(pb::CorsPolicy {
        allow_origins: vec![
            exact("https://shop.example"),
            regex(r"https://.*\.partner\.example"),
        ],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["x-custom".into()],
        expose_headers: vec!["x-total".into()],
        max_age_s: Some(600),
        allow_credentials: true,
        ignore_unmatched_preflights: false,
    });
    let (_ctl, proxy) = mesh_of_one(net, reviews_two_versions(net, vec![shop])).await;
    let at = proxy.outbound();

    // A preflight from an allowed origin is answered by the sidecar.
    let preflight = [
        ("origin", "https://shop.example"),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "x-custom"),
    ];
    let got = send(
        at,
        with_origin(get("/cart", "reviews:9080"), "OPTIONS", &preflight),
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("access-control-allow-origin"),
        "https://shop.example"
    );
    assert_eq!(got.header("access-control-allow-methods"), "GET,POST");
    assert_eq!(got.header("access-control-allow-headers"), "x-custom");
    assert_eq!(got.header("access-control-max-age"), "600");
    assert_eq!(got.header("access-control-allow-credentials"), "true");
    assert!(
        seen.lock().unwrap().is_empty(),
        "the preflight reached the app"
    );

    // The actual request goes to the app; its answer names the origin.
    let partner = [("origin", "https://eu.partner.example")];
    let got = send(
        at,
        with_origin(get("/cart", "reviews:9080"), "POST", &partner),
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200);
    assert!(
        got.body.contains("origin: https://eu.partner.example"),
        "{}",
        got.body
    );
    assert_eq!(
        got.header("access-control-allow-origin"),
        "https://eu.partner.example"
    );
    assert_eq!(got.header("access-control-expose-headers"), "x-total");
    assert_eq!(got.header("access-control-allow-credentials"), "true");

    // Another origin: served, without CORS headers; its preflight is forwarded.
    let other = [("origin", "https://evil.example")];
    let got = send(at, with_origin(get("/cart", "reviews:9080"), "GET", &other))
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.header("access-control-allow-origin"), "");
    let other_preflight = [
        ("origin", "https://evil.example"),
        ("access-control-request-method", "DELETE"),
    ];
    let got = send(
        at,
        with_origin(get("/cart", "reviews:9080"), "OPTIONS", &other_preflight),
    )
    .await
    .unwrap();
    assert_eq!(got.header("access-control-allow-origin"), "");
    assert!(
        got.body.contains("access-control-request-method: DELETE"),
        "{}",
        got.body
    );
    assert_eq!(seen.lock().unwrap().len(), 3);

    let cors = "sluice_cors_requests_total";
    for (outcome, n) in [
        ("preflight", 1.0),
        ("allowed", 1.0),
        ("origin_not_allowed", 1.0),
        ("preflight_forwarded", 1.0),
    ] {
        assert_eq!(
            proxy.metric(cors, &[("outcome", outcome)]).await,
            n,
            "{outcome}"
        );
    }
    // The preflight answer is reported like the others (when its body ends).
    let answered = [
        ("response_code", "200"),
        ("destination_service_name", "reviews"),
    ];
    let mut reported = 0.0;
    for _ in 0..50 {
        reported = proxy.metric("istio_requests_total", &answered).await;
        if reported == 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(reported, 4.0);
}
