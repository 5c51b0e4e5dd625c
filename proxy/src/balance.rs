//! Choosing a weighted destination and an endpoint of a cluster: least request
//! (power of two choices), round robin, random and rendezvous (HRW) hashing,
//! each honouring the endpoints' weights when they differ.

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use crate::model::{Cluster, Endpoint, LoadBalancer, WeightedCluster};

/// Endpoint weights of a cluster whose endpoints' weights differ, prepared
/// once per config so a pick costs a lookup or a binary search and no
/// allocation.
#[derive(Debug)]
pub struct Weights {
    /// Running sums: endpoint i owns the points `cumulative[i - 1]..cumulative[i]`.
    cumulative: Vec<u64>,
    /// Sum of the weights.
    total: u64,
    /// Weighted round robin's order: one cycle of smooth weighted round robin
    /// over the weights divided by their common factor (each endpoint as
    /// often as its weight, evenly spread); empty when that cycle would be
    /// longer than [`MAX_SCHEDULE`].
    schedule: Vec<u32>,
    /// For cycles too long to keep: coprime to `total`, so stepping through
    /// the points by it still gives each endpoint exactly its weight per
    /// `total` picks.
    stride: u64,
}

/// Longest weighted round robin cycle kept as a table.
const MAX_SCHEDULE: u64 = 4096;

impl Weights {
    /// The table for `endpoints` (a weight of 0 counts as 1, the API's
    /// default); `None` when every weight is the same.
    pub fn of(endpoints: &[Endpoint]) -> Option<Self> {
        let weight = |e: &Endpoint| u64::from(e.weight.max(1));
        let first = weight(endpoints.first()?);
        if endpoints.iter().all(|e| weight(e) == first) {
            return None;
        }
        let mut total = 0u64;
        let cumulative = endpoints
            .iter()
            .map(|e| {
                total += weight(e);
                total
            })
            .collect();
        let common = endpoints.iter().fold(0, |g, e| gcd(g, weight(e)));
        let cycle = total / common.max(1);
        let schedule = if cycle <= MAX_SCHEDULE && u32::try_from(endpoints.len()).is_ok() {
            smooth_cycle(
                endpoints.iter().map(|e| weight(e) / common).collect(),
                cycle,
            )
        } else {
            Vec::new()
        };
        let mut stride = ((u128::from(total) * 618) / 1000).max(1) as u64;
        while gcd(stride, total) != 1 {
            stride += 1;
        }
        Some(Self {
            cumulative,
            total,
            schedule,
            stride,
        })
    }

    /// Weight of endpoint `i`.
    fn weight(&self, i: usize) -> u64 {
        let below = i.checked_sub(1).map_or(0, |j| self.cumulative[j]);
        self.cumulative.get(i).map_or(0, |c| c - below)
    }

    /// The endpoint owning `point` (`point < total`).
    fn owner(&self, point: u64) -> usize {
        self.cumulative.partition_point(|c| *c <= point)
    }

    /// A random endpoint, with probability weight / total.
    fn random(&self) -> usize {
        self.owner(fastrand::u64(0..self.total))
    }

    /// The `k`th pick of weighted round robin: over any cycle of consecutive
    /// picks each endpoint gets exactly its share.
    fn round_robin(&self, k: usize) -> usize {
        if !self.schedule.is_empty() {
            return self.schedule[k % self.schedule.len()] as usize;
        }
        let step = (k as u64) % self.total;
        let point = (u128::from(step) * u128::from(self.stride)) % u128::from(self.total);
        self.owner(point as u64)
    }
}

