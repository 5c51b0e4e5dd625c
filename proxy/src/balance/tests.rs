use std::sync::atomic::Ordering;

use sluice_api::config as pb;

use super::*;
use crate::model::{HeaderOps, ProxyConfig};

fn cluster(n: usize, lb: Option<pb::LoadBalancer>) -> Cluster {
    let c = pb::Cluster {
        name: "c".to_owned(),
        port: 80,
        load_balancer: lb,
        endpoints: (0..n)
            .map(|i| pb::Endpoint {
                address: format!("10.0.0.{}", i + 1),
                port: 80,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut cfg = ProxyConfig::try_from(&pb::ProxyConfig {
        clusters: vec![c],
        ..Default::default()
    })
    .unwrap();
    cfg.clusters.remove(0)
}

fn hash(key: pb::consistent_hash::Key) -> Option<pb::LoadBalancer> {
    Some(pb::LoadBalancer {
        simple: 0,
        consistent_hash: Some(pb::ConsistentHash {
            key: Some(key),
            minimum_ring_size: 0,
        }),
    })
}

fn dest(weight: u32) -> WeightedCluster {
    WeightedCluster {
        cluster: format!("w{weight}"),
        weight,
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
        authority: None,
    }
}

fn input(headers: &http::HeaderMap) -> HashInput<'_> {
    HashInput {
        headers,
        source_ip: "10.9.9.9".parse().unwrap(),
        query: None,
    }
}

#[test]
fn pick_weighted_zero_weight_is_never_chosen_and_shares_follow_weights() {
    let dests = [dest(0), dest(30), dest(70)];
    let mut counts = [0u32; 3];
    for _ in 0..10_000 {
        let d = pick_weighted(&dests).unwrap();
        counts[dests.iter().position(|x| x.cluster == d.cluster).unwrap()] += 1;
    }
    assert_eq!(counts[0], 0);
    let share = f64::from(counts[1]) / 10_000.0;
    assert!((share - 0.3).abs() < 0.03, "{share}");
    assert!(pick_weighted(&[]).is_none());
    assert_eq!(pick_weighted(&[dest(0)]).unwrap().cluster, "w0");
}

#[test]
fn round_robin_cycles_through_endpoints() {
    let c = cluster(
        3,
        Some(pb::LoadBalancer {
            simple: 1,
            consistent_hash: None,
        }),
    );
    let h = http::HeaderMap::new();
    let picks: Vec<usize> = (0..6)
        .map(|_| pick_endpoint(&c, &input(&h)).unwrap().index)
        .collect();
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn least_request_sends_most_traffic_to_the_idle_endpoint() {
    let c = cluster(2, None);
    c.endpoints[0].in_flight.store(10, Ordering::Relaxed);
    let h = http::HeaderMap::new();
    let idle = (0..4000)
        .filter(|_| pick_endpoint(&c, &input(&h)).unwrap().index == 1)
        .count();
    // Two samples with replacement: the busy one wins only when drawn twice (1/4).
    let share = idle as f64 / 4000.0;
    assert!((share - 0.75).abs() < 0.04, "{share}");
    assert!(pick_endpoint(&cluster(0, None), &input(&h)).is_none());
}

#[test]
fn header_hash_is_stable_and_survives_removing_other_endpoints() {
    let c = cluster(
        5,
        hash(pb::consistent_hash::Key::Header("x-user".to_owned())),
    );
    let mut spread = std::collections::HashSet::new();
    for user in 0..50 {
        let mut h = http::HeaderMap::new();
        h.insert("x-user", user.to_string().parse().unwrap());
        let first = pick_endpoint(&c, &input(&h)).unwrap().index;
        assert_eq!(pick_endpoint(&c, &input(&h)).unwrap().index, first);
        spread.insert(first);
        // Dropping an endpoint the key did not map to keeps the mapping (HRW).
        let mut smaller = cluster(
            5,
            hash(pb::consistent_hash::Key::Header("x-user".to_owned())),
        );
        let victim = (first + 1) % 5;
        smaller.endpoints.remove(victim);
        let again = pick_endpoint(&smaller, &input(&h)).unwrap().index;
        assert_eq!(smaller.endpoints[again].address, c.endpoints[first].address);
    }
    assert!(spread.len() >= 4, "keys spread over {spread:?}");
}

#[test]
fn cookie_hash_generates_a_cookie_once_and_then_sticks() {
    let key = pb::consistent_hash::Key::Cookie(pb::consistent_hash::Cookie {
        name: "sticky".to_owned(),
        path: "/".to_owned(),
        ttl_ms: 60_000,
    });
    let c = cluster(4, hash(key));
    let none = http::HeaderMap::new();
    let first = pick_endpoint(&c, &input(&none)).unwrap();
    let set = first.set_cookie.clone().unwrap();
    assert!(
        set.starts_with("sticky=") && set.contains("Max-Age=60") && set.contains("Path=/"),
        "{set}"
    );
    let value = set.trim_start_matches("sticky=").split(';').next().unwrap();
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::COOKIE,
        format!("a=b; sticky={value}").parse().unwrap(),
    );
    for _ in 0..10 {
        let again = pick_endpoint(&c, &input(&h)).unwrap();
        assert_eq!(
            again,
            Choice {
                index: first.index,
                set_cookie: None
            }
        );
    }
}

#[test]
fn source_ip_hash_maps_one_client_to_one_endpoint() {
    let c = cluster(4, hash(pb::consistent_hash::Key::SourceIp(true)));
    let h = http::HeaderMap::new();
    let first = pick_endpoint(&c, &input(&h)).unwrap().index;
    for _ in 0..20 {
        assert_eq!(pick_endpoint(&c, &input(&h)).unwrap().index, first);
    }
}

/// A cluster of endpoints with `weights` and load balancer `lb`.
fn weighted(weights: &[u32], lb: Option<pb::LoadBalancer>) -> Cluster {
    let mut c = cluster(weights.len(), lb);
    for (e, w) in c.endpoints.iter_mut().zip(weights) {
        e.weight = *w;
    }
    c.weights = Weights::of(&c.endpoints);
    c
}

fn simple(mode: i32) -> Option<pb::LoadBalancer> {
    Some(pb::LoadBalancer {
        simple: mode,
        consistent_hash: None,
    })
}

/// How many of `picks` picks went to each endpoint.
fn counts(c: &Cluster, picks: usize, h: &http::HeaderMap) -> Vec<usize> {
    let mut out = vec![0; c.endpoints.len()];
    for _ in 0..picks {
        out[pick_endpoint(c, &input(h)).unwrap().index] += 1;
    }
    out
}

#[test]
fn equal_weights_need_no_table() {
    assert!(weighted(&[3, 3, 3], None).weights.is_none());
    // 0 is the API's default, which is 1.
    assert!(weighted(&[0, 1], None).weights.is_none());
    assert!(weighted(&[1, 3], None).weights.is_some());
}

#[test]
fn weighted_round_robin_is_exact_over_every_cycle_and_interleaved() {
    let c = weighted(&[1, 3, 2], simple(1));
    let h = http::HeaderMap::new();
    // Every 6 consecutive picks, wherever they start, give 1, 3 and 2.
    for _ in 0..5 {
        assert_eq!(counts(&c, 6, &h), [1, 3, 2]);
    }
    // Spread out: the heaviest never gets its 3 picks in a row.
    let picks: Vec<usize> = (0..12)
        .map(|_| pick_endpoint(&c, &input(&h)).unwrap().index)
        .collect();
    assert!(!picks.windows(3).any(|w| w == [1, 1, 1]), "{picks:?}");
    // Large weights too.
    let big = weighted(&[1000, 1, 999], simple(1));
    assert_eq!(counts(&big, 2000, &h), [1000, 1, 999]);
    // A cycle too long for a table: still exact.
    let huge = weighted(&[5000, 1, 7], simple(1));
    assert!(huge.weights.as_ref().unwrap().schedule.is_empty());
    assert_eq!(counts(&huge, 5008, &h), [5000, 1, 7]);
}

#[test]
fn weighted_random_follows_weights() {
    let c = weighted(&[1, 3], simple(2));
    let h = http::HeaderMap::new();
    let got = counts(&c, 8000, &h);
    let share = got[1] as f64 / 8000.0;
    assert!((share - 0.75).abs() < 0.03, "{got:?}");
}

#[test]
fn weighted_least_request_follows_weights_when_idle_and_load_per_weight_when_busy() {
    let c = weighted(&[1, 3], None);
    let h = http::HeaderMap::new();
    let got = counts(&c, 8000, &h);
    let share = got[1] as f64 / 8000.0;
    assert!((share - 0.75).abs() < 0.03, "idle: {got:?}");
    // 2 in flight on the weight-3 endpoint is less per weight than 1 on the
    // weight-1 one: (2+1)/3 < (1+1)/1, so it wins every comparison.
    c.endpoints[0].in_flight.store(1, Ordering::Relaxed);
    c.endpoints[1].in_flight.store(2, Ordering::Relaxed);
    let got = counts(&c, 8000, &h);
    // Endpoint 0 only when drawn twice: (1/4)^2.
    let share = got[0] as f64 / 8000.0;
    assert!((share - 0.0625).abs() < 0.02, "busy: {got:?}");
}

#[test]
fn least_request_among_a_pool_draws_by_weight_within_it() {
    let c = weighted(&[5, 1, 3], None);
    let mut got = [0usize; 3];
    for _ in 0..8000 {
        got[least_request_among(&c, &[1, 2])] += 1;
    }
    assert_eq!(got[0], 0, "outside the pool");
    let share = got[2] as f64 / 8000.0;
    // Drawn by weight 1:3, idle: the first draw wins ties.
    assert!((share - 0.75).abs() < 0.03, "{got:?}");
}

#[test]
fn weighted_hash_spreads_keys_by_weight_and_stays_stable() {
    let c = weighted(
        &[1, 3],
        hash(pb::consistent_hash::Key::Header("x-user".to_owned())),
    );
    let mut got = [0usize; 2];
    for user in 0..4000 {
        let mut h = http::HeaderMap::new();
        h.insert("x-user", user.to_string().parse().unwrap());
        let first = pick_endpoint(&c, &input(&h)).unwrap().index;
        assert_eq!(pick_endpoint(&c, &input(&h)).unwrap().index, first);
        got[first] += 1;
    }
    let share = got[1] as f64 / 4000.0;
    assert!((share - 0.75).abs() < 0.04, "{got:?}");
}
