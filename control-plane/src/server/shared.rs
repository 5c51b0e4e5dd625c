//! Per-revision sharing: proxies alike in what their outbound half depends
//! on hold one `Arc` of its encoding, and a delta between two shared halves
//! is computed and encoded once however many proxies move from one to the other.

use super::frame::{self, EncodedSnapshot};
use super::half::{Digest, EncodedHalf};
use crate::index::MeshIndex;
use crate::translate::{Outbound, ProxyIdentity, translate_outbound, translate_own};
use bytes::Bytes;
use prost::Message;
use sluice_api::config as pb;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// One proxy's complete configuration: a shared outbound half (virtual hosts,
/// clusters and TCP services ordered by name) plus its own parts.
#[derive(Clone, Debug)]
pub struct ProxyView {
    /// Shared with every alike proxy of the revision.
    pub half: Arc<EncodedHalf>,
    /// This workload's own parts, kept from one revision to the next while
    /// they do not change.
    pub own: Arc<OwnParts>,
    /// The index `own_generation` at which `own` was last found current.
    pub own_generation: u64,
}

/// What a stream keeps of the config its proxy ACKed: enough to compute the
/// next delta, without the half's bytes.
#[derive(Clone, Debug)]
pub struct Base {
    /// The ACKed half's names and hashes.
    pub digest: Arc<Digest>,
    /// The ACKed own parts.
    pub own: Arc<OwnParts>,
    /// The index `own_generation` at which `own` was last found current.
    pub own_generation: u64,
}

/// The parts of a config only its proxy gets.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnParts {
    /// This workload's inbound side.
    pub inbound: Option<pb::Inbound>,
    /// This workload's metadata.
    pub self_: Option<pb::WorkloadMeta>,
    /// This workload's tracing and access logging.
    pub telemetry: Option<pb::Telemetry>,
    /// Mesh-wide outbound settings (MeshConfig `outboundTrafficPolicy`).
    pub outbound: Option<pb::Outbound>,
}

impl OwnParts {
    /// The fields of a delta from `self` to `next`: those that differ.
    fn changes_to(&self, next: &OwnParts) -> pb::ConfigDelta {
        pb::ConfigDelta {
            inbound: (self.inbound != next.inbound)
                .then(|| next.inbound.clone().unwrap_or_default()),
            self_: (self.self_ != next.self_).then(|| next.self_.clone().unwrap_or_default()),
            telemetry: (self.telemetry != next.telemetry)
                .then(|| next.telemetry.clone().unwrap_or_default()),
            outbound: (self.outbound != next.outbound).then(|| next.outbound.unwrap_or_default()),
            ..pb::ConfigDelta::default()
        }
    }
}

impl ProxyView {
    /// The complete configuration (decodes the half; for tests and tools).
    pub fn complete(&self) -> pb::ProxyConfig {
        pb::ProxyConfig {
            inbound: self.own.inbound.clone(),
            self_: self.own.self_.clone(),
            telemetry: self.own.telemetry.clone(),
            outbound: self.own.outbound,
            ..self.half.decode()
        }
    }

    /// What to remember of this view once its proxy ACKs it.
    pub fn base(&self) -> Base {
        Base {
            digest: self.half.digest.clone(),
            own: self.own.clone(),
            own_generation: self.own_generation,
        }
    }
}

/// A delta snapshot as sent to every proxy that moves between the same two
/// outbound halves with unchanged own parts: the same bytes for all of them.
type SharedFrame = (u64, u64, EncodedSnapshot);

#[derive(Default)]
struct Revision {
    revision: u64,
    /// Encoded halves by the address of translation's half (kept here too,
    /// so the address stays unique).
    halves: HashMap<usize, (Arc<Outbound>, Arc<EncodedHalf>)>,
    /// Addresses of the digests of `halves`.
    members: HashSet<usize>,
    /// Encoded outbound changes by (old, new) digest address, `None` when
    /// too large to send as a delta; the old digest is kept so its address
    /// stays unique.
    deltas: HashMap<(usize, usize), (Arc<Digest>, Option<Bytes>)>,
    /// Encoded delta snapshots by (old, new) digest address of `deltas`,
    /// with their (base, new) revisions.
    frames: HashMap<(usize, usize), SharedFrame>,
}

/// Shared halves and deltas of the newest revision seen.
#[derive(Default)]
pub struct Sharing(Mutex<Revision>);

/// Outbound changes of up to this size always go as a delta.
pub const LARGE_DELTA: usize = 64 << 10;

/// Whether outbound changes of `delta` bytes to an outbound half of `half`
/// bytes are better sent as the complete config: over [`LARGE_DELTA`] and
/// over half the size of the half. A proxy far behind can need a delta about as large as the
/// whole config, and such a delta would be its stream's own copy, held until
/// the proxy reads it, where the complete config's bytes are shared.
fn too_large(delta: usize, half: usize) -> bool {
    delta > LARGE_DELTA && delta > half / 2
}

fn address<T>(arc: &Arc<T>) -> usize {
    Arc::as_ptr(arc) as usize
}

impl Sharing {
    fn lock(&self) -> MutexGuard<'_, Revision> {
        // Only plain maps behind it; a panic elsewhere leaves them usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration of `proxy` at `index`, its outbound half shared.
    pub fn view(&self, index: &MeshIndex, proxy: &ProxyIdentity) -> ProxyView {
        self.view_after(index, proxy, None)
    }

