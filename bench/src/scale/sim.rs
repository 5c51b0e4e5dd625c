//! Simulated proxies: each opens its own gRPC connection and config stream with its own node
//! identity, turns every snapshot or delta into a complete config as `sluice-proxy` does, ACKs
//! it (NACKs a delta that does not apply) and records when each version was applied.
use prost::Message as _;
use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{
    Ack, Cluster, ConfigDelta, Nack, Node, ProxyConfig, ProxyMessage, Snapshot, TcpService,
    VirtualHost, proxy_message::Kind,
};
use sluice_api::delta::Named;
use sluice_control_plane::server::{CONNECTION_WINDOW, STREAM_WINDOW, delta};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// What one simulated proxy has received.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// (version, applied at, encoded bytes) of every applied snapshot, in order.
    pub snapshots: Vec<(u64, Instant, usize)>,
    /// Snapshots refused (a delta whose base is not the applied version).
    pub nacks: usize,
    /// Why the stream last ended, if it did.
    pub ended: Option<String>,
    /// How many times the stream ended or failed to open.
    pub reconnects: usize,
}

impl Seen {
    /// Latest version received (0 before the first snapshot).
    pub fn latest(&self) -> u64 {
        self.snapshots.last().map_or(0, |s| s.0)
    }
    /// First arrival of a version above `v`.
    pub fn first_above(&self, v: u64) -> Option<(Instant, usize)> {
        self.snapshots.iter().find(|s| s.0 > v).map(|s| (s.1, s.2))
    }
}

/// Shared record of every simulated proxy.
pub type Board = Arc<Vec<Mutex<Seen>>>;

/// A fresh board for `n` proxies.
pub fn board(n: usize) -> Board {
    Arc::new((0..n).map(|_| Mutex::new(Seen::default())).collect())
}

