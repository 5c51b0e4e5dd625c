//! Per-revision sharing: proxies alike in what their outbound half depends
//! on hold one `Arc` of it, and a delta between two shared halves is computed
//! once however many proxies move from one to the other.

use super::delta;
use super::frame::{self, EncodedSnapshot};
use crate::index::MeshIndex;
use crate::translate::{Outbound, ProxyIdentity, translate_outbound, translate_own};
use bytes::Bytes;
use prost::Message;
use sluice_api::config as pb;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// One proxy's complete configuration: a shared outbound half (virtual hosts,
/// clusters and TCP services ordered by name, inbound and self unset) plus its own parts.
#[derive(Clone, Debug)]
pub struct ProxyView {
    /// Shared with every alike proxy of the revision.
    pub outbound: Arc<pb::ProxyConfig>,
    /// The encoding of `outbound`, shared like it: complete configs are sent
    /// as these bytes plus the proxy's own fields.
    pub outbound_bytes: Bytes,
    /// This workload's own parts, kept from one revision to the next while
    /// nothing they depend on changes.
    pub own: Arc<OwnParts>,
}

/// The parts of a config only its proxy gets.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnParts {
    /// The index's `own_generation` they were translated at.
    pub generation: u64,
    /// This workload's inbound side.
    pub inbound: Option<pb::Inbound>,
    /// This workload's metadata.
    pub self_: Option<pb::WorkloadMeta>,
    /// This workload's tracing and access logging.
    pub telemetry: Option<pb::Telemetry>,
}

impl OwnParts {
    /// Whether both hold the same parts, whatever their generations.
    fn same_parts(&self, other: &OwnParts) -> bool {
        self.inbound == other.inbound
            && self.self_ == other.self_
            && self.telemetry == other.telemetry
    }

    /// The fields of a delta from `self` to `next`: those that differ.
    fn changes_to(&self, next: &OwnParts) -> pb::ConfigDelta {
        pb::ConfigDelta {
            inbound: (self.inbound != next.inbound)
                .then(|| next.inbound.clone().unwrap_or_default()),
            self_: (self.self_ != next.self_).then(|| next.self_.clone().unwrap_or_default()),
            telemetry: (self.telemetry != next.telemetry)
                .then(|| next.telemetry.clone().unwrap_or_default()),
            ..pb::ConfigDelta::default()
        }
    }
}

impl ProxyView {
    /// The complete configuration to send.
    pub fn complete(&self) -> pb::ProxyConfig {
        pb::ProxyConfig {
            virtual_hosts: self.outbound.virtual_hosts.clone(),
            clusters: self.outbound.clusters.clone(),
            tcp_services: self.outbound.tcp_services.clone(),
            inbound: self.own.inbound.clone(),
            self_: self.own.self_.clone(),
            telemetry: self.own.telemetry.clone(),
        }
    }
}

/// Changes between two outbound halves, and their encoding (`ConfigDelta`
/// fields 2–7).
type SharedDelta = (Arc<pb::ConfigDelta>, Bytes);

/// A delta snapshot as sent to every proxy that moves between the same two
/// outbound halves with unchanged own parts: the same bytes for all of them.
type SharedFrame = (u64, u64, EncodedSnapshot);

#[derive(Default)]
struct Revision {
    revision: u64,
    /// Name-ordered copies of translation's shared halves, by the address of
    /// the half (kept here too, so the address stays unique).
    ordered: HashMap<usize, (Arc<Outbound>, Arc<pb::ProxyConfig>, Bytes)>,
    /// Addresses of the ordered copies.
    members: HashSet<usize>,
    /// By (old, new) address, with the delta's encoding; the old `Arc` is
    /// kept so its address stays unique.
    deltas: HashMap<(usize, usize), (Arc<pb::ProxyConfig>, SharedDelta)>,
    /// Encoded delta snapshots by (old, new) address of `deltas`, with
    /// their (base, new) revisions.
    frames: HashMap<(usize, usize), SharedFrame>,
}

/// Shared halves and deltas of the newest revision seen.
#[derive(Default)]
pub struct Sharing(Mutex<Revision>);

impl Sharing {
    fn lock(&self) -> MutexGuard<'_, Revision> {
        // Only plain maps behind it; a panic elsewhere leaves them usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration of `proxy` at `index`, its outbound half shared.
    pub fn view(&self, index: &MeshIndex, proxy: &ProxyIdentity) -> ProxyView {
        self.view_after(index, proxy, None)
    }

