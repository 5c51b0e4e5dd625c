//! HTTP/2 abuse (rapid reset, stream floods) and clients that vanish
//! mid-request, against the outbound listener.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::start;
use crate::harness::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const REFUSED_STREAM: u32 = 0x7;
/// Streams one connection may have open at once.
const LIMIT: usize = sluice_proxy::listener::MAX_CONCURRENT_STREAMS as usize;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A complete GET (END_HEADERS | END_STREAM) for `path` on reviews:9080,
/// HPACK-encoded with static-table names and literals that are never indexed.
fn get_frame(stream: u32, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 12]);
    block.extend_from_slice(b"reviews:9080");
    frame(HEADERS, 0x5, stream, &block)
}

/// Frames the server sent within `wait`, as (type, stream, first payload word).
async fn read_frames(s: &mut TcpStream, wait: Duration) -> Vec<(u8, u32, u32)> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut frames = Vec::new();
    let mut rest = &buf[..];
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let stream = u32::from_be_bytes(rest[5..9].try_into().unwrap()) & 0x7fff_ffff;
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        let word = match (rest[3], payload) {
            (GOAWAY, [_, _, _, _, a, b, c, d, ..]) => u32::from_be_bytes([*a, *b, *c, *d]),
            (_, [a, b, c, d, ..]) => u32::from_be_bytes([*a, *b, *c, *d]),
            _ => 0,
        };
        frames.push((rest[3], stream, word));
        rest = &rest[9 + len..];
    }
    frames
}

async fn active_connections(proxy: &Proxy) -> f64 {
    proxy
        .metric("sluice_connections_active", &[("listener", "outbound")])
        .await
}

#[tokio::test]
async fn h2_rapid_reset_flood_gets_goaway_and_proxy_serves_others() {
    let (_ctl, mut proxy, seen) = start(160).await;
    let tcp = TcpStream::connect(proxy.outbound()).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    for _ in 0..5000 {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let req = Request::get("http://reviews:9080/delay/2000")
            .body(())
            .unwrap();
        let Ok((_resp, mut stream)) = client.send_request(req, true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
        // Yield now and then so the frames leave in bursts, as an attacker's would.
        if sent % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("connection still open after the reset flood")
        .unwrap();
    let err = ended.expect_err("connection ended without an error");
    // The GOAWAY may be lost to the client when the server's close wins the race.
    assert!(
        (err.is_go_away() && err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM)) || err.is_io(),
        "{err:?} after {sent} streams"
    );
    assert!(sent < 5000, "all {sent} resets were accepted");
    assert!(proxy.is_running());
    let ok = send_h2(proxy.outbound(), get("/ok", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let reached = seen.lock().unwrap().len();
    assert!(
        reached <= LIMIT + 1,
        "{reached} reset requests reached the app"
    );
}

/// The h2 crate's client never exceeds the server's stream limit, so the
/// flood is written as raw frames.
#[tokio::test]
async fn h2_stream_flood_beyond_limit_is_refused_and_bounded() {
    let (_ctl, mut proxy, seen) = start(161).await;
    let mut s = TcpStream::connect(proxy.outbound()).await.unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for i in 0..1000u32 {
        out.extend(get_frame(2 * i + 1, "/delay/3000"));
    }
    s.write_all(&out).await.unwrap();
    let frames = read_frames(&mut s, Duration::from_secs(2)).await;
    let refused = frames
        .iter()
        .filter(|(t, _, code)| *t == RST_STREAM && *code == REFUSED_STREAM)
        .count();
    let goaway = frames.iter().any(|(t, _, _)| *t == GOAWAY);
    assert!(
        refused > 0 || goaway,
        "flood neither refused nor closed: {frames:?}"
    );
    assert!(proxy.is_running());
    let ok = send_h2(proxy.outbound(), get("/ok", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    // Refused streams never run later: at most the limit reached the app.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let reached = seen.lock().unwrap().len();
    assert!(
        reached <= LIMIT + 1,
        "{reached} flooded requests reached the app"
    );
}

#[tokio::test]
async fn early_client_reset_connection_gauge_returns_to_zero() {
    let (_ctl, proxy, _seen) = start(162).await;
    let addr: SocketAddr = proxy.outbound();
    for i in 0..20u32 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            // HTTP/1: a request that takes 10 s upstream, then a hard close (RST).
            s.write_all(b"GET /delay/10000 HTTP/1.1\r\nHost: reviews:9080\r\n\r\n")
                .await
                .unwrap();
        } else {
            // HTTP/2: the same over one stream, then RST_STREAM and a hard close.
            let mut out = PREFACE.to_vec();
            out.extend(frame(SETTINGS, 0, 0, &[]));
            out.extend(get_frame(1, "/delay/10000"));
            out.extend(frame(RST_STREAM, 0, 1, &8u32.to_be_bytes()));
            s.write_all(&out).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }
    let started = Instant::now();
    loop {
        let active = active_connections(&proxy).await;
        if active == 0.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{active} outbound connections still open after the clients left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
