use super::*;

#[test]
fn kubernetes_names_travel_as_they_are() {
    let v = encode(["reviews-v1", "default", "reviews", "v1"]).expect("valid");
    assert_eq!(v, "reviews-v1,default,reviews,v1");
    assert_eq!(
        decode(v.as_bytes()),
        Some(["reviews-v1", "default", "reviews", "v1"].map(String::from))
    );
}

#[test]
fn empty_fields_and_separators_inside_fields_round_trip() {
    for fields in [
        ["", "", "", ""],
        ["w", "ns", "", ""],
        ["a,b", "100%", "%2C", ",,%"],
        ["ünï", "x y", "tab\tin", "v"],
    ] {
        let v = encode(fields).expect("valid header value");
        assert_eq!(
            decode(v.as_bytes()),
            Some(fields.map(String::from)),
            "{v:?}"
        );
    }
}

#[test]
fn bytes_no_header_value_may_carry_are_refused() {
    assert_eq!(encode(["a\nb", "ns", "app", "v1"]), None);
    assert_eq!(encode(["a\0", "ns", "app", "v1"]), None);
}

#[test]
fn malformed_values_decode_to_nothing() {
    for v in [
        &b""[..],
        b"a,b,c",
        b"a,b,c,d,e",
        b"a%,b,c,d",
        b"a%2,b,c,d",
        b"a%41,b,c,d",
        b"\xff,b,c,d",
    ] {
        assert_eq!(decode(v), None, "{:?}", String::from_utf8_lossy(v));
    }
}

#[test]
fn arbitrary_bytes_never_panic_and_what_decodes_encodes_back() {
    let alphabet = b"ab,%25Cc\xff ";
    for _ in 0..20_000 {
        let len = fastrand::usize(0..24);
        let v: Vec<u8> = (0..len)
            .map(|_| alphabet[fastrand::usize(..alphabet.len())])
            .collect();
        if let Some(fields) = decode(&v) {
            let again = encode(fields.each_ref().map(String::as_str)).expect("valid");
            assert_eq!(decode(again.as_bytes()), Some(fields));
        }
    }
}

#[tokio::test]
async fn frame_round_trips_and_refuses_oversized_or_cut_frames() {
    let value = encode(["ratings-v1", "default", "ratings", "v1"]).expect("encodes");
    let bytes = frame(&value);
    assert_eq!(
        &bytes[..2],
        &u16::try_from(value.len()).unwrap().to_be_bytes()
    );
    let mut io = &bytes[..];
    let read = read_frame(&mut io).await.expect("frame");
    assert_eq!(
        decode(&read),
        Some(["ratings-v1", "default", "ratings", "v1"].map(String::from))
    );
    // An empty frame (a caller without metadata) reads as empty.
    let mut empty: &[u8] = &[0, 0];
    assert_eq!(read_frame(&mut empty).await, Some(Vec::new()));
    // Announcing more than the limit, or ending inside the frame: none.
    let mut big: &[u8] = &[0x04, 0x01];
    assert_eq!(read_frame(&mut big).await, None);
    let mut cut: &[u8] = &[0, 5, b'a'];
    assert_eq!(read_frame(&mut cut).await, None);
}