fn lock(board: &Board, i: usize) -> Option<std::sync::MutexGuard<'_, Seen>> {
    board
        .get(i)
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Runs proxy `i` until aborted: like a real sidecar it reconnects after a failed connect or a
/// closed stream (200 ms apart), so a full accept backlog during a rollout only delays it.
pub async fn proxy(
    i: usize,
    url: String,
    services: usize,
    board: Board,
    shared: Arc<Mutex<Shared>>,
) {
    loop {
        let why = match stream(i, url.clone(), services, &board, &shared).await {
            Ok(()) => "stream closed by the controller".to_string(),
            Err(e) => e.to_string(),
        };
        if let Some(mut s) = lock(&board, i) {
            s.ended = Some(why);
            s.reconnects += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn stream(
    i: usize,
    url: String,
    services: usize,
    board: &Board,
    shared: &Mutex<Shared>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect()
        .await?;
    let mut client = ConfigDiscoveryClient::new(channel).max_decoding_message_size(512 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let svc = i % services.max(1);
    let node = Node {
        id: format!("sim-{i:05}.scale"),
        workload: format!("sim-{i:05}"),
        namespace: "scale".into(),
        service_account: format!("svc-{svc:04}"),
        labels: [("app".to_string(), format!("sim-{i:05}"))]
            .into_iter()
            .collect(),
        ips: vec![format!("10.250.{}.{}", i / 250, i % 250 + 1)],
        proxy_version: "sluice-bench".into(),
        trust_domain: "cluster.local".into(),
    };
    tx.send(ProxyMessage {
        kind: Some(Kind::Hello(node)),
    })
    .await?;
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    let mut applied: Option<Applied> = None;
    while let Some(snap) = inbound.message().await? {
        let bytes = snap.encoded_len();
        let version = snap.version.clone();
        let reply = match resolve(snap, &mut applied, shared) {
            Ok(()) => {
                let at = Instant::now();
                if let Some(mut s) = lock(board, i) {
                    s.snapshots
                        .push((version.parse::<u64>().unwrap_or(0), at, bytes));
                }
                Kind::Ack(Ack { version })
            }
            Err(error) => {
                if let Some(mut s) = lock(board, i) {
                    s.nacks += 1;
                }
                Kind::Nack(Nack { version, error })
            }
        };
        tx.send(ProxyMessage { kind: Some(reply) }).await?;
    }
    Ok(())
}

/// The lists every proxy of one namespace receives alike: the outbound half.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Outbound {
    virtual_hosts: Vec<VirtualHost>,
    clusters: Vec<Cluster>,
    tcp_services: Vec<TcpService>,
}

/// What one simulated proxy has applied: its own parts, and the outbound half
/// it shares with every proxy that applied the same one.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) version: String,
    own: ProxyConfig,
    outbound: Arc<Outbound>,
}

impl Applied {
    /// The complete config, as a proxy would hold it.
    #[cfg(test)]
    pub(crate) fn config(&self) -> ProxyConfig {
        ProxyConfig {
            virtual_hosts: self.outbound.virtual_hosts.clone(),
            clusters: self.outbound.clusters.clone(),
            tcp_services: self.outbound.tcp_services.clone(),
            ..self.own.clone()
        }
    }

    #[cfg(test)]
    pub(crate) fn shares_outbound_with(&self, other: &Applied) -> bool {
        Arc::ptr_eq(&self.outbound, &other.outbound)
    }
}

/// One copy of each distinct outbound half across the simulated proxies.
///
/// At the full size (1,000 services, 10,000 endpoints) the outbound half is ~2.2 MB
/// encoded, and 2,000 private copies would need ~37 GB; every proxy of the bench's mesh gets
/// the same one. Each proxy still decodes every byte it receives; a full config's outbound
/// half is swapped for the equal one already held, and a delta's outbound part is applied
/// once per (base half, delta) and the result shared by every proxy making the same move.
#[derive(Default)]
pub struct Shared {
    halves: HashMap<u64, Vec<Weak<Outbound>>>,
    moves: HashMap<(usize, u64), Move>,
}

/// One applied move: the base half is held weakly so its address stays unique while the
/// entry lives, and the delta's outbound part is kept to rule out hash collisions.
struct Move {
    base: Weak<Outbound>,
    delta: ConfigDelta,
    result: Result<Weak<Outbound>, String>,
}

impl Shared {
    /// The shared half equal to `half`, or `half` itself (then remembered). Callers that
    /// hold no lock use [`intern_unlocked`] so the 2 MB hash and compare run outside it.
    fn intern(&mut self, half: Outbound) -> Arc<Outbound> {
        let key = half_key(&half);
        if let Some(found) = self.candidates(key).into_iter().find(|h| **h == half) {
            return found;
        }
        self.remember(key, half)
    }

    fn candidates(&mut self, key: u64) -> Vec<Arc<Outbound>> {
        let same = self.halves.entry(key).or_default();
        same.retain(|w| w.strong_count() > 0);
        same.iter().filter_map(Weak::upgrade).collect()
    }

    fn remember(&mut self, key: u64, half: Outbound) -> Arc<Outbound> {
        let half = Arc::new(half);
        self.halves
            .entry(key)
            .or_default()
            .push(Arc::downgrade(&half));
        half
    }

    /// `base` with the outbound part of a delta (`part`) applied, computed once per move.
    fn step(&mut self, base: &Arc<Outbound>, part: &ConfigDelta) -> Result<Arc<Outbound>, String> {
        let key = (Arc::as_ptr(base) as usize, delta_key(part));
        if let Some(m) = self.moves.get(&key) {
            let same_base = m.base.upgrade().is_some_and(|b| Arc::ptr_eq(&b, base));
            if same_base && m.delta == *part {
                match &m.result {
                    Err(e) => return Err(e.clone()),
                    Ok(w) => {
                        if let Some(done) = w.upgrade() {
                            return Ok(done);
                        }
                    }
                }
            }
        }
        let mut tmp = ProxyConfig {
            virtual_hosts: base.virtual_hosts.clone(),
            clusters: base.clusters.clone(),
            tcp_services: base.tcp_services.clone(),
            ..Default::default()
        };
        let result = delta::apply_in_place(&mut tmp, part)
            .map_err(|e| e.to_string())
            .map(|()| {
                self.intern(Outbound {
                    virtual_hosts: tmp.virtual_hosts,
                    clusters: tmp.clusters,
                    tcp_services: tmp.tcp_services,
                })
            });
        if self.moves.len() >= 256 {
            self.moves.retain(|_, m| m.base.strong_count() > 0);
        }
        self.moves.insert(
            key,
            Move {
                base: Arc::downgrade(base),
                delta: part.clone(),
                result: result.as_ref().map(Arc::downgrade).map_err(Clone::clone),
            },
        );
        result
    }
}

/// [`Shared::intern`] with the hashing and comparing done outside the lock: two proxies
/// racing may both keep a copy, which costs memory, never correctness.
fn intern_unlocked(shared: &Mutex<Shared>, half: Outbound) -> Arc<Outbound> {
    let key = half_key(&half);
    let candidates = lock_shared(shared).candidates(key);
    if let Some(found) = candidates.into_iter().find(|h| **h == half) {
        return found;
    }
    lock_shared(shared).remember(key, half)
}

/// A hash key of a half: every entry's name and encoded size. Not its bytes: proto maps
/// decode into `HashMap`s with their own random order, so two proxies' copies of one half
/// encode differently. Equality is checked on the decoded lists.
fn half_key(half: &Outbound) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries_into(&mut h, &half.virtual_hosts);
    entries_into(&mut h, &half.clusters);
    entries_into(&mut h, &half.tcp_services);
    h.finish()
}

/// [`half_key`] of a delta's outbound part, removals included.
fn delta_key(part: &ConfigDelta) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries_into(&mut h, &part.virtual_hosts);
    entries_into(&mut h, &part.clusters);
    entries_into(&mut h, &part.tcp_services);
    for removed in [
        &part.removed_virtual_hosts,
        &part.removed_clusters,
        &part.removed_tcp_services,
    ] {
        removed.hash(&mut h);
    }
    h.finish()
}