    /// Like [`Self::view`], reusing the own parts of `previous` (what the
    /// same proxy ACKed) when they did not change.
    pub fn view_after(
        &self,
        index: &MeshIndex,
        proxy: &ProxyIdentity,
        previous: Option<&Base>,
    ) -> ProxyView {
        let own = match previous {
            Some(p) if p.own_generation == index.own_generation => p.own.clone(),
            _ => {
                let own = translate_own(index, proxy);
                let own = OwnParts {
                    inbound: Some(own.inbound),
                    self_: Some(own.self_),
                    telemetry: Some(own.telemetry),
                    outbound: Some(own.outbound),
                };
                match previous {
                    // Most changes to own-part inputs (an endpoint of some
                    // other workload) leave this proxy's parts as they were:
                    // keeping the same `Arc` lets its delta be the shared one.
                    Some(p) if *p.own == own => p.own.clone(),
                    _ => Arc::new(own),
                }
            }
        };
        let own_generation = index.own_generation;
        let started = std::time::Instant::now();
        let outbound = translate_outbound(index, proxy);
        let translated = started.elapsed();
        let key = address(&outbound);
        let current = {
            let mut shared = self.lock();
            if shared.revision < index.revision {
                *shared = Revision {
                    revision: index.revision,
                    ..Revision::default()
                };
            }
            if let Some((_, half)) = shared.halves.get(&key) {
                return ProxyView {
                    half: half.clone(),
                    own,
                    own_generation,
                };
            }
            shared.revision == index.revision
        };
        // First proxy of its group in this revision. Encoded outside the
        // lock; if two proxies of a group race, the first kept is the one
        // everybody shares.
        let mut half = Arc::new(EncodedHalf::encode(&outbound));
        tracing::debug!(
            revision = index.revision,
            translate_ms = translated.as_millis() as u64,
            encode_ms = (started.elapsed() - translated).as_millis() as u64,
            bytes = half.bytes.len(),
            "encoded an outbound half"
        );
        if current {
            let mut shared = self.lock();
            if shared.revision == index.revision {
                half = shared
                    .halves
                    .entry(key)
                    .or_insert_with(|| (outbound.clone(), half))
                    .1
                    .clone();
                shared.members.insert(address(&half.digest));
            }
        }
        ProxyView {
            half,
            own,
            own_generation,
        }
    }

    /// `ConfigDelta` fields 2–7 from `old` to `new`, encoded once per pair;
    /// `None` when they are too large to be worth a delta.
    fn outbound_delta(&self, old: &Arc<Digest>, new: &EncodedHalf) -> Option<Bytes> {
        let key = (address(old), address(&new.digest));
        if let Some((_, hit)) = self.lock().deltas.get(&key) {
            return hit.clone();
        }
        let computed = new.delta_from(old);
        // Only a marker is kept for an oversized delta: the stream sends the
        // complete config, whose bytes are shared, and nothing pins these.
        let computed = (!too_large(computed.len(), new.bytes.len())).then_some(computed);
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

    /// The outbound changes and own fields of the delta from `base` to
    /// `next`; `None` when the outbound changes are too large for a delta.
    fn delta_parts(&self, base: &Base, next: &ProxyView) -> Option<(Bytes, pb::ConfigDelta)> {
        let outbound = if Arc::ptr_eq(&base.digest, &next.half.digest) {
            Bytes::new()
        } else {
            self.outbound_delta(&base.digest, &next.half)?
        };
        let own = if Arc::ptr_eq(&base.own, &next.own) {
            pb::ConfigDelta::default()
        } else {
            base.own.changes_to(&next.own)
        };
        Some((outbound, own))
    }

    /// The delta from `base` (last ACKed) to `next`, tagged with
    /// `base_version`, as a message (decodes; for tests and tools); `None`
    /// when a complete config should go instead.
    pub fn delta(
        &self,
        base: &Base,
        next: &ProxyView,
        base_version: &str,
    ) -> Option<pb::ConfigDelta> {
        let (outbound, own) = self.delta_parts(base, next)?;
        Some(pb::ConfigDelta {
            base_version: base_version.to_owned(),
            inbound: own.inbound,
            self_: own.self_,
            telemetry: own.telemetry,
            outbound: own.outbound,
            ..pb::ConfigDelta::decode(outbound).unwrap_or_default()
        })
    }

    /// The delta snapshot from `base` (ACKed at `base_revision`) to `next`
    /// (at `revision`), encoded; `None` when its outbound changes are too
    /// large for a delta (then a complete config goes). The outbound
    /// changes are encoded once per move and shared; when both views also
    /// share their own parts the whole snapshot is the same for every proxy
    /// making that move, so it is kept and sent as it is.
    pub fn delta_frame(
        &self,
        (base_revision, base): (u64, &Base),
        (revision, next): (u64, &ProxyView),
    ) -> Result<Option<EncodedSnapshot>, frame::TooLarge> {
        let encode = || match self.delta_parts(base, next) {
            None => Ok(None),
            Some((outbound, own)) => frame::delta(
                &revision.to_string(),
                &base_revision.to_string(),
                &outbound,
                &own,
            )
            .map(Some),
        };
        if !Arc::ptr_eq(&base.own, &next.own) {
            return encode();
        }
        let key = (address(&base.digest), address(&next.half.digest));
        if let Some((b, r, hit)) = self.lock().frames.get(&key)
            && (*b, *r) == (base_revision, revision)
        {
            return Ok(Some(hit.clone()));
        }
        let Some(encoded) = encode()? else {
            return Ok(None);
        };
        let mut shared = self.lock();
        // Kept only while `deltas` holds the old digest (so the key's
        // addresses stay unique) and the new half is of the current revision.
        if shared.deltas.contains_key(&key) {
            shared
                .frames
                .insert(key, (base_revision, revision, encoded.clone()));
        }
        Ok(Some(encoded))
    }

    /// Pairs whose delta is cached, for tests.
    #[cfg(test)]
    pub(crate) fn cached_deltas(&self) -> Vec<(usize, usize)> {
        self.lock().deltas.keys().copied().collect()
    }
}
