use super::http_echo::peer_principal;
use super::*;

#[test]
fn peer_principal_takes_spiffe_uri_from_xfcc() {
    let mut h = ::http::HeaderMap::new();
    h.insert(
        "x-forwarded-client-cert",
        "By=spiffe://cluster.local/ns/default/sa/reviews;Hash=ab;URI=spiffe://cluster.local/ns/default/sa/productpage"
            .parse()
            .unwrap(),
    );
    assert_eq!(
        peer_principal(&h).as_deref(),
        Some("spiffe://cluster.local/ns/default/sa/productpage")
    );
    h.insert("x-forwarded-client-cert", "Hash=ab".parse().unwrap());
    assert_eq!(peer_principal(&h), None);
}

#[test]
fn behaviour_set_and_reset() {
    let b = Behaviour::default();
    b.set(Some(503), 20);
    assert_eq!(b.status(), Some(503));
    assert_eq!(b.delay(), Duration::from_millis(20));
    b.set(None, 0);
    assert_eq!(b.status(), None);
}

#[test]
fn behaviour_grpc_status_keeps_ok_distinct_from_normal() {
    let b = Behaviour::default();
    assert_eq!(b.grpc_status(), None);
    b.set_grpc_status(Some(14));
    assert_eq!(b.grpc_status(), Some(14));
    b.set_grpc_status(Some(0));
    assert_eq!(b.grpc_status(), Some(0));
    b.set_grpc_status(None);
    assert_eq!(b.grpc_status(), None);
}
