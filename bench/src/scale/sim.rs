//! Simulated proxies: each opens its own gRPC connection and config stream with its own node
//! identity, turns every snapshot or delta into a complete config as `sluice-proxy` does, ACKs
//! it (NACKs a delta that does not apply) and records when each version was applied.
use bytes::Bytes;
use prost::Message as _;
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
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

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
    let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(512 << 20);
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
    client.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(STREAM_PATH);
    let mut inbound = client
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            path,
            RawSnapshots,
        )
        .await?
        .into_inner();
    let mut applied: Option<Applied> = None;
    while let Some(raw) = inbound.message().await? {
        let bytes = raw.len();
        let decoded = decode_shared(shared, raw)?;
        let version = decoded.version().to_owned();
        let reply = match decoded.resolve(&mut applied, shared) {
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
    virtual_hosts: Entries<VirtualHost>,
    clusters: Entries<Cluster>,
    tcp_services: Entries<TcpService>,
}

/// A list of a half by name. Entries are shared between the halves of
/// successive revisions, so applying a delta copies pointers, not the
/// 10,000 endpoints of the full-size mesh.
type Entries<T> = std::collections::BTreeMap<String, Arc<T>>;

fn entries<T: Named>(list: Vec<T>) -> Entries<T> {
    list.into_iter()
        .map(|e| (e.name().to_owned(), Arc::new(e)))
        .collect()
}

/// `list` with `removed` taken out and `upserts` put in, like
/// `delta::apply_in_place`: an unknown removal refuses the whole delta.
fn merged<T: Named + Clone>(
    kind: &str,
    list: &Entries<T>,
    upserts: &[T],
    removed: &[String],
) -> Result<Entries<T>, String> {
    let mut out = list.clone();
    for name in removed {
        if out.remove(name).is_none() {
            return Err(format!("delta removes unknown {kind} {name:?}"));
        }
    }
    for e in upserts {
        out.insert(e.name().to_owned(), Arc::new(e.clone()));
    }
    Ok(out)
}

#[cfg(test)]
fn listed<T: Clone>(entries: &Entries<T>) -> Vec<T> {
    entries.values().map(|e| e.as_ref().clone()).collect()
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
            virtual_hosts: listed(&self.outbound.virtual_hosts),
            clusters: listed(&self.outbound.clusters),
            tcp_services: listed(&self.outbound.tcp_services),
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
/// the same one. A full config's outbound half is swapped for the equal one already held; a
/// delta is decoded once per distinct bytes (the controller sends the same bytes to every
/// proxy making the same move) and its outbound part applied once per (base half, delta),
/// the result shared by every proxy making that move, entries shared between halves.
#[derive(Default)]
pub struct Shared {
    halves: HashMap<u64, Vec<Weak<Outbound>>>,
    moves: HashMap<(usize, u64), Move>,
    /// Recent delta snapshots by the hash of their bytes (bytes kept to
    /// rule out collisions).
    decoded: HashMap<u64, (Bytes, Arc<Snapshot>)>,
    /// Recent outbound halves of complete configs by the hash of their bytes.
    complete_halves: HashMap<u64, (Bytes, Arc<Outbound>)>,
}

/// One applied move: the base half is held weakly so its address stays unique while the
/// entry lives, and the delta's outbound part is kept to rule out hash collisions.
struct Move {
    base: Weak<Outbound>,
    delta: Arc<Snapshot>,
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

    /// `base` with the outbound part of delta `part` applied (its own fields
    /// are ignored), computed once per move.
    fn step(
        &mut self,
        base: &Arc<Outbound>,
        snap: &Arc<Snapshot>,
    ) -> Result<Arc<Outbound>, String> {
        let empty = ConfigDelta::default();
        let part = snap.delta.as_ref().unwrap_or(&empty);
        let key = (Arc::as_ptr(base) as usize, delta_key(part));
        if let Some(m) = self.moves.get(&key) {
            let same_base = m.base.upgrade().is_some_and(|b| Arc::ptr_eq(&b, base));
            let same_delta = Arc::ptr_eq(&m.delta, snap)
                || m.delta
                    .delta
                    .as_ref()
                    .is_some_and(|d| same_outbound(d, part));
            if same_base && same_delta {
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
        let result = (|| {
            Ok(Outbound {
                virtual_hosts: merged(
                    "virtual host",
                    &base.virtual_hosts,
                    &part.virtual_hosts,
                    &part.removed_virtual_hosts,
                )?,
                clusters: merged(
                    "cluster",
                    &base.clusters,
                    &part.clusters,
                    &part.removed_clusters,
                )?,
                tcp_services: merged(
                    "tcp service",
                    &base.tcp_services,
                    &part.tcp_services,
                    &part.removed_tcp_services,
                )?,
            })
        })()
        .map(|half| self.intern(half));
        if self.moves.len() >= 256 {
            self.moves.retain(|_, m| m.base.strong_count() > 0);
        }
        self.moves.insert(
            key,
            Move {
                base: Arc::downgrade(base),
                delta: snap.clone(),
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

/// A hash key of a half: every entry's name and encoded size, cheaper than
/// hashing its bytes. Equality is checked on the decoded lists.
fn half_key(half: &Outbound) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries_into(&mut h, half.virtual_hosts.values().map(Arc::as_ref));
    entries_into(&mut h, half.clusters.values().map(Arc::as_ref));
    entries_into(&mut h, half.tcp_services.values().map(Arc::as_ref));
    h.finish()
}

/// [`half_key`] of a delta's outbound part, removals included.
fn delta_key(part: &ConfigDelta) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    entries_into(&mut h, part.virtual_hosts.iter());
    entries_into(&mut h, part.clusters.iter());
    entries_into(&mut h, part.tcp_services.iter());
    for removed in [
        &part.removed_virtual_hosts,
        &part.removed_clusters,
        &part.removed_tcp_services,
    ] {
        removed.hash(&mut h);
    }
    h.finish()
}

fn entries_into<'a, T: Named + prost::Message + 'a>(
    h: &mut impl Hasher,
    list: impl ExactSizeIterator<Item = &'a T>,
) {
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
                virtual_hosts: entries(std::mem::take(&mut config.virtual_hosts)),
                clusters: entries(std::mem::take(&mut config.clusters)),
                tcp_services: entries(std::mem::take(&mut config.tcp_services)),
            };
            let outbound = intern_unlocked(shared, half);
            *applied = Some(Applied {
                version: snap.version,
                own: config,
                outbound,
            });
            Ok(())
        }
        (None, Some(d)) => {
            let snap = Arc::new(Snapshot {
                version: snap.version,
                config: None,
                delta: Some(d),
            });
            apply_delta(&snap, applied, shared)
        }
        _ => Err(format!("snapshot {} carries neither or both", snap.version)),
    }
}

/// Applies the delta of `snap` to the last applied config.
fn apply_delta(
    snap: &Arc<Snapshot>,
    applied: &mut Option<Applied>,
    shared: &Mutex<Shared>,
) -> Result<(), String> {
    let Some(d) = &snap.delta else {
        return Err(format!("snapshot {} carries no delta", snap.version));
    };
    let a = applied.as_mut().ok_or("delta before any config")?;
    if d.base_version != a.version {
        return Err(format!(
            "delta base {} but applied {}",
            d.base_version, a.version
        ));
    }
    let outbound = if same_outbound(d, &ConfigDelta::default()) {
        a.outbound.clone()
    } else {
        lock_shared(shared).step(&a.outbound, snap)?
    };
    // The rest (inbound, metadata, telemetry) is the proxy's own: applied per proxy.
    let own_part = ConfigDelta {
        base_version: d.base_version.clone(),
        inbound: d.inbound.clone(),
        self_: d.self_.clone(),
        telemetry: d.telemetry.clone(),
        ..Default::default()
    };
    let mut own = a.own.clone();
    delta::apply_in_place(&mut own, &own_part).map_err(|e| e.to_string())?;
    a.own = own;
    a.outbound = outbound;
    a.version = snap.version.clone();
    Ok(())
}

/// Whether two deltas change the outbound half alike (compared in place:
/// churn deltas can carry most of the mesh).
fn same_outbound(a: &ConfigDelta, b: &ConfigDelta) -> bool {
    a.virtual_hosts == b.virtual_hosts
        && a.removed_virtual_hosts == b.removed_virtual_hosts
        && a.clusters == b.clusters
        && a.removed_clusters == b.removed_clusters
        && a.tcp_services == b.tcp_services
        && a.removed_tcp_services == b.removed_tcp_services
}

/// The config stream's method.
const STREAM_PATH: &str = "/sluice.config.v1.ConfigDiscovery/Stream";

/// Sends proxy messages, receives each snapshot as its undecoded bytes.
struct RawSnapshots;

impl Codec for RawSnapshots {
    type Encode = ProxyMessage;
    type Decode = Bytes;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for RawSnapshots {
    type Item = ProxyMessage;
    type Error = tonic::Status;

    fn encode(&mut self, item: ProxyMessage, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl Decoder for RawSnapshots {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        use bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A received snapshot, decoded: deltas are shared by every proxy that got
/// the same bytes (the controller sends one encoding to every proxy making
/// the same move), complete configs are each proxy's own.
pub(crate) enum Decoded {
    /// A complete config: its outbound half decoded once per distinct bytes.
    Complete {
        version: String,
        own: Box<ProxyConfig>,
        outbound: Arc<Outbound>,
    },
    Own(Box<Snapshot>),
    Shared(Arc<Snapshot>),
}

impl Decoded {
    fn version(&self) -> &str {
        match self {
            Decoded::Complete { version, .. } => version,
            Decoded::Own(s) => &s.version,
            Decoded::Shared(s) => &s.version,
        }
    }

    /// [`resolve`] for either kind.
    pub(crate) fn resolve(
        self,
        applied: &mut Option<Applied>,
        shared: &Mutex<Shared>,
    ) -> Result<(), String> {
        match self {
            Decoded::Complete {
                version,
                own,
                outbound,
            } => {
                *applied = Some(Applied {
                    version,
                    own: *own,
                    outbound,
                });
                Ok(())
            }
            Decoded::Own(snap) => resolve(*snap, applied, shared),
            Decoded::Shared(snap) => match (&snap.config, &snap.delta) {
                (None, Some(_)) => apply_delta(&snap, applied, shared),
                _ => resolve(snap.as_ref().clone(), applied, shared),
            },
        }
    }
}

/// Decodes `raw`, once for every proxy that receives the same delta bytes.
/// Which proxy decodes does not change what each one applies: equal bytes
/// are the same message. Without this one simulator core would decode every
/// proxy's copy of every churn delta, and measure itself, not the controller.
pub(crate) fn decode_shared(shared: &Mutex<Shared>, raw: Bytes) -> Result<Decoded, tonic::Status> {
    let key = bytes_key(&raw);
    if let Some(hit) = lock_shared(shared).decoded.get(&key)
        && hit.0 == raw
    {
        return Ok(Decoded::Shared(hit.1.clone()));
    }
    if let Some((version, outbound, own)) = split_complete(&raw) {
        return complete_shared(shared, version, outbound, &own);
    }
    let snap = Snapshot::decode(raw.clone())
        .map_err(|e| tonic::Status::internal(format!("decoding a snapshot: {e}")))?;
    if snap.delta.is_none() {
        return Ok(Decoded::Own(Box::new(snap)));
    }
    let snap = Arc::new(snap);
    let mut s = lock_shared(shared);
    if s.decoded.len() >= 64 {
        s.decoded.clear();
    }
    s.decoded.insert(key, (raw, snap.clone()));
    Ok(Decoded::Shared(snap))
}

/// A complete config's parts from its encoding without decoding them:
/// (version, the outbound fields 1–3 of its config, the other fields).
/// `None` for anything else (a delta, or an encoding this scan does not know).
fn split_complete(raw: &[u8]) -> Option<(String, Bytes, Bytes)> {
    let mut version = None;
    let mut config = None;
    for (tag, _, body) in fields(raw)? {
        match tag {
            1 => version = Some(std::str::from_utf8(body).ok()?.to_owned()),
            2 => config = Some(body),
            _ => return None,
        }
    }
    let (mut outbound, mut own) = (Vec::new(), Vec::new());
    for (tag, whole, _) in fields(config?)? {
        match tag {
            1..=3 => outbound.extend_from_slice(whole),
            _ => own.extend_from_slice(whole),
        }
    }
    Some((version.unwrap_or_default(), outbound.into(), own.into()))
}

/// One length-delimited field: (tag, the whole field, its payload).
type Field<'a> = (u32, &'a [u8], &'a [u8]);

/// Length-delimited fields of a message as (tag, whole field, payload);
/// `None` if any field is of another wire type or malformed.
fn fields(mut buf: &[u8]) -> Option<Vec<Field<'_>>> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let mut out = Vec::new();
    while !buf.is_empty() {
        let start = buf;
        let (tag, wire) = decode_key(&mut buf).ok()?;
        if wire != WireType::LengthDelimited {
            return None;
        }
        let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
        let body = buf.get(..len)?;
        buf = &buf[len..];
        let whole = &start[..start.len() - buf.len()];
        out.push((tag, whole, body));
    }
    Some(out)
}

/// A hash key of received bytes (the bytes themselves are kept to rule out collisions).
fn bytes_key(bytes: &Bytes) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// A complete config whose outbound half is decoded once per distinct bytes.
fn complete_shared(
    shared: &Mutex<Shared>,
    version: String,
    outbound: Bytes,
    own: &[u8],
) -> Result<Decoded, tonic::Status> {
    let bad = |e: prost::DecodeError| tonic::Status::internal(format!("decoding a snapshot: {e}"));
    let own = Box::new(ProxyConfig::decode(own).map_err(bad)?);
    let key = bytes_key(&outbound);
    if let Some(hit) = lock_shared(shared).complete_halves.get(&key)
        && hit.0 == outbound
    {
        let outbound = hit.1.clone();
        return Ok(Decoded::Complete {
            version,
            own,
            outbound,
        });
    }
    let mut config = ProxyConfig::decode(outbound.clone()).map_err(bad)?;
    let half = intern_unlocked(
        shared,
        Outbound {
            virtual_hosts: entries(std::mem::take(&mut config.virtual_hosts)),
            clusters: entries(std::mem::take(&mut config.clusters)),
            tcp_services: entries(std::mem::take(&mut config.tcp_services)),
        },
    );
    let mut s = lock_shared(shared);
    if s.complete_halves.len() >= 16 {
        s.complete_halves.clear();
    }
    s.complete_halves.insert(key, (outbound, half.clone()));
    Ok(Decoded::Complete {
        version,
        own,
        outbound: half,
    })
}
