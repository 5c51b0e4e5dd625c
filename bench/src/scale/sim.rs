//! Simulated proxies: each opens its own gRPC connection and config stream with its own node
//! identity, turns every snapshot or delta into a complete config as `sluice-proxy` does, ACKs
//! it (NACKs a delta that does not apply) and records when each version was applied.
use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
use sluice_api::config::{
    Ack, Nack, Node, ProxyConfig, ProxyMessage, Snapshot, proxy_message::Kind,
};
use sluice_control_plane::server::{CONNECTION_WINDOW, STREAM_WINDOW, delta};
use std::sync::{Arc, Mutex};
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
pub async fn proxy(i: usize, url: String, services: usize, board: Board) {
    loop {
        let why = match stream(i, url.clone(), services, &board).await {
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
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use prost::Message as _;
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
    let mut applied: Option<(String, ProxyConfig)> = None;
    while let Some(snap) = inbound.message().await? {
        let bytes = snap.encoded_len();
        let version = snap.version.clone();
        let reply = match resolve(snap, &mut applied) {
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

/// Turns the last applied (version, config) into the one `snap` stands for;
/// on error the last applied config stays.
pub(crate) fn resolve(
    snap: Snapshot,
    applied: &mut Option<(String, ProxyConfig)>,
) -> Result<(), String> {
    match (snap.config, snap.delta) {
        (Some(config), None) => {
            *applied = Some((snap.version, config));
            Ok(())
        }
        (None, Some(d)) => {
            let (version, config) = applied.as_mut().ok_or("delta before any config")?;
            if d.base_version != *version {
                return Err(format!(
                    "delta base {} but applied {version}",
                    d.base_version
                ));
            }
            // In place: the simulator should cost what a proxy's stream does, not copy 2,000
            // configs per change on the controller's cores.
            apply_touched(config, &d)?;
            *version = snap.version;
            Ok(())
        }
        _ => Err(format!("snapshot {} carries neither or both", snap.version)),
    }
}

/// `delta::apply_in_place` with the lists the delta does not touch set aside
/// meanwhile: a real proxy walks its whole config on its own core, but here
/// 2,000 configs share the controller's two cores, and the walk over untouched
/// lists (a cache miss per name) was ~40% of the simulator's CPU per change.
/// The checks and the resulting lists are the same: an untouched list is
/// returned as it was (name-ordered, as complete configs arrive and as every
/// applied delta leaves the lists it touches).
fn apply_touched(
    config: &mut ProxyConfig,
    d: &sluice_api::config::ConfigDelta,
) -> Result<(), String> {
    let keep_hosts = d.virtual_hosts.is_empty() && d.removed_virtual_hosts.is_empty();
    let keep_clusters = d.clusters.is_empty() && d.removed_clusters.is_empty();
    let keep_tcp = d.tcp_services.is_empty() && d.removed_tcp_services.is_empty();
    let hosts = if keep_hosts {
        std::mem::take(&mut config.virtual_hosts)
    } else {
        Vec::new()
    };
    let clusters = if keep_clusters {
        std::mem::take(&mut config.clusters)
    } else {
        Vec::new()
    };
    let tcp = if keep_tcp {
        std::mem::take(&mut config.tcp_services)
    } else {
        Vec::new()
    };
    let applied = delta::apply_in_place(config, d).map_err(|e| e.to_string());
    if keep_hosts {
        config.virtual_hosts = hosts;
    }
    if keep_clusters {
        config.clusters = clusters;
    }
    if keep_tcp {
        config.tcp_services = tcp;
    }
    applied
}
