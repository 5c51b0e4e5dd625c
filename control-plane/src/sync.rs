//! Per-proxy sync state: what was sent, what was acknowledged, the last NACK.
//! Backs `/debug/syncz` and `sluicectl proxy-status`.

use crate::translate::ProxyIdentity;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A NACK as reported by a proxy.
#[derive(Clone, Debug, Serialize)]
pub struct NackInfo {
    /// Version the proxy refused.
    pub version: String,
    /// Its reason.
    pub error: String,
}

/// Sync state of one connected proxy.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxySync {
    /// Proxy id from its hello.
    pub id: String,
    /// Workload name.
    pub workload: String,
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Workload addresses.
    pub ips: Vec<String>,
    /// Last version sent.
    pub version_sent: Option<String>,
    /// Last version acknowledged.
    pub version_acked: Option<String>,
    /// Last refused version, if any since connecting.
    pub last_nack: Option<NackInfo>,
    /// Unix seconds when the stream opened.
    pub connected_at: u64,
    #[serde(skip)]
    pending: Option<Pending>,
}

#[derive(Clone, Debug)]
struct Pending {
    version: String,
    /// When the change behind this version was first seen; `None` for the
    /// initial snapshot of a new stream, which is not a convergence sample.
    changed_at: Option<Instant>,
}

/// What `/debug/syncz` returns.
#[derive(Debug, Serialize)]
pub struct SyncView {
    /// Current configuration revision.
    pub revision: u64,
    /// Connected proxies, by id.
    pub proxies: Vec<ProxySync>,
    /// The config source has seen a change it has not published yet (the
    /// rest of a burst waiting for quiet): `revision` is not final.
    pub pending: bool,
}

/// Registry of connected proxies.
#[derive(Default)]
pub struct SyncRegistry {
    next: AtomicU64,
    proxies: RwLock<BTreeMap<u64, ProxySync>>,
}

impl SyncRegistry {
    /// Registers a new stream and returns its handle.
    pub fn connect(&self, who: &ProxyIdentity) -> u64 {
        let conn = self.next.fetch_add(1, Ordering::Relaxed);
        let state = ProxySync {
            id: who.id.clone(),
            workload: who.workload.clone(),
            namespace: who.namespace.clone(),
            service_account: who.service_account.clone(),
            ips: who.ips.iter().map(|ip| ip.to_string()).collect(),
            version_sent: None,
            version_acked: None,
            last_nack: None,
            connected_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            pending: None,
        };
        self.write().insert(conn, state);
        conn
    }

    /// Forgets a closed stream.
    pub fn disconnect(&self, conn: u64) {
        self.write().remove(&conn);
    }

    /// Records a snapshot sent.
    pub fn sent(&self, conn: u64, version: &str, changed_at: Option<Instant>) {
        if let Some(p) = self.write().get_mut(&conn) {
            p.version_sent = Some(version.to_owned());
            p.pending = Some(Pending {
                version: version.to_owned(),
                changed_at,
            });
        }
    }

    /// Records an ACK; returns the convergence time when it closes a change.
    pub fn acked(&self, conn: u64, version: &str) -> Option<std::time::Duration> {
        let mut map = self.write();
        let p = map.get_mut(&conn)?;
        p.version_acked = Some(version.to_owned());
        match p.pending.take() {
            Some(pending) if pending.version == version => pending.changed_at.map(|t| t.elapsed()),
            other => {
                p.pending = other;
                None
            }
        }
    }

    /// Records a NACK.
    pub fn nacked(&self, conn: u64, version: &str, error: &str) {
        if let Some(p) = self.write().get_mut(&conn) {
            p.last_nack = Some(NackInfo {
                version: version.to_owned(),
                error: error.to_owned(),
            });
            if p.pending.as_ref().is_some_and(|x| x.version == version) {
                p.pending = None;
            }
        }
    }

    /// A copy of every proxy's state, sorted by id.
    pub fn view(&self, revision: u64) -> SyncView {
        let mut proxies: Vec<ProxySync> = self
            .proxies
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        proxies.sort_by(|a, b| a.id.cmp(&b.id));
        SyncView {
            revision,
            proxies,
            pending: false,
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, ProxySync>> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain data; the map is still usable.
        self.proxies.write().unwrap_or_else(|e| e.into_inner())
    }
}
