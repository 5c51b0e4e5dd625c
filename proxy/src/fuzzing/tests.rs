use super::*;
use http::Method;

#[test]
fn split_message_length_prefix_cuts_message_and_rest() {
    let (msg, rest) = split_message(&[0, 2, 7, 8, 9]);
    assert_eq!((msg, rest), (&[7u8, 8][..], &[9u8][..]));
    let (msg, rest) = split_message(&[0, 9, 1]);
    assert_eq!((msg, rest), (&[1u8][..], &[][..]));
    assert_eq!(split_message(&[1]), (&[][..], &[][..]));
}

#[test]
fn split_request_reads_facts_and_head() {
    let text =
        b"ns/a/sa/b\n\n10.0.0.1\n10.0.0.2:9080\nGET /x?y=1\nHost: reviews:9080\nbad header\n";
    let (facts, req) = split_request(text);
    assert_eq!(facts.principal.as_deref(), Some("ns/a/sa/b"));
    assert_eq!(facts.sni, None);
    assert_eq!(facts.source_ip, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(facts.destination.port(), 9080);
    let req = req.expect("request parses");
    assert_eq!(req.method, Method::GET);
    assert_eq!(req.uri.query(), Some("y=1"));
    assert_eq!(req.headers.len(), 1);
}

#[test]
fn request_path_hostile_paths_hold_the_invariants() {
    for path in [
        "/public/../admin",
        "/%61dmin/%2e%2e/%2E./x",
        "/%%34%31/%%30%30",
        "\\..\\%5c..%2f..//x",
        "/a%00",
        "/é{}|^\"",
        "*",
        "",
    ] {
        request_path(path.as_bytes());
    }
    request_path(&[b'/', 0xFF, 0xFE]);
}
