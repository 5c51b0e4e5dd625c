//! WebSocket upgrades through two real sidecars over mutual TLS, with a real
//! WebSocket client and server (tokio-tungstenite): the upgrade is routed and
//! authorized like any request, then bytes flow both ways until a side closes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use sluice_api::config as pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use crate::harness::*;
use crate::security::{credential_dirs, inbound_port, meta, proxy_v2};

const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/productpage";
const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/chat";

fn addr(net: u8, host: u8, port: u16) -> SocketAddr {
    format!("127.0.{net}.{host}:{port}").parse().unwrap()
}

/// A WebSocket echo app on `addr`: answers `/closed` with 403 before the
/// handshake, echoes every other connection's messages, and reports each
/// handshake's path and `x-forwarded-client-cert` on `seen`.
async fn chat_app(addr: SocketAddr, seen: mpsc::UnboundedSender<(String, String)>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                // The signature tungstenite's handshake callback asks for.
                #[allow(clippy::result_large_err)]
                let look = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                    let xfcc = req
                        .headers()
                        .get("x-forwarded-client-cert")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let _ = seen.send((req.uri().path().to_owned(), xfcc));
                    if req.uri().path() == "/closed" {
                        let mut no = ErrorResponse::new(Some("no chat here".to_owned()));
                        *no.status_mut() =
                            tokio_tungstenite::tungstenite::http::StatusCode::FORBIDDEN;
                        return Err(no);
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, look).await else {
                    return;
                };
                // A close is answered by the library on the next poll; the
                // loop ends when the client's side is gone.
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// `chat` on 9080 (HTTP) and 9081 (HTTP/2 between the sidecars and to the
/// app: an upgrade must still go over HTTP/1.1).
fn client_config(net: u8) -> pb::ProxyConfig {
    let sidecar = |port| pb::Endpoint {
        sidecar: true,
        ..endpoint(addr(net, 2, port), "chat-v1", "v1")
    };
    let http = cluster("chat", 9080, "", vec![sidecar(9080)]);
    let mut h2 = cluster("chat", 9081, "", vec![sidecar(9081)]);
    h2.protocol = pb::Protocol::Http2 as i32;
    let mut h2_host = vhost(
        "chat",
        9081,
        vec![forward(vec![], &[(&cname("chat", 9081, ""), 1)])],
    );
    h2_host.protocol = pb::Protocol::Http2 as i32;
    pb::ProxyConfig {
        virtual_hosts: vec![
            vhost(
                "chat",
                9080,
                vec![forward(vec![], &[(&cname("chat", 9080, ""), 1)])],
            ),
            h2_host,
        ],
        clusters: vec![http, h2],
        self_: Some(meta("productpage-v1", "productpage", "productpage")),
        ..Default::default()
    }
}

/// `mode` mTLS, and a DENY policy for `/private*`.
fn server_config(mode: pb::MtlsMode) -> pb::ProxyConfig {
    let deny = pb::AuthorizationPolicy {
        name: "default/no-private".to_owned(),
        action: pb::authorization_policy::Action::Deny as i32,
        dry_run: false,
        rules: vec![pb::AuthorizationRule {
            to: vec![pb::OperationMatch {
                paths: vec!["/private*".to_owned()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    pb::ProxyConfig {
        inbound: Some(pb::Inbound {
            ports: vec![
                inbound_port(9080, pb::Protocol::Http, "chat"),
                inbound_port(9081, pb::Protocol::Http2, "chat"),
            ],
            rate_limits: vec![],
            security: Some(pb::InboundSecurity {
                mtls: mode as i32,
                policies: vec![deny],
                ..Default::default()
            }),
        }),
        self_: Some(meta("chat-v1", "chat", "chat")),
        ..Default::default()
    }
}

struct Chat {
    ctl: (Controller, Controller),
    client: Proxy,
    server: Proxy,
    seen: mpsc::UnboundedReceiver<(String, String)>,
}

async fn chat_mesh(net: u8, mode: pb::MtlsMode) -> Chat {
    let (tx, seen) = mpsc::unbounded_channel();
    chat_app(addr(net, 2, 9080), tx.clone()).await;
    chat_app(addr(net, 2, 9081), tx).await;
    let dirs = credential_dirs(net, &[CLIENT_ID, SERVER_ID]);
    let client_ctl = Controller::start(addr(net, 250, 15010)).await;
    let server_ctl = Controller::start(addr(net, 251, 15010)).await;
    let start = |host: u8, ctl: SocketAddr, workload: &'static str, dir: &PathBuf| {
        let dir = dir.to_string_lossy().into_owned();
        async move {
            let args = ["--credentials-dir", dir.as_str()];
            let ip = format!("127.0.{net}.{host}");
            Proxy::start_with(&ip, ctl, workload, &[], &args).await
        }
    };
    let client = start(1, client_ctl.addr, "productpage", &dirs[0]).await;
    let server = start(2, server_ctl.addr, "chat", &dirs[1]).await;
    client_ctl.publish("1", client_config(net));
    server_ctl.publish("1", server_config(mode));
    assert_eq!(client_ctl.reply("1").await, Reply::Ack);
    assert_eq!(server_ctl.reply("1").await, Reply::Ack);
    Chat {
        ctl: (client_ctl, server_ctl),
        client,
        server,
        seen,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens `url` through the client sidecar (explicit-proxy mode: the request
/// names the service in `Host`).
async fn open(chat: &Chat, url: &str) -> Result<(Ws, u16), tokio_tungstenite::tungstenite::Error> {
    let stream = TcpStream::connect(chat.client.outbound()).await.unwrap();
    let handshake = tokio_tungstenite::client_async(url, stream);
    let (ws, resp) = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .expect("handshake within 10 s")?;
    Ok((ws, resp.status().as_u16()))
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an echo within 10 s")
        .expect("stream open")
        .expect("a message")
}

/// The status of a refused handshake.
fn refused_status(e: tokio_tungstenite::tungstenite::Error) -> u16 {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP answer, got {other}"),
    }
}

#[tokio::test]
async fn websocket_upgrades_through_two_sidecars_over_mtls_both_ways() {
    let mut chat = chat_mesh(141, pb::MtlsMode::Strict).await;
    // Credentials are read shortly after start: wait for the mTLS hop.
    let mut opened = None;
    for _ in 0..100 {
        if let Ok(ok) = open(&chat, "ws://chat:9080/room").await {
            let (_, xfcc) = chat.seen.recv().await.unwrap();
            if xfcc.contains(CLIENT_ID) {
                opened = Some(ok);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut ws, status) = opened.expect("a WebSocket over mTLS");
    assert_eq!(status, 101);

    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    // Larger than any buffer on the way, in both directions at once.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    ws.send(Message::text("after")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));
    assert_eq!(next(&mut ws).await, Message::text("after"));

    // Open: one upgraded connection on each side, reported as a 101 request.
    let upgraded = [("outcome", "upgraded")];
    chat.client
        .metric_reaches("sluice_http_upgrades_total", &upgraded, 1.0)
        .await;
    chat.server
        .metric_reaches("sluice_http_upgrades_total", &upgraded, 1.0)
        .await;
    let active = "sluice_http_upgrades_active";
    assert_eq!(
        chat.client.metric(active, &[("reporter", "source")]).await,
        1.0
    );
    assert_eq!(
        chat.server
            .metric(active, &[("reporter", "destination")])
            .await,
        1.0
    );
    let code_101 = [("response_code", "101"), ("reporter", "source")];
    assert_eq!(
        chat.client.metric("istio_requests_total", &code_101).await,
        1.0
    );

    // A close ends both relays and counts their bytes.
    ws.close(None).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {}
    drop(ws);
    chat.client.metric_reaches(active, &[], 0.0).await;
    chat.server.metric_reaches(active, &[], 0.0).await;
    let bytes = "sluice_http_upgraded_bytes_total";
    for (proxy, reporter) in [(&chat.client, "source"), (&chat.server, "destination")] {
        for direction in ["received", "sent"] {
            let n = proxy
                .metric(bytes, &[("reporter", reporter), ("direction", direction)])
                .await;
            assert!(n > 300_000.0, "{reporter} {direction}: {n} bytes");
        }
    }

    // HTTP/2 between the sidecars and to the app: the upgrade still goes as HTTP/1.1.
    let (mut ws, status) = open(&chat, "ws://chat:9081/room").await.unwrap();
    assert_eq!(status, 101);
    ws.send(Message::text("over h2 ports")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("over h2 ports"));
    chat.client
        .metric_reaches("sluice_http_upgrades_total", &upgraded, 2.0)
        .await;
}

#[tokio::test]
async fn websocket_refusals_reach_the_client_and_a_deny_policy_applies_to_the_upgrade() {
    let mut chat = chat_mesh(143, pb::MtlsMode::Strict).await;
    let upgrades = "sluice_http_upgrades_total";
    let refused = [("outcome", "refused")];
    // The app declines the handshake: its 403 reaches the client unchanged.
    // (Until the credentials are read, the STRICT server sidecar answers 503:
    // also a refused upgrade for the client sidecar.)
    let mut status = 0;
    for _ in 0..100 {
        match open(&chat, "ws://chat:9080/closed").await {
            Err(e) => {
                status = refused_status(e);
                if status == 403 {
                    let (path, xfcc) = chat.seen.recv().await.unwrap();
                    assert_eq!(path, "/closed");
                    assert!(xfcc.contains(CLIENT_ID), "{xfcc}");
                    break;
                }
            }
            Ok(_) => panic!("/closed was upgraded"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 403);
    chat.server.metric_reaches(upgrades, &refused, 1.0).await;
    let before = chat.client.metric(upgrades, &refused).await;
    assert!(before >= 1.0);

    // The server sidecar's DENY policy stops the upgrade before the app sees it.
    let err = open(&chat, "ws://chat:9080/private/room")
        .await
        .unwrap_err();
    assert_eq!(refused_status(err), 403);
    chat.client
        .metric_reaches(upgrades, &refused, before + 1.0)
        .await;
    let denied = [("decision", "deny")];
    let decisions = "sluice_authorization_decisions_total";
    assert_eq!(chat.server.metric(decisions, &denied).await, 1.0);
    assert_eq!(chat.server.metric(upgrades, &refused).await, 1.0);
    assert!(
        chat.seen.try_recv().is_err(),
        "the app saw a denied upgrade"
    );

    let upgraded = [("outcome", "upgraded")];
    assert_eq!(chat.client.metric(upgrades, &upgraded).await, 0.0);
    assert_eq!(chat.server.metric(upgrades, &upgraded).await, 0.0);
}

#[tokio::test]
async fn websocket_plaintext_upgrade_is_closed_when_its_port_turns_strict() {
    let net = 144;
    let chat = chat_mesh(net, pb::MtlsMode::Permissive).await;
    // A plaintext caller without a sidecar, straight to the server's inbound.
    let mut stream = TcpStream::connect(chat.server.inbound()).await.unwrap();
    let header = proxy_v2(addr(net, 9, 40000), addr(net, 2, 9080));
    tokio::io::AsyncWriteExt::write_all(&mut stream, &header)
        .await
        .unwrap();
    let handshake = tokio_tungstenite::client_async("ws://chat:9080/room", stream);
    let (mut ws, resp) = tokio::time::timeout(Duration::from_secs(10), handshake)
        .await
        .expect("handshake within 10 s")
        .expect("a plaintext upgrade on a PERMISSIVE port");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("before"));
    let active = [("reporter", "destination")];
    chat.server
        .metric_reaches("sluice_http_upgrades_active", &active, 1.0)
        .await;

    // The port turns STRICT: the upgraded stream ends with the HTTP
    // connection it came from, as a plaintext TCP relay does.
    let server_ctl = &chat.ctl.1;
    server_ctl.publish("2", server_config(pb::MtlsMode::Strict));
    assert_eq!(server_ctl.reply("2").await, Reply::Ack);
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = ws.send(Message::text("after")).await;
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(m)) if m.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "plaintext WebSocket still open under STRICT");
    chat.server
        .metric_reaches("sluice_http_upgrades_active", &active, 0.0)
        .await;
}