/// One cycle (`cycle` = the sum of `weights`) of smooth weighted round
/// robin: each turn every endpoint gains its weight, the one ahead is
/// picked and set back by the total.
fn smooth_cycle(weights: Vec<u64>, cycle: u64) -> Vec<u32> {
    let total = cycle as i64;
    let mut current = vec![0i64; weights.len()];
    (0..cycle)
        .map(|_| {
            let mut best = 0;
            for (i, w) in weights.iter().enumerate() {
                current[i] += *w as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total;
            best as u32
        })
        .collect()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The cluster's weights, if they differ and still describe its endpoints.
fn weights(cluster: &Cluster) -> Option<&Weights> {
    cluster
        .weights
        .as_ref()
        .filter(|w| w.cumulative.len() == cluster.endpoints.len())
}

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
    let weights = weights(cluster);
    let random = || match weights {
        Some(w) => w.random(),
        None => fastrand::usize(0..n),
    };
    match &cluster.load_balancer {
        LoadBalancer::RoundRobin => {
            let k = cluster.round_robin.fetch_add(1, Ordering::Relaxed);
            plain(weights.map_or(k % n, |w| w.round_robin(k)))
        }
        LoadBalancer::Random | LoadBalancer::Passthrough => plain(random()),
        LoadBalancer::LeastRequest => plain(least_request(cluster, random(), random())),
        LoadBalancer::HashHeader(name) => match input.headers.get(name) {
            Some(v) => plain(rendezvous(cluster, v.as_bytes())),
            None => plain(random()),
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
                None => plain(random()),
            }
        }
        LoadBalancer::HashCookie { name, path, ttl_ms } => {
            if let Some(v) = cookie(input.headers, name) {
                return plain(rendezvous(cluster, v.as_bytes()));
            }
            if *ttl_ms == 0 {
                return plain(random());
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
/// of two random endpoints (`a` and `b`, drawn by the caller). Sampling with
/// replacement keeps some randomness, so a slightly faster endpoint does not
/// soak up nearly all traffic. With weights, the candidates are drawn by
/// weight and the load compared is requests in flight per unit of weight,
/// so idle endpoints share by weight and busy ones by spare capacity (an
/// approximation of Envoy, which then schedules by `weight / (active + 1)`).
fn least_request(cluster: &Cluster, a: usize, b: usize) -> usize {
    let load = |i: usize| {
        cluster
            .endpoints
            .get(i)
            .map_or(usize::MAX, |e| e.in_flight.load(Ordering::Relaxed))
    };
    match weights(cluster) {
        None => {
            if load(b) < load(a) {
                b
            } else {
                a
            }
        }
        Some(w) => {
            // b wins when load_b / w_b < load_a / w_a; idle ties keep the
            // first draw, so idle endpoints share by weight.
            let busy = |i: usize| u128::from(load(i) as u64);
            let (wa, wb) = (u128::from(w.weight(a)), u128::from(w.weight(b)));
            if busy(b) * wa < busy(a) * wb { b } else { a }
        }
    }
}

/// The less loaded of two candidates drawn from `pool` (indices of
/// `cluster`'s endpoints, not empty), by weight when weights differ: how an
/// attempt picks again among the endpoints left after ejections and retries.
pub fn least_request_among(cluster: &Cluster, pool: &[usize]) -> usize {
    let draw = || match weights(cluster) {
        Some(w) => {
            let total: u64 = pool.iter().map(|i| w.weight(*i)).sum();
            let mut point = fastrand::u64(0..total.max(1));
            for &i in pool {
                let wi = w.weight(i);
                if point < wi {
                    return i;
                }
                point -= wi;
            }
            pool[pool.len() - 1]
        }
        None => pool[fastrand::usize(0..pool.len())],
    };
    least_request(cluster, draw(), draw())
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

/// Highest-random-weight hashing: stable under endpoint additions and
/// removals. With weights, each endpoint's score is `-ln(u) / weight` for its
/// hash `u` in (0, 1), lowest winning, so keys spread in proportion to weight.
fn rendezvous(cluster: &Cluster, key: &[u8]) -> usize {
    let key_hash = fnv1a(key, 0xcbf2_9ce4_8422_2325);
    let hash = |e: &Endpoint| {
        let h = match e.address {
            std::net::IpAddr::V4(a) => fnv1a(&a.octets(), key_hash),
            std::net::IpAddr::V6(a) => fnv1a(&a.octets(), key_hash),
        };
        mix(fnv1a(&e.port.to_be_bytes(), h))
    };
    if let Some(w) = weights(cluster) {
        let mut best = (0usize, f64::INFINITY);
        for (i, e) in cluster.endpoints.iter().enumerate() {
            // 53 random bits, shifted off zero.
            let u = ((hash(e) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -u.ln() / w.weight(i) as f64;
            if score < best.1 {
                best = (i, score);
            }
        }
        return best.0;
    }
    let mut best = (0usize, 0u64);
    for (i, e) in cluster.endpoints.iter().enumerate() {
        let h = hash(e);
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
