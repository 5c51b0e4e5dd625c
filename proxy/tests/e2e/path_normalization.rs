//! Request path normalization (Istio's default `BASE`) on both listeners:
//! a DENY on `/admin` cannot be bypassed with dot segments or percent-encoded
//! letters, routes match the normalized path, the app receives it, and `%00`
//! gets Envoy's 400.

use std::net::SocketAddr;

use sluice_api::config as pb;

use crate::harness::*;

fn addr(net: u8, host: u8) -> SocketAddr {
    format!("127.0.{net}.{host}:9080").parse().unwrap()
}

/// The reviews sidecar: inbound port 9080 (plaintext allowed) with a DENY on
/// `/admin` and everything under it.
fn deny_admin_config() -> pb::ProxyConfig {
    let deny = pb::AuthorizationPolicy {
        name: "default/deny-admin".to_owned(),
        action: pb::authorization_policy::Action::Deny as i32,
        dry_run: false,
        rules: vec![pb::AuthorizationRule {
            to: vec![pb::OperationMatch {
                paths: vec!["/admin".to_owned(), "/admin/*".to_owned()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            ports: vec![pb::InboundPort {
                target_port: 9080,
                service_port: 9080,
                protocol: pb::Protocol::Http as i32,
                service: "reviews.default.svc.cluster.local".to_owned(),
                service_name: "reviews".to_owned(),
                service_namespace: "default".to_owned(),
                app_port: 0,
            }],
            rate_limits: vec![],
            security: Some(pb::InboundSecurity {
                mtls: pb::MtlsMode::Permissive as i32,
                policies: vec![deny],
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn path_normalization_inbound_deny_not_bypassed_and_app_sees_normalized_path() {
    let net = 87;
    let seen = recording_backend(addr(net, 1), "reviews-app").await;
    let (_ctl, proxy) = mesh_of_one(net, deny_admin_config()).await;
    let inbound = proxy.inbound();

    for path in [
        "/admin/users",
        "/public/../admin/users",
        "/%61dmin/users",
        "/%61dmin",
        "/public/%2e%2e/admin",
        "/public/..\\admin/users",
        "/./admin/./users",
    ] {
        let got = send(inbound, get(path, "reviews:9080")).await.unwrap();
        assert_eq!(got.status, 403, "{path}: {}", got.body);
        assert_eq!(got.body, "RBAC: access denied", "{path}");
    }

    for (sent, received) in [
        ("/public/./docs/../x?q=/../y", "/public/x?q=/../y"),
        ("/%61pi/%7Euser/%2Fkept", "/api/~user/%2Fkept"),
        ("/administrator/../public", "/public"),
    ] {
        let got = send(inbound, get(sent, "reviews:9080")).await.unwrap();
        assert_eq!(got.status, 200, "{sent}: {}", got.body);
        assert_eq!(got.header("x-seen-path"), received, "{sent}");
    }

    let nul = send(inbound, get("/public/a%00b", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(nul.status, 400);
    assert_eq!(nul.body, "", "Envoy's 400 has no body");

    let reached: Vec<String> = seen.lock().unwrap().clone();
    assert_eq!(
        reached.len(),
        3,
        "only the allowed requests reach the app: {reached:?}"
    );
    assert!(
        reached
            .iter()
            .all(|r| !r.contains("admin/") && !r.contains("%00"))
    );

    let destination = |outcome| [("reporter", "destination"), ("outcome", outcome)];
    proxy
        .metric_reaches(
            "sluice_path_normalizations_total",
            &destination("normalized"),
            9.0,
        )
        .await;
    proxy
        .metric_reaches(
            "sluice_path_normalizations_total",
            &destination("rejected"),
            1.0,
        )
        .await;
    let denied = [("policy", "default/deny-admin"), ("decision", "deny")];
    proxy
        .metric_reaches("sluice_authorization_decisions_total", &denied, 7.0)
        .await;
}

#[tokio::test]
async fn path_normalization_outbound_routes_on_and_forwards_the_normalized_path() {
    let net = 88;
    let seen = recording_backend(addr(net, 11), "reviews-v1").await;
    let blocked = pb::Route {
        matches: vec![pb::RouteMatch {
            uri: Some(prefix("/admin")),
            ..Default::default()
        }],
        action: Some(pb::route::Action::DirectResponse(pb::DirectResponse {
            status: 418,
            body: b"not through here".to_vec(),
        })),
        ..Default::default()
    };
    let rest = forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)]);
    let config = pb::ProxyConfig {
        virtual_hosts: vec![vhost("reviews", 9080, vec![blocked, rest])],
        clusters: vec![cluster(
            "reviews",
            9080,
            "v1",
            vec![endpoint(addr(net, 11), "reviews-v1", "v1")],
        )],
        ..Default::default()
    };
    let (_ctl, proxy) = mesh_of_one(net, config).await;
    let out = proxy.outbound();

    for path in ["/public/../admin/x", "/%61dmin/x", "/%2e/admin"] {
        let got = send(out, get(path, "reviews:9080")).await.unwrap();
        assert_eq!(got.status, 418, "{path}: {}", got.body);
    }
    let got = send(out, get("/docs/./a/../b?x=/../1", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("x-seen-path"), "/docs/b?x=/../1");
    // The absolute form an explicit-proxy client may send.
    let got = send(out, get("http://reviews:9080/%64ocs/%2e/c", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.header("x-seen-path"), "/docs/c");

    let nul = send(out, get("/docs/%00", "reviews:9080")).await.unwrap();
    assert_eq!(nul.status, 400);
    assert_eq!(nul.body, "");
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the 400 never left the sidecar"
    );

    let source = |outcome| [("reporter", "source"), ("outcome", outcome)];
    proxy
        .metric_reaches(
            "sluice_path_normalizations_total",
            &source("normalized"),
            5.0,
        )
        .await;
    proxy
        .metric_reaches("sluice_path_normalizations_total", &source("rejected"), 1.0)
        .await;
}
