use super::*;
use crate::body;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn websocket_is_asked_by_connection_upgrade_and_upgrade_websocket() {
    let asked = |version, pairs: &[(&str, &str)]| {
        asks_websocket(version, &headers(pairs)).map(|v| v.to_str().unwrap().to_owned())
    };
    let ws = [("connection", "Upgrade"), ("upgrade", "websocket")];
    assert_eq!(asked(Version::HTTP_11, &ws).as_deref(), Some("websocket"));
    // Tokens are case-insensitive, Connection may list several, and a
    // version suffix is part of the token.
    let mixed = [
        ("connection", "keep-alive, UPGRADE"),
        ("upgrade", "WebSocket/13"),
    ];
    assert_eq!(
        asked(Version::HTTP_11, &mixed).as_deref(),
        Some("WebSocket/13")
    );
    let split = [
        ("connection", "keep-alive"),
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
    ];
    assert!(asked(Version::HTTP_11, &split).is_some());
    // Not asked: no Connection: upgrade, another protocol first, h2c, HTTP/1.0 or 2.
    assert_eq!(asked(Version::HTTP_11, &[("upgrade", "websocket")]), None);
    let other_first = [("connection", "upgrade"), ("upgrade", "h2c, websocket")];
    assert_eq!(asked(Version::HTTP_11, &other_first), None);
    let h2c = [
        ("connection", "Upgrade, HTTP2-Settings"),
        ("upgrade", "h2c"),
    ];
    assert_eq!(asked(Version::HTTP_11, &h2c), None);
    assert_eq!(asked(Version::HTTP_10, &ws), None);
    assert_eq!(asked(Version::HTTP_2, &ws), None);
    let prefix = [("connection", "upgrade"), ("upgrade", "websocketx")];
    assert_eq!(asked(Version::HTTP_11, &prefix), None);
}

#[test]
fn take_needs_the_connections_hand_over() {
    // A request parsed elsewhere than by a hyper server with upgrades has no
    // hand-over: it goes on as plain HTTP.
    let mut req = Request::builder()
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(())
        .unwrap();
    assert!(take(&mut req).is_none());
}

fn answer_of(status: u16, pairs: &[(&str, &str)], asked: bool) -> (Response<Body>, bool, f64) {
    let metrics = Metrics::new();
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    *resp.headers_mut() = headers(pairs);
    let asked = asked.then(|| Requested {
        protocol: HeaderValue::from_static("websocket"),
        downstream: hyper::upgrade::on(Request::new(())),
    });
    let handed = answer(&metrics, SOURCE, asked, &mut resp).is_some();
    let refused = UpgradeLabels {
        reporter: SOURCE,
        outcome: "refused",
    };
    let count = metrics.upgrades.get_or_create(&refused).get() as f64;
    (resp, handed, count)
}

#[test]
fn a_101_to_websocket_keeps_its_upgrade_headers_and_hands_over() {
    let switching = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ("keep-alive", "timeout=5"),
    ];
    let (resp, handed, refused) = answer_of(101, &switching, true);
    assert!(handed);
    assert_eq!(refused, 0.0);
    let h = resp.headers();
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert!(h.get("keep-alive").is_none(), "other hop-by-hop headers go");
}

#[test]
fn any_other_answer_is_refused_and_stripped() {
    // The app declines (426), or switches to something not asked for.
    for (status, upgrade) in [(426, "websocket"), (101, "h2c"), (200, "websocket")] {
        let pairs = [("connection", "upgrade"), ("upgrade", upgrade)];
        let (resp, handed, refused) = answer_of(status, &pairs, true);
        assert!(!handed, "{status} {upgrade}");
        assert_eq!(refused, 1.0, "{status} {upgrade}");
        assert!(resp.headers().get("upgrade").is_none());
        assert!(resp.headers().get("connection").is_none());
    }
    // A request that asked for nothing is neither handed over nor counted.
    let pairs = [("connection", "upgrade"), ("upgrade", "websocket")];
    let (resp, handed, refused) = answer_of(101, &pairs, false);
    assert!(!handed);
    assert_eq!(refused, 0.0);
    assert!(resp.headers().get("upgrade").is_none());
}
