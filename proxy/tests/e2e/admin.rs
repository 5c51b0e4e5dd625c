//! Admin endpoints and robustness against malformed traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::Full;
use sluice_api::config as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

fn config(net: u8) -> pb::ProxyConfig {
    let v1 = format!("127.0.{net}.11:9080").parse().unwrap();
    let v2 = format!("127.0.{net}.12:9080").parse().unwrap();
    let jason = pb::RouteMatch {
        name: "jason".to_owned(),
        headers: BTreeMap::from([("end-user".to_owned(), exact("jason"))]),
        ..Default::default()
    };
    pb::ProxyConfig {
        virtual_hosts: vec![
            vhost(
                "reviews",
                9080,
                vec![
                    forward(vec![jason], &[(&cname("reviews", 9080, "v2"), 100)]),
                    forward(
                        vec![],
                        &[
                            (&cname("reviews", 9080, "v1"), 90),
                            (&cname("reviews", 9080, "v2"), 10),
                        ],
                    ),
                ],
            ),
            vhost(
                "ratings",
                9080,
                vec![forward(vec![], &[(&cname("reviews", 9080, "v1"), 1)])],
            ),
        ],
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

#[tokio::test]
async fn admin_debug_route_explains_mismatches_and_shares() {
    let net = 18;
    let (_ctl, proxy) = mesh_of_one(net, config(net)).await;
    let got = send(
        proxy.admin(),
        get(
            "/debug/route?host=reviews:9080&path=/x&header=end-user:bob",
            "admin",
        ),
    )
    .await
    .unwrap();
    assert_eq!(got.status, 200, "{}", got.body);
    let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(
        v["virtual_host"]["name"],
        "reviews.default.svc.cluster.local:9080"
    );
    let why = v["routes_not_matched"][0]["why_not"][0].as_str().unwrap();
    assert_eq!(
        why,
        "match[0] (\"jason\"): header \"end-user\": \"bob\" does not equal \"jason\""
    );
    assert_eq!(v["route"]["index"], 1);
    let dests = &v["action"]["forward"]["destinations"];
    assert_eq!(dests[0]["share_percent"], 90.0);
    assert_eq!(dests[1]["share_percent"], 10.0);
    assert_eq!(dests[1]["subset"], "v2");
    assert_eq!(
        dests[0]["endpoints"][0]["address"],
        format!("127.0.{net}.11:9080")
    );
    let others = v["other_virtual_hosts"][0]["why_not"].as_str().unwrap();
    assert!(others.contains("do not include \"reviews\""), "{others}");

    let missing = send(proxy.admin(), get("/debug/route?path=/x", "admin"))
        .await
        .unwrap();
    assert_eq!(missing.status, 400);
    let dump = send(proxy.admin(), get("/config_dump", "admin"))
        .await
        .unwrap();
    let dump: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    assert_eq!(dump["version"], "1");
    assert_eq!(
        dump["config"]["virtual_hosts"][0]["routes"][0]["matches"][0]["headers"][0][0],
        "end-user"
    );
}

async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn admin_malformed_traffic_is_refused_without_crashing() {
    let net = 19;
    backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    let (_ctl, mut proxy) = mesh_of_one(net, config(net)).await;
    let bad_header = raw(proxy.outbound(), b"GET /x HTTP/1.1\r\nHost reviews\r\n\r\n").await;
    assert!(bad_header.starts_with("HTTP/1.1 400"), "{bad_header:?}");
    let huge = format!(
        "GET /x HTTP/1.1\r\nHost: reviews:9080\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let too_large = raw(proxy.outbound(), huge.as_bytes()).await;
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large:?}");
    let no_host = raw(proxy.outbound(), b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        no_host.starts_with("HTTP/1.0 400") || no_host.starts_with("HTTP/1.1 400"),
        "{no_host:?}"
    );
    // Not HTTP and no original destination: closed.
    assert_eq!(
        raw(proxy.outbound(), b"\x16\x03\x01garbage\r\n\r\n").await,
        ""
    );
    // A corrupt PROXY header on the inbound listener: closed.
    let mut corrupt = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    corrupt.extend_from_slice(&[0x99, 0x11, 0xff, 0xff]);
    assert_eq!(raw(proxy.inbound(), &corrupt).await, "");
    assert!(proxy.is_running());
    let ok = send(proxy.outbound(), get("/x", "ratings:9080"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);

    // Graceful exit on request.
    let quit = http::Request::builder()
        .method("POST")
        .uri("/quitquitquit")
        .header("host", "admin")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(proxy.admin(), quit).await.unwrap().status, 200);
    assert!(
        proxy.wait_exit(Duration::from_secs(8)).await,
        "proxy did not exit"
    );
}

#[tokio::test]
async fn admin_port_answers_only_on_127_0_0_1_when_the_workload_ip_is_not_loopback() {
    // A wildcard workload address is not loopback: every listener binds it
    // except admin (config_dump, quitquitquit), which must stay on 127.0.0.1.
    // Unusual ports keep this proxy clear of the others in this suite.
    let ctl = Controller::start("127.0.43.1:15010".parse().unwrap()).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args(["--controller", &format!("http://{}", ctl.addr)])
        .args([
            "--ip",
            "0.0.0.0",
            "--id",
            "wild-0.default",
            "--workload",
            "wild",
        ])
        .args(["--outbound-port", "25101", "--inbound-port", "25106"])
        .args(["--admin-port", "25100", "--health-port", "25121"])
        .args(["--stats-port", "25190"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn sluice-proxy");
    let stats_elsewhere: std::net::SocketAddr = "127.0.43.7:25190".parse().unwrap();
    let mut up = false;
    for _ in 0..200 {
        if TcpStream::connect(stats_elsewhere).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "stats listener on the wildcard address never came up");
    let admin_local = send(
        "127.0.0.1:25100".parse().unwrap(),
        get("/config_dump", "admin"),
    )
    .await
    .expect("admin answers on 127.0.0.1");
    assert_eq!(admin_local.status, 200);
    assert!(
        TcpStream::connect("127.0.43.7:25100").await.is_err(),
        "admin must not listen on any other address"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn admin_app_probes_are_forwarded_to_the_app_over_plaintext() {
    // Injection rewrites kubelet's HTTP probes to the health port; the proxy
    // asks the app itself, so probes work under STRICT mTLS.
    let app: std::net::SocketAddr = "127.0.44.2:9080".parse().unwrap();
    backend(app, "v1").await;
    let ctl = Controller::start("127.0.44.250:15010".parse().unwrap()).await;
    let probes = r#"{"/app-health/web/readyz": {"httpGet": {"path": "/status/200", "port": 9080}},
                     "/app-health/web/livez": {"httpGet": {"path": "/x", "port": 9081}}}"#;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-proxy"))
        .args(["--controller", &format!("http://{}", ctl.addr)])
        .args([
            "--ip",
            "127.0.44.2",
            "--id",
            "web-0.default",
            "--workload",
            "web",
        ])
        .env("SLUICE_APP_PROBES", probes)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn sluice-proxy");
    let health: std::net::SocketAddr = "127.0.44.2:15021".parse().unwrap();
    let mut ready = None;
    for _ in 0..200 {
        if let Ok(r) = send(health, get("/app-health/web/readyz", "probe")).await {
            ready = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let ready = ready.expect("health port never answered");
    assert_eq!(ready.status, 200, "{}", ready.body);
    // Nothing listens on 9081: the probe fails as kubelet would see it.
    let live = send(health, get("/app-health/web/livez", "probe"))
        .await
        .unwrap();
    assert_eq!(live.status, 503, "{}", live.body);
    let unknown = send(health, get("/app-health/other/livez", "probe"))
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    let _ = child.kill();
    let _ = child.wait();
}
