use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{FastBuild, FastMap};

#[test]
fn byte_strings_differing_in_tail_hash_differently() {
    let h = FastBuild::default();
    assert_ne!(h.hash_one("reviews-v1"), h.hash_one("reviews-v2"));
    assert_ne!(h.hash_one("ab"), h.hash_one("ab\0"));
    assert_eq!(h.hash_one("same"), h.hash_one("same"));
}

#[test]
fn every_short_tail_hashes_apart_from_its_neighbours() {
    let h = FastBuild::default();
    // All strings of 1-7 bytes over a small alphabet: no two collide.
    let mut seen = std::collections::HashSet::new();
    let alphabet = [b'a', b'b', b'\0', 0xff];
    for len in 1..=7u32 {
        for code in 0..4usize.pow(len) {
            let bytes: Vec<u8> = (0..len).map(|i| alphabet[(code >> (2 * i)) & 3]).collect();
            assert!(seen.insert(h.hash_one(&bytes)), "{bytes:?}");
        }
    }
}

#[test]
fn socket_addresses_differing_in_port_or_ip_hash_differently() {
    let h = FastBuild::default();
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8080);
    let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8081);
    let c = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 8080);
    assert_ne!(h.hash_one(a), h.hash_one(b));
    assert_ne!(h.hash_one(a), h.hash_one(c));
}

#[test]
fn map_finds_every_key_it_holds() {
    let mut m: FastMap<String, usize> = FastMap::default();
    for i in 0..1000 {
        m.insert(format!("outbound|{i}||svc-{i}.ns.svc.cluster.local"), i);
    }
    for i in 0..1000 {
        let key = format!("outbound|{i}||svc-{i}.ns.svc.cluster.local");
        assert_eq!(m.get(&key), Some(&i));
    }
    assert_eq!(m.get("outbound|1000||svc-1000.ns.svc.cluster.local"), None);
}
