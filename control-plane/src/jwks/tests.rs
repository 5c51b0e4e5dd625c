//! Key sets fetched over real sockets from a small HTTP server, and the
//! intake publishing a new revision once they arrive.

use super::*;
use crate::index::Intake;
use std::collections::BTreeMap as Map;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEYS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"AQ","y":"AQ"}]}"#;

/// Serves `/keys`, `/.well-known/openid-configuration` and 404 elsewhere.
async fn server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(m) => n += m,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                let (status, body) = match path.as_str() {
                    "/keys" => ("200 OK", KEYS.to_owned()),
                    "/.well-known/openid-configuration" => (
                        "200 OK",
                        format!(r#"{{"issuer":"http://{addr}","jwks_uri":"http://{addr}/keys"}}"#),
                    ),
                    "/not-keys" => ("200 OK", "{}".to_owned()),
                    _ => ("404 Not Found", String::new()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn fetch_by_uri_and_by_discovery_and_refuse_what_is_not_a_key_set() {
    let addr = server().await;
    let t = Duration::from_secs(5);
    let got = fetch(&Source::Uri(format!("http://{addr}/keys")), t).await;
    assert_eq!(got.as_deref(), Ok(KEYS));
    let got = fetch(&Source::Discovery(format!("http://{addr}/")), t).await;
    assert_eq!(got.as_deref(), Ok(KEYS));
    let e = fetch(&Source::Uri(format!("http://{addr}/gone")), t)
        .await
        .unwrap_err();
    assert!(e.contains("404"), "{e}");
    let e = fetch(&Source::Uri(format!("http://{addr}/not-keys")), t)
        .await
        .unwrap_err();
    assert!(e.contains("jwks parse error"), "{e}");
    // Nothing listens there: refused at once, and named.
    let e = fetch(&Source::Uri("http://127.0.0.1:1/keys".into()), t)
        .await
        .unwrap_err();
    assert!(e.contains("127.0.0.1:1"), "{e}");
}

fn files(yaml: String) -> Map<String, Result<String, String>> {
    Map::from([("ra.yaml".to_owned(), Ok(yaml))])
}

#[tokio::test]
async fn a_fetched_key_set_makes_a_new_revision_that_carries_it() {
    let addr = server().await;
    let metrics = Arc::new(ControllerMetrics::new());
    let store = JwksStore::new(Some(metrics.clone()));
    let mut intake = Intake::new().with_jwks(store.clone());
    let mut changes = intake.key_set_changes().unwrap();
    let yaml = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: r, namespace: foo}}\nspec:\n  jwtRules:\n  - issuer: me\n    jwksUri: http://{addr}/keys\n  - issuer: broken\n    jwksUri: http://{addr}/gone\n"
    );
    let first = intake.ingest(files(yaml.clone()), std::time::Instant::now(), &metrics);
    let uri = Source::Uri(format!("http://{addr}/keys"));
    let gone = Source::Uri(format!("http://{addr}/gone"));
    // Wait for both fetches to be recorded.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            changes.changed().await.unwrap();
            let s = store.snapshot();
            if s.keys.contains_key(&uri) && s.keys.contains_key(&gone) {
                break;
            }
        }
    })
    .await
    .expect("both key sets looked at");
    let second = intake.ingest(files(yaml), std::time::Instant::now(), &metrics);
    assert!(
        second.revision > first.revision,
        "a new revision for new keys"
    );
    assert_ne!(second.own_generation, first.own_generation);
    assert_eq!(second.jwks.get(&uri), Keys::Fetched(KEYS.into()));
    assert!(matches!(second.jwks.get(&gone), Keys::Unavailable(e) if e.contains("404")));
    assert_eq!(metrics.jwks_unavailable.get(), 1);
    let who = crate::translate::ProxyIdentity {
        id: "p".into(),
        workload: "w".into(),
        namespace: "foo".into(),
        service_account: "sa".into(),
        labels: Default::default(),
        ips: vec![],
        trust_domain: "cluster.local".into(),
    };
    let cfg = crate::translate::translate(&second, &who);
    let rules = cfg
        .inbound
        .and_then(|i| i.security)
        .map(|s| s.jwt_rules)
        .unwrap_or_default();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].jwks, KEYS);
    assert!(rules[1].jwks_error.contains("404"), "{:?}", rules[1]);
    // The policy gone: its sources are dropped, another revision follows.
    let none: Map<String, Result<String, String>> = Map::new();
    let third = intake.ingest(none, std::time::Instant::now(), &metrics);
    assert!(third.revision > second.revision);
    assert!(store.snapshot().keys.is_empty());
    assert_eq!(metrics.jwks_unavailable.get(), 0);
}
