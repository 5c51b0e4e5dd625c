use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

#[test]
fn classify_recognises_protocols_and_waits_on_prefixes() {
    assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http1));
    assert_eq!(
        classify(b"CONNECT db:3306 HTTP/1.1\r\n"),
        Some(Detected::Http1)
    );
    assert_eq!(
        classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        Some(Detected::Http2)
    );
    assert_eq!(
        classify(b"\r\n\r\n\0\r\nQUIT\n\x21"),
        Some(Detected::ProxyV2)
    );
    assert_eq!(classify(b"GE"), None);
    assert_eq!(classify(b"PRI * HT"), None);
    assert_eq!(classify(b""), None);
    assert_eq!(classify(b"\x16\x03\x01"), Some(Detected::Tls));
    assert_eq!(classify(b"\x16"), None);
    assert_eq!(classify(b"\x16\x01"), Some(Detected::Other));
    assert_eq!(classify(b"GETX"), Some(Detected::Other));
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

#[tokio::test]
async fn sniff_silent_client_is_tcp_after_the_timeout() {
    let (_client, server) = pair().await;
    let start = std::time::Instant::now();
    assert_eq!(
        sniff(&server, Duration::from_millis(100)).await,
        Detected::Other
    );
    assert!(start.elapsed() >= Duration::from_millis(90));
}

#[tokio::test]
async fn sniff_request_split_across_writes_is_http1() {
    let (mut client, server) = pair().await;
    client.write_all(b"PO").await.unwrap();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        client.write_all(b"ST /x HTTP/1.1\r\n").await.unwrap();
        client
    });
    assert_eq!(
        sniff(&server, Duration::from_secs(2)).await,
        Detected::Http1
    );
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn original_dst_of_a_direct_connection_is_none() {
    let (_client, server) = pair().await;
    assert_eq!(original_dst(&server), None);
}