    /// Like [`Self::view`], reusing the own parts of `previous` (a view of the
    /// same proxy) when the index says their inputs did not change.
    pub fn view_after(
        &self,
        index: &MeshIndex,
        proxy: &ProxyIdentity,
        previous: Option<&ProxyView>,
    ) -> ProxyView {
        let own = match previous {
            Some(p) if p.own.generation == index.own_generation => p.own.clone(),
            _ => {
                let own = translate_own(index, proxy);
                let own = OwnParts {
                    generation: index.own_generation,
                    inbound: Some(own.inbound),
                    self_: Some(own.self_),
                    telemetry: Some(own.telemetry),
                };
                match previous {
                    // Most changes to own-part inputs (an endpoint of some
                    // other workload) leave this proxy's parts as they were:
                    // keeping the same `Arc` lets its delta be the shared one.
                    Some(p) if p.own.same_parts(&own) => p.own.clone(),
                    _ => Arc::new(own),
                }
            }
        };
        let outbound = translate_outbound(index, proxy);
        let key = Arc::as_ptr(&outbound) as usize;
        let current = {
            let mut shared = self.lock();
            if shared.revision < index.revision {
                *shared = Revision {
                    revision: index.revision,
                    ..Revision::default()
                };
            }
            if let Some((_, hit, bytes)) = shared.ordered.get(&key) {
                return ProxyView {
                    outbound: hit.clone(),
                    outbound_bytes: bytes.clone(),
                    own,
                };
            }
            shared.revision == index.revision
        };
        // First proxy of its group in this revision: order a copy by name.
        let mut ordered = pb::ProxyConfig {
            virtual_hosts: outbound.virtual_hosts.clone(),
            clusters: outbound.clusters.clone(),
            tcp_services: outbound.tcp_services.clone(),
            inbound: None,
            self_: None,
            telemetry: None,
        };
        delta::order_by_name(&mut ordered);
        // Encoded outside the lock; if two proxies of a group race, the
        // first copy kept is the one everybody shares.
        let mut outbound_bytes = frame::outbound_bytes(&ordered);
        let mut ordered = Arc::new(ordered);
        if current {
            let mut shared = self.lock();
            if shared.revision == index.revision {
                let (_, kept, bytes) = shared
                    .ordered
                    .entry(key)
                    .or_insert_with(|| (outbound.clone(), ordered.clone(), outbound_bytes.clone()));
                ordered = kept.clone();
                outbound_bytes = bytes.clone();
                shared.members.insert(Arc::as_ptr(&ordered) as usize);
            }
        }
        ProxyView {
            outbound: ordered,
            outbound_bytes,
            own,
        }
    }

    /// Changes between two outbound halves, computed and encoded once per pair.
    fn outbound_delta(&self, old: &Arc<pb::ProxyConfig>, new: &Arc<pb::ProxyConfig>) -> SharedDelta {
        let key = (Arc::as_ptr(old) as usize, Arc::as_ptr(new) as usize);
        if let Some((_, hit)) = self.lock().deltas.get(&key) {
            return hit.clone();
        }
        let computed = Arc::new(delta::diff(old, new));
        let computed = (computed.clone(), Bytes::from(computed.encode_to_vec()));
        let mut shared = self.lock();
        // Only pairs whose new half belongs to the current revision are kept:
        // they are the ones other proxies will ask for.
        if shared.members.contains(&key.1) {
            return shared
                .deltas
                .entry(key)
                .or_insert_with(|| (old.clone(), computed))
                .1
                .clone();
        }
        computed
    }

    /// The delta from `base` (last ACKed) to `next`, tagged with `base_version`.
    pub fn delta(&self, base: &ProxyView, next: &ProxyView, base_version: &str) -> pb::ConfigDelta {
        let mut d = if Arc::ptr_eq(&base.outbound, &next.outbound) {
            pb::ConfigDelta::default()
        } else {
            self.outbound_delta(&base.outbound, &next.outbound)
                .0
                .as_ref()
                .clone()
        };
        d.base_version = base_version.to_owned();
        if !Arc::ptr_eq(&base.own, &next.own) {
            let own = base.own.changes_to(&next.own);
            (d.inbound, d.self_, d.telemetry) = (own.inbound, own.self_, own.telemetry);
        }
        d
    }

    /// The delta snapshot from `base` (ACKed at `base_revision`) to `next`
    /// (at `revision`), encoded: the outbound changes are encoded once per
    /// move and shared; when both views also share their own parts the
    /// whole snapshot is the same for every proxy making that move, so it is
    /// kept and sent as it is.
    pub fn delta_frame(
        &self,
        (base_revision, base): (u64, &ProxyView),
        (revision, next): (u64, &ProxyView),
    ) -> Result<EncodedSnapshot, frame::TooLarge> {
        let encode = || {
            let outbound = if Arc::ptr_eq(&base.outbound, &next.outbound) {
                Bytes::new()
            } else {
                self.outbound_delta(&base.outbound, &next.outbound).1
            };
            let own = if Arc::ptr_eq(&base.own, &next.own) {
                pb::ConfigDelta::default()
            } else {
                base.own.changes_to(&next.own)
            };
            frame::delta(
                &revision.to_string(),
                &base_revision.to_string(),
                &outbound,
                &own,
            )
        };
        if !Arc::ptr_eq(&base.own, &next.own) {
            return encode();
        }
        let key = (
            Arc::as_ptr(&base.outbound) as usize,
            Arc::as_ptr(&next.outbound) as usize,
        );
        if let Some((b, r, hit)) = self.lock().frames.get(&key)
            && (*b, *r) == (base_revision, revision)
        {
            return Ok(hit.clone());
        }
        let encoded = encode()?;
        let mut shared = self.lock();
        // Kept only while `deltas` holds the old half (so the key's
        // addresses stay unique) and the new half is of the current revision.
        if shared.deltas.contains_key(&key) {
            shared
                .frames
                .insert(key, (base_revision, revision, encoded.clone()));
        }
        Ok(encoded)
    }

    /// Pairs whose delta is cached, for tests.
    #[cfg(test)]
    pub(crate) fn cached_deltas(&self) -> Vec<(usize, usize)> {
        self.lock().deltas.keys().copied().collect()
    }
}