fn entries_into<T: Named + prost::Message>(h: &mut impl Hasher, list: &[T]) {
    list.len().hash(h);
    for e in list {
        e.name().hash(h);
        e.encoded_len().hash(h);
    }
}

fn lock_shared(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Turns the last applied config into the one `snap` stands for; on error the
/// last applied config stays.
pub(crate) fn resolve(
    snap: Snapshot,
    applied: &mut Option<Applied>,
    shared: &Mutex<Shared>,
) -> Result<(), String> {
    match (snap.config, snap.delta) {
        (Some(mut config), None) => {
            let half = Outbound {
                virtual_hosts: std::mem::take(&mut config.virtual_hosts),
                clusters: std::mem::take(&mut config.clusters),
                tcp_services: std::mem::take(&mut config.tcp_services),
            };
            let outbound = intern_unlocked(shared, half);
            *applied = Some(Applied {
                version: snap.version,
                own: config,
                outbound,
            });
            Ok(())
        }
        (None, Some(mut d)) => {
            let a = applied.as_mut().ok_or("delta before any config")?;
            if d.base_version != a.version {
                return Err(format!(
                    "delta base {} but applied {}",
                    d.base_version, a.version
                ));
            }
            let part = ConfigDelta {
                virtual_hosts: std::mem::take(&mut d.virtual_hosts),
                removed_virtual_hosts: std::mem::take(&mut d.removed_virtual_hosts),
                clusters: std::mem::take(&mut d.clusters),
                removed_clusters: std::mem::take(&mut d.removed_clusters),
                tcp_services: std::mem::take(&mut d.tcp_services),
                removed_tcp_services: std::mem::take(&mut d.removed_tcp_services),
                ..Default::default()
            };
            let untouched = part == ConfigDelta::default();
            let outbound = if untouched {
                a.outbound.clone()
            } else {
                lock_shared(shared).step(&a.outbound, &part)?
            };
            // The rest (inbound, metadata, telemetry) is the proxy's own: applied per proxy.
            let mut own = a.own.clone();
            delta::apply_in_place(&mut own, &d).map_err(|e| e.to_string())?;
            a.own = own;
            a.outbound = outbound;
            a.version = snap.version;
            Ok(())
        }
        _ => Err(format!("snapshot {} carries neither or both", snap.version)),
    }
}
