use super::*;
use crate::translate::SharedCluster;
use sluice_api::delta;
use std::collections::BTreeMap;
use std::sync::Arc;

fn cluster(name: &str, addresses: &[&str]) -> Arc<SharedCluster> {
    Arc::new(SharedCluster::new(pb::Cluster {
        name: name.into(),
        endpoints: addresses
            .iter()
            .map(|a| pb::Endpoint {
                address: (*a).into(),
                labels: BTreeMap::from([
                    ("app".to_owned(), name.to_owned()),
                    ("version".to_owned(), "v1".to_owned()),
                    ("zone".to_owned(), "a".to_owned()),
                ]),
                ..pb::Endpoint::default()
            })
            .collect(),
        ..pb::Cluster::default()
    }))
}

fn vhost(name: &str, port: u32) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.into(),
        port,
        ..pb::VirtualHost::default()
    }
}

fn tcp(name: &str) -> pb::TcpService {
    pb::TcpService {
        name: name.into(),
        ..pb::TcpService::default()
    }
}

fn outbound() -> Outbound {
    Outbound {
        // Out of order on purpose: the half is ordered by name.
        virtual_hosts: vec![vhost("b:80", 80), vhost("a:80", 80), vhost("c:80", 80)],
        clusters: vec![
            cluster("outbound|80||b", &["10.0.0.2"]),
            cluster("outbound|80||a", &["10.0.0.1", "10.0.0.3"]),
        ],
        tcp_services: vec![tcp("d:5432")],
    }
}

fn ordered(o: &Outbound) -> pb::ProxyConfig {
    let mut config = pb::ProxyConfig {
        virtual_hosts: o.virtual_hosts.clone(),
        clusters: o.clusters.iter().map(|c| c.cluster.clone()).collect(),
        tcp_services: o.tcp_services.clone(),
        ..pb::ProxyConfig::default()
    };
    delta::order_by_name(&mut config);
    config
}

#[test]
fn encode_is_prost_encoding_of_the_name_ordered_half() {
    let o = outbound();
    let half = EncodedHalf::encode(&o);
    assert_eq!(half.bytes.as_ref(), ordered(&o).encode_to_vec().as_slice());
    assert_eq!(half.decode(), ordered(&o));
    // Encoded twice, the same bytes and the same digest (maps in key order).
    let again = EncodedHalf::encode(&outbound());
    assert_eq!(half.bytes, again.bytes);
    assert_eq!(half.digest, again.digest);
}

#[test]
fn a_cluster_shared_with_an_earlier_half_brings_its_encoding_along() {
    let earlier = outbound();
    let first = EncodedHalf::encode(&earlier);
    // The next revision keeps one cluster (the same `Arc`) and changes the other.
    let mut next = outbound();
    next.clusters[0] = earlier.clusters[0].clone();
    next.clusters[1] = cluster("outbound|80||a", &["10.0.0.9"]);
    let kept = earlier.clusters[0]
        .encoded(|_| panic!("encoded already"))
        .0
        .as_ptr();
    let half = EncodedHalf::encode(&next);
    assert_eq!(
        next.clusters[0]
            .encoded(|_| panic!("encoded again"))
            .0
            .as_ptr(),
        kept
    );
    // The same bytes as a half of fresh clusters, and a delta of just the changed one.
    let mut fresh = outbound();
    fresh.clusters[1] = cluster("outbound|80||a", &["10.0.0.9"]);
    assert_eq!(half.bytes, EncodedHalf::encode(&fresh).bytes);
    let delta = pb::ConfigDelta::decode(half.delta_from(&first.digest).as_ref()).unwrap();
    let names: Vec<&str> = delta.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["outbound|80||a"]);
}

#[test]
fn delta_from_same_half_is_empty() {
    let half = EncodedHalf::encode(&outbound());
    let other = EncodedHalf::encode(&outbound());
    assert!(other.delta_from(&half.digest).is_empty());
}

#[test]
fn delta_from_changed_half_matches_diff_and_applies() {
    let old = outbound();
    let mut new = outbound();
    // One cluster changes, one vhost goes, one vhost and a TCP service come.
    new.clusters[1] = cluster("outbound|80||a", &["10.0.0.1", "10.0.0.4"]);
    new.virtual_hosts.retain(|v| v.name != "b:80");
    new.virtual_hosts.push(vhost("aa:80", 80));
    new.tcp_services.push(tcp("e:6379"));
    let (old_half, new_half) = (EncodedHalf::encode(&old), EncodedHalf::encode(&new));
    let bytes = new_half.delta_from(&old_half.digest);
    let decoded = pb::ConfigDelta::decode(bytes.as_ref()).unwrap();
    let expected = delta::diff(&ordered(&old), &ordered(&new));
    assert_eq!(decoded, expected);
    // Byte for byte what prost makes of the same delta.
    assert_eq!(bytes.as_ref(), expected.encode_to_vec().as_slice());
    assert_eq!(decoded.clusters.len(), 1);
    assert_eq!(decoded.removed_virtual_hosts, vec!["b:80".to_owned()]);
    assert_eq!(
        delta::apply(&ordered(&old), &decoded).unwrap(),
        ordered(&new)
    );
}

#[test]
fn delta_from_everything_removed_lists_every_name() {
    let old = EncodedHalf::encode(&outbound());
    let empty = EncodedHalf::encode(&Outbound::default());
    let d = pb::ConfigDelta::decode(empty.delta_from(&old.digest).as_ref()).unwrap();
    assert_eq!(d.removed_virtual_hosts, vec!["a:80", "b:80", "c:80"]);
    assert_eq!(d.removed_clusters, vec!["outbound|80||a", "outbound|80||b"]);
    assert_eq!(d.removed_tcp_services, vec!["d:5432"]);
    assert!(d.virtual_hosts.is_empty() && d.clusters.is_empty());
}

#[test]
fn delta_from_name_listed_twice_is_not_removed() {
    let mut twice = outbound();
    twice.tcp_services.push(tcp("d:5432"));
    let (a, b) = (
        EncodedHalf::encode(&twice),
        EncodedHalf::encode(&outbound()),
    );
    let d = pb::ConfigDelta::decode(b.delta_from(&a.digest).as_ref()).unwrap();
    assert!(d.removed_tcp_services.is_empty(), "{d:?}");
}
