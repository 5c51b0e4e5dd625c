use std::net::SocketAddr;

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

async fn roundtrip(src: &str, dst: &str) -> Option<Addresses> {
    let bytes = encode(addr(src), addr(dst));
    let mut reader = &bytes[..];
    read(&mut reader).await.unwrap()
}

#[tokio::test]
async fn encode_then_read_ipv4_roundtrips() {
    let got = roundtrip("127.0.0.5:40000", "127.0.10.5:9080")
        .await
        .unwrap();
    assert_eq!(
        got,
        Addresses {
            source: addr("127.0.0.5:40000"),
            destination: addr("127.0.10.5:9080")
        }
    );
    assert_eq!(encode(addr("1.2.3.4:1"), addr("5.6.7.8:2")).len(), 28);
}

#[tokio::test]
async fn encode_then_read_ipv6_and_mixed_roundtrip() {
    let got = roundtrip("[fd00::1]:1234", "[fd00::2]:9080").await.unwrap();
    assert_eq!(got.destination, addr("[fd00::2]:9080"));
    let mixed = roundtrip("10.0.0.1:1", "[fd00::2]:80").await.unwrap();
    assert_eq!(mixed.source, addr("10.0.0.1:1"));
    assert_eq!(mixed.destination, addr("[fd00::2]:80"));
}

#[tokio::test]
async fn read_local_command_has_no_addresses() {
    let mut bytes = encode(addr("1.2.3.4:1"), addr("5.6.7.8:2"));
    bytes[12] = 0x20;
    let mut reader = &bytes[..];
    assert_eq!(read(&mut reader).await, Ok(None));
}

#[tokio::test]
async fn read_rejects_bad_version_family_length_and_truncation() {
    let good = encode(addr("1.2.3.4:1"), addr("5.6.7.8:2"));
    let mut v1 = good.clone();
    v1[12] = 0x11;
    assert_eq!(
        read(&mut &v1[..]).await,
        Err(ProxyHeaderError::VersionCommand(0x11))
    );
    let mut family = good.clone();
    family[13] = 0x31;
    assert_eq!(
        read(&mut &family[..]).await,
        Err(ProxyHeaderError::Family(0x31))
    );
    let mut long = good.clone();
    long[14] = 0xff;
    assert_eq!(
        read(&mut &long[..]).await,
        Err(ProxyHeaderError::Length(0xff0c))
    );
    let mut short = good.clone();
    short[15] = 4;
    assert_eq!(
        read(&mut &short[..]).await,
        Err(ProxyHeaderError::Length(4))
    );
    assert_eq!(
        read(&mut &good[..20]).await,
        Err(ProxyHeaderError::Truncated)
    );
    let mut sig = good;
    sig[0] = b'X';
    assert_eq!(read(&mut &sig[..]).await, Err(ProxyHeaderError::Signature));
}

#[tokio::test]
async fn read_leaves_the_payload_after_the_header() {
    let mut bytes = encode(addr("1.2.3.4:1"), addr("5.6.7.8:2"));
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let mut reader = &bytes[..];
    read(&mut reader).await.unwrap();
    assert_eq!(reader, b"GET / HTTP/1.1\r\n");
}
