//! Choosing a weighted destination and an endpoint of a cluster: least request
//! (power of two choices), round robin, random and rendezvous (HRW) hashing.

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use crate::model::{Cluster, LoadBalancer, WeightedCluster};

/// Picks a destination with probability weight / sum; weight 0 is never picked.
/// When every weight is 0 (a lone destination without weight) the first one wins.
pub fn pick_weighted(destinations: &[WeightedCluster]) -> Option<&WeightedCluster> {
    let total: u64 = destinations.iter().map(|d| u64::from(d.weight)).sum();
    if total == 0 {
        return destinations.first();
    }
    let mut point = fastrand::u64(0..total);
    for d in destinations {
        let w = u64::from(d.weight);
        if point < w {
            return Some(d);
        }
        point -= w;
    }
    destinations.last()
}

/// What hashing load balancers may key on.
pub struct HashInput<'a> {
    pub headers: &'a http::HeaderMap,
    pub source_ip: IpAddr,
    pub query: Option<&'a str>,
}

/// The chosen endpoint index, plus a `Set-Cookie` value when a sticky cookie was generated.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice {
    pub index: usize,
    pub set_cookie: Option<String>,
}

/// Chooses an endpoint of `cluster`; `None` when it has none.
pub fn pick_endpoint(cluster: &Cluster, input: &HashInput<'_>) -> Option<Choice> {
    let n = cluster.endpoints.len();
    if n == 0 {
        return None;
    }
    let plain = |index| {
        Some(Choice {
            index,
            set_cookie: None,
        })
    };
    match &cluster.load_balancer {
        LoadBalancer::RoundRobin => plain(cluster.round_robin.fetch_add(1, Ordering::Relaxed) % n),
        LoadBalancer::Random | LoadBalancer::Passthrough => plain(fastrand::usize(0..n)),
        LoadBalancer::LeastRequest => plain(least_request(cluster)),
        LoadBalancer::HashHeader(name) => match input.headers.get(name) {
            Some(v) => plain(rendezvous(cluster, v.as_bytes())),
            None => plain(fastrand::usize(0..n)),
        },
        LoadBalancer::HashSourceIp => {
            let key = match input.source_ip {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            plain(rendezvous(cluster, &key))
        }
        LoadBalancer::HashQueryParameter(name) => {
            let value = input.query.and_then(|q| {
                q.split('&').find_map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (k == name).then_some(v)
                })
            });
            match value {
                Some(v) => plain(rendezvous(cluster, v.as_bytes())),
                None => plain(fastrand::usize(0..n)),
            }
        }
        LoadBalancer::HashCookie { name, path, ttl_ms } => {
            if let Some(v) = cookie(input.headers, name) {
                return plain(rendezvous(cluster, v.as_bytes()));
            }
            if *ttl_ms == 0 {
                return plain(fastrand::usize(0..n));
            }
            let value = format!("{:016x}", fastrand::u64(..));
            let index = rendezvous(cluster, value.as_bytes());
            let mut set = format!("{name}={value}; Max-Age={}", ttl_ms.div_ceil(1000));
            if !path.is_empty() {
                set.push_str("; Path=");
                set.push_str(path);
            }
            set.push_str("; HttpOnly");
            Some(Choice {
                index,
                set_cookie: Some(set),
            })
        }
    }
}

/// Power of two choices, sampled with replacement as Envoy does: the less loaded
/// of two random endpoints. Sampling with replacement keeps some randomness, so
/// a slightly faster endpoint does not soak up nearly all traffic.
fn least_request(cluster: &Cluster) -> usize {
    let n = cluster.endpoints.len();
    let a = fastrand::usize(0..n);
    let b = fastrand::usize(0..n);
    let load = |i: usize| {
        cluster
            .endpoints
            .get(i)
            .map_or(usize::MAX, |e| e.in_flight.load(Ordering::Relaxed))
    };
    if load(b) < load(a) { b } else { a }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Highest-random-weight hashing: stable under endpoint additions and removals.
fn rendezvous(cluster: &Cluster, key: &[u8]) -> usize {
    let key_hash = fnv1a(key, 0xcbf2_9ce4_8422_2325);
    let mut best = (0usize, 0u64);
    for (i, e) in cluster.endpoints.iter().enumerate() {
        let mut h = key_hash;
        h = match e.address {
            std::net::IpAddr::V4(a) => fnv1a(&a.octets(), h),
            std::net::IpAddr::V6(a) => fnv1a(&a.octets(), h),
        };
        h = mix(fnv1a(&e.port.to_be_bytes(), h));
        if i == 0 || h > best.1 {
            best = (i, h);
        }
    }
    best.0
}

fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// splitmix64 finaliser: spreads FNV's weak low bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
