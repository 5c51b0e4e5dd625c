use super::*;

#[test]
fn proxy_v2_header_ipv4_layout() {
    let h = proxy_v2_header(
        "127.1.2.3:4000".parse().unwrap(),
        "127.1.2.4:9000".parse().unwrap(),
    );
    assert_eq!(&h[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(h[12], 0x21);
    assert_eq!(h[13], 0x11);
    assert_eq!(&h[14..16], &12u16.to_be_bytes());
    assert_eq!(&h[16..20], &[127, 1, 2, 3]);
    assert_eq!(&h[20..24], &[127, 1, 2, 4]);
    assert_eq!(&h[24..26], &4000u16.to_be_bytes());
    assert_eq!(&h[26..28], &9000u16.to_be_bytes());
    assert_eq!(h.len(), 28);
}
