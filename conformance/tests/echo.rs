//! Runs the real `sluice-echo` binary and talks to it over real sockets with the runner's client.
use bytes::Bytes;
use sluice_conformance::client::{self, Call, Via};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn start_echo(protocol: &str) -> (Child, SocketAddr, SocketAddr) {
    let (app, control) = (free_addr(), free_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_sluice-echo"))
        .args([
            "--addr",
            &app.to_string(),
            "--service",
            "reviews",
            "--version",
            "v2",
        ])
        .args([
            "--instance",
            "1",
            "--namespace",
            "shop",
            "--protocol",
            protocol,
        ])
        .args(["--control-addr", &control.to_string()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(control).await.is_err() {
        assert!(Instant::now() < deadline, "echo did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (child, app, control)
}

fn call(via: Via, url: &str) -> Call {
    Call {
        via,
        url: url.into(),
        method: "GET".into(),
        headers: vec![("x-test".into(), "yes".into())],
        body: Bytes::new(),
        h2: false,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn echo_http_reports_identity_path_and_host() {
    let (_child, app, _) = start_echo("http").await;
    // Absolute-form as an explicit proxy would receive it.
    let o = client::send(&call(
        Via::Outbound(app),
        "http://reviews.shop:9080/some/path?q=1",
    ))
    .await;
    assert_eq!(o.status, Some(200), "{o:?}");
    assert_eq!(o.version(), Some("v2"));
    assert_eq!(o.instance().as_deref(), Some("reviews/v2/1"));
    assert_eq!(o.headers["x-echo-namespace"], "shop");
    assert_eq!(o.headers["x-echo-path"], "/some/path?q=1");
    assert_eq!(o.headers["x-echo-host"], "reviews.shop:9080");
    let body: serde_json::Value = serde_json::from_slice(&o.body).unwrap();
    assert_eq!(body["path"], "/some/path");
    assert_eq!(body["query"], "q=1");
    assert_eq!(body["headers"]["x-test"], "yes");
}

#[tokio::test]
async fn echo_httpbin_paths_over_http1_and_h2c() {
    let (_child, app, _) = start_echo("http").await;
    for h2 in [false, true] {
        let mut c = call(Via::Inbound(app), "http://reviews:9080/status/418");
        c.h2 = h2;
        assert_eq!(client::send(&c).await.status, Some(418));
        c.url = "http://reviews:9080/headers".into();
        let o = client::send(&c).await;
        let body: serde_json::Value = serde_json::from_slice(&o.body).unwrap();
        assert_eq!(body["headers"]["x-test"], "yes", "h2={h2}");
        assert_eq!(body["canonicalHeaders"]["X-Test"], "yes", "h2={h2}");
        c.url = "http://reviews:9080/bytes/100".into();
        assert_eq!(client::send(&c).await.body.len(), 100);
        c.url = "http://reviews:9080/delay/0.3".into();
        let o = client::send(&c).await;
        assert!(o.latency >= Duration::from_millis(300), "{o:?}");
    }
    let mut c = call(Via::Inbound(app), "http://reviews:9080/post");
    c.method = "POST".into();
    c.body = Bytes::from_static(b"hello");
    let body: serde_json::Value = serde_json::from_slice(&client::send(&c).await.body).unwrap();
    assert_eq!(body["data"], "hello");
}

#[tokio::test]
async fn echo_grpc_answers_with_trailers_status() {
    let (_child, app, _) = start_echo("grpc").await;
    let mut c = call(Via::Inbound(app), "http://reviews:9080/echo.Echo/Say");
    c.h2 = true;
    c.method = "POST".into();
    c.headers
        .push(("content-type".into(), "application/grpc".into()));
    c.body = Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]);
    let o = client::send(&c).await;
    assert_eq!(o.status, Some(200));
    assert_eq!(o.headers["content-type"], "application/grpc");
    assert_eq!(&o.body[..], &[0, 0, 0, 0, 2, 8, 1]);
}

#[tokio::test]
async fn echo_behave_forces_status_and_delay_then_resets() {
    let (_child, app, control) = start_echo("http").await;
    let r = client::http_post_json(
        control,
        "/behave",
        r#"{"status": 503, "delayMs": 200}"#.into(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let o = client::send(&call(Via::Inbound(app), "http://reviews/x")).await;
    assert_eq!(o.status, Some(503));
    assert_eq!(o.version(), Some("v2"));
    assert!(o.latency >= Duration::from_millis(200));
    client::http_post_json(control, "/behave", r#"{"status": null}"#.into())
        .await
        .unwrap();
    assert_eq!(
        client::send(&call(Via::Inbound(app), "http://reviews/x"))
            .await
            .status,
        Some(200)
    );
    let bad = client::http_post_json(control, "/behave", r#"{"stauts": 1}"#.into())
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn echo_tcp_prefixes_identity_once_then_echoes() {
    let (_child, app, control) = start_echo("tcp").await;
    let mut s = tokio::net::TcpStream::connect(app).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    s.write_all(b"pong").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "reviews/v2/1\npingpong");
    // A forced status makes the TCP echo refuse to answer.
    client::http_post_json(control, "/behave", r#"{"status": 503}"#.into())
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(app).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn client_host_header_overrides_url_authority() {
    let (_child, app, _) = start_echo("http").await;
    for (via, h2) in [
        (Via::Outbound(app), false),
        (Via::Inbound(app), false),
        (Via::Inbound(app), true),
    ] {
        let mut c = call(via, "http://reviews:9080/p");
        c.h2 = h2;
        c.headers.push(("Host".into(), "other.example:81".into()));
        let o = client::send(&c).await;
        assert_eq!(
            o.headers["x-echo-host"], "other.example:81",
            "{via:?} h2={h2}"
        );
        let body: serde_json::Value = serde_json::from_slice(&o.body).unwrap();
        assert!(body["headers"].get("x-test").is_some());
    }
}

#[tokio::test]
async fn echo_behave_grpc_status_answers_trailers_only_then_resets() {
    let (_child, app, control) = start_echo("grpc").await;
    let mut c = call(
        Via::Inbound(app),
        "http://reviews:50051/helloworld.Greeter/SayHello",
    );
    c.h2 = true;
    c.method = "POST".into();
    c.headers
        .push(("content-type".into(), "application/grpc".into()));
    c.body = Bytes::from_static(&[0, 0, 0, 0, 0]);
    let r = client::http_post_json(control, "/behave", r#"{"grpcStatus": 14}"#.into())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let o = client::send(&c).await;
    assert_eq!(o.status, Some(200));
    assert_eq!(o.headers["grpc-status"], "14");
    assert_eq!(o.version(), Some("v2"));
    assert!(o.body.is_empty());
    client::http_post_json(control, "/behave", r#"{"grpcStatus": null}"#.into())
        .await
        .unwrap();
    let o = client::send(&c).await;
    assert_eq!(o.status, Some(200));
    assert!(o.headers.get("grpc-status").is_none());
    assert_eq!(&o.body[..], &[0, 0, 0, 0, 0]);
}
