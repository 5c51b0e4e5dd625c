use super::*;

#[test]
fn parse_plain_body_returns_status_and_body() {
    let reply = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "ok");
}

#[test]
fn parse_chunked_body_joins_chunks() {
    let raw = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
    let reply = parse(raw).unwrap();
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, "abcde");
}

#[test]
fn parse_truncated_chunk_returns_none() {
    assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc").is_none());
    assert!(parse(b"HTTP/1.1 200 OK\r\n").is_none());
}
