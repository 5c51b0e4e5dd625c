//! Hostile and malformed HTTP through the real proxy binary: request smuggling
//! shapes, slow and oversized heads, HTTP/2 reset and stream floods, and
//! clients that vanish mid-request. Every case asserts what came back on the
//! socket and what reached the app (a recording backend).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_api::config as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// reviews:9080 forwards to one recording backend on `127.0.<net>.11`.
fn config(net: u8) -> pb::ProxyConfig {
    let v1: SocketAddr = format!("127.0.{net}.11:9080").parse().unwrap();
    pb::ProxyConfig {
        virtual_hosts: vec![vhost(
            "reviews",
            9080,
            vec![forward(vec![], &[(&cname("reviews", 9080, "v1"), 100)])],
        )],
        clusters: vec![cluster(
            "reviews",
            9080,
            "v1",
            vec![endpoint(v1, "reviews-v1", "v1")],
        )],
        ..Default::default()
    }
}

async fn start(net: u8) -> (Controller, Proxy, Seen) {
    let seen = recording_backend(format!("127.0.{net}.11:9080").parse().unwrap(), "v1").await;
    let (ctl, proxy) = mesh_of_one(net, config(net)).await;
    (ctl, proxy, seen)
}

/// Writes `bytes`, then reads until the proxy closes (or 5 s pass).
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The proxy answered `bytes` with exactly one 400, the app saw nothing, and
/// the next well-formed request still goes through.
async fn assert_refused(net: u8, bytes: &[u8]) {
    let (_ctl, mut proxy, seen) = start(net).await;
    let answer = raw(proxy.outbound(), bytes).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer:?}");
    assert!(seen.lock().unwrap().is_empty(), "reached the app: {seen:?}");
    let ok = send(proxy.outbound(), get("/after", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["reviews:9080 /after 0".to_owned()]
    );
    assert!(proxy.is_running());
}

/// A request whose body, by the other framing, carries a second request.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: reviews:9080\r\n\r\n";

#[tokio::test]
async fn smuggling_content_length_then_chunked_is_refused_with_400() {
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let req = format!(
        "POST /a HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    assert_refused(150, req.as_bytes()).await;
}

#[tokio::test]
async fn smuggling_chunked_then_content_length_is_refused_with_400() {
    let req = format!(
        "POST /a HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    assert_refused(151, req.as_bytes()).await;
}

#[tokio::test]
async fn smuggling_second_request_with_both_framings_is_refused_with_400() {
    // The first request is fine; the second one on the same connection is not.
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let req = format!(
        "GET /ok HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 5\r\n\r\nhello\
         POST /a HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let (_ctl, proxy, seen) = start(152).await;
    let answer = raw(proxy.outbound(), req.as_bytes()).await;
    let statuses: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .collect();
    assert_eq!(statuses.len(), 2, "{answer:?}");
    assert!(statuses[0].starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(statuses[1].starts_with("HTTP/1.1 400"), "{answer:?}");
    assert_eq!(*seen.lock().unwrap(), vec!["reviews:9080 /ok 5".to_owned()]);
}

#[tokio::test]
async fn smuggling_two_different_content_lengths_are_refused_with_400() {
    let req = format!(
        "POST /a HTTP/1.1\r\nHost: reviews:9080\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    assert_refused(153, req.as_bytes()).await;
}

#[tokio::test]
async fn smuggling_obs_fold_header_is_refused_with_400() {
    let req = format!(
        "POST /a HTTP/1.1\r\nHost: reviews:9080\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    assert_refused(154, req.as_bytes()).await;
}

#[tokio::test]
async fn smuggling_chunked_then_identity_coding_is_refused_with_400() {
    let req = format!(
        "POST /a HTTP/1.1\r\nHost: reviews:9080\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{SMUGGLED}"
    );
    assert_refused(155, req.as_bytes()).await;
}

#[tokio::test]
async fn head_oversized_headers_get_431() {
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: reviews:9080\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (_ctl, proxy, seen) = start(156).await;
    let answer = raw(proxy.outbound(), req.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn head_invalid_header_name_gets_400() {
    let (_ctl, proxy, seen) = start(157).await;
    for bad in ["x bad: 1", "x\"q: 1", "(x): 1", "\u{1}x: 1"] {
        let req = format!("GET /x HTTP/1.1\r\nHost: reviews:9080\r\n{bad}\r\n\r\n");
        let answer = raw(proxy.outbound(), req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{bad:?}: {answer:?}");
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn slowloris_trickled_headers_closed_after_header_read_timeout() {
    let (_ctl, proxy, seen) = start(158).await;
    let mut s = TcpStream::connect(proxy.outbound()).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: reviews:9080\r\n")
        .await
        .unwrap();
    // One header byte a second: the head never completes.
    let closed_at = loop {
        if s.write_all(b"x").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => {
                // hyper answers 408 before closing; either way the connection ends.
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
            }
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(40), "never closed");
    };
    assert!(
        closed_at >= Duration::from_secs(9),
        "closed early: {closed_at:?}"
    );
    assert!(
        closed_at < Duration::from_secs(15),
        "closed late: {closed_at:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
    // A normal client was served all along.
    let ok = send(proxy.outbound(), get("/ok", "reviews:9080"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn keepalive_idle_longer_than_header_read_timeout_stays_usable() {
    let (_ctl, proxy, seen) = start(159).await;
    let mut s = TcpStream::connect(proxy.outbound()).await.unwrap();
    let req = b"GET /idle HTTP/1.1\r\nHost: reviews:9080\r\n\r\n";
    for round in 0..2 {
        s.write_all(req).await.unwrap();
        let text = read_response(&mut s).await;
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text:?}");
        if round == 0 {
            // Idle, between requests, past the 10 s head limit.
            tokio::time::sleep(Duration::from_secs(12)).await;
        }
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// Reads one response with a `content-length` body.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(n > 0, "closed mid-response: {text:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
}

mod secrets;
mod streams;
