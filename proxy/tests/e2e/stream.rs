//! The config stream: hello, readiness, ACK/NACK (keeping the last good config)
//! and reconnecting to a restarted controller.

use std::collections::BTreeMap;

use sluice_api::config as pb;

use crate::harness::*;

fn config(net: u8, header_regex: &str) -> pb::ProxyConfig {
    let addr = format!("127.0.{net}.11:9080").parse().unwrap();
    let m = pb::RouteMatch {
        headers: BTreeMap::from([("x".to_owned(), regex(header_regex))]),
        ..Default::default()
    };
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![
                forward(vec![m], &[(&cname("reviews", 9080, "v1"), 1)]),
                forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)]),
            ],
        )],
        clusters: vec![cluster(
            "reviews",
            9080,
            "v1",
            vec![endpoint(addr, "reviews-v1", "v1")],
        )],
        ..Default::default()
    }
}

#[tokio::test]
async fn stream_nack_keeps_last_good_config_and_readiness_follows_first_ack() {
    let net = 17;
    backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    let addr = format!("127.0.{net}.250:15010").parse().unwrap();
    let ctl = Controller::start(addr).await;
    let proxy = Proxy::start(
        &format!("127.0.{net}.1"),
        ctl.addr,
        "client",
        &["app=client", "version=v3"],
    )
    .await;

    // Before any snapshot: not ready, nothing routed.
    let before = send(proxy.health(), get("/healthz/ready", "health"))
        .await
        .unwrap();
    assert_eq!(before.status, 503);
    assert_eq!(
        send(proxy.outbound(), get("/", "reviews:9080"))
            .await
            .unwrap()
            .status,
        503
    );

    ctl.publish("1", config(net, "a+"));
    assert_eq!(ctl.reply("1").await, Reply::Ack);
    let hello = ctl.hello().expect("hello");
    assert_eq!(hello.workload, "client");
    assert_eq!(hello.labels.get("version").map(String::as_str), Some("v3"));
    assert_eq!(hello.ips, vec![format!("127.0.{net}.1")]);
    assert_eq!(
        send(proxy.health(), get("/healthz/ready", "health"))
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        send(proxy.outbound(), get("/", "reviews:9080"))
            .await
            .unwrap()
            .status,
        200
    );

    // A bad regex is refused with an error naming the item; version 1 keeps serving.
    ctl.publish("2", config(net, "(unclosed"));
    match ctl.reply("2").await {
        Reply::Nack(e) => {
            assert!(
                e.contains("route reviews.default.svc.cluster.local:9080 #0 match[0] header \"x\""),
                "{e}"
            );
            assert!(e.contains("bad regex"), "{e}");
        }
        Reply::Ack => panic!("bad regex was accepted"),
    }
    assert_eq!(
        send(proxy.outbound(), get("/", "reviews:9080"))
            .await
            .unwrap()
            .status,
        200
    );
    let dump = send(proxy.admin(), get("/config_dump", "admin"))
        .await
        .unwrap();
    assert!(dump.body.contains("\"version\": \"1\""), "{}", dump.body);
    assert_eq!(
        proxy
            .metric("sluice_config_updates_total", &[("outcome", "nack")])
            .await,
        1.0
    );
    assert_eq!(
        proxy
            .metric("sluice_config_updates_total", &[("outcome", "ack")])
            .await,
        1.0
    );
    assert_eq!(proxy.metric("sluice_config_connected", &[]).await, 1.0);

    // The controller goes away: the proxy keeps routing, then reconnects to a new one.
    ctl.stop();
    drop(ctl);
    assert_eq!(
        send(proxy.outbound(), get("/", "reviews:9080"))
            .await
            .unwrap()
            .status,
        200
    );
    let ctl = Controller::start(addr).await;
    ctl.publish("3", config(net, "b+"));
    assert_eq!(ctl.reply("3").await, Reply::Ack);
    assert_eq!(
        send(proxy.outbound(), get("/", "reviews:9080"))
            .await
            .unwrap()
            .status,
        200
    );
}
