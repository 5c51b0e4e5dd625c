//! An outbound half encoded once per group and revision, entry by entry, so
//! that complete configs send its bytes as they are and a delta between two
//! halves is found by comparing entry digests and written by copying the
//! changed entries' bytes: no decoded copy of the half is kept, and a proxy's
//! last ACKed half is remembered by its digest alone (names and hashes, a
//! few percent of the half), so proxies lagging behind pin little memory.
//!
//! Encodings are deterministic (entries ordered by name, proto maps are
//! `BTreeMap`s, so they encode in key order): equal entries have equal bytes.

use crate::translate::Outbound;
use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};
use sluice_api::config as pb;
use std::hash::Hasher;
use std::ops::Range;

/// The three lists of an outbound half, in `ProxyConfig` field order.
const KINDS: usize = 3;
/// `ProxyConfig` field numbers of virtual hosts, clusters, TCP services.
const CONFIG_TAGS: [u32; KINDS] = [1, 2, 3];
/// `ConfigDelta` field numbers of the upserted entries of each list.
const UPSERT_TAGS: [u32; KINDS] = [2, 3, 4];
/// `ConfigDelta` field numbers of the removed names of each list.
const REMOVED_TAGS: [u32; KINDS] = [5, 6, 7];

/// Name and content hash of every entry, per list, ordered by name: all a
/// delta needs of the half it starts from.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Digest {
    lists: [Vec<(Box<str>, u128)>; KINDS],
}

/// One group's outbound half at one revision.
#[derive(Debug)]
pub struct EncodedHalf {
    /// `ProxyConfig` with fields 1–3 set, as sent in complete configs.
    pub bytes: Bytes,
    /// Names and hashes, kept alone by proxies that ACKed this half.
    pub digest: std::sync::Arc<Digest>,
    /// Where each entry's message lies in `bytes`, aligned with `digest`.
    spans: [Vec<Range<usize>>; KINDS],
}

/// Keys of the two hashers, random per process (digests never leave it),
/// the same for every half so equal entries hash equally.
fn hash_keys() -> &'static [std::hash::RandomState; 2] {
    static KEYS: std::sync::OnceLock<[std::hash::RandomState; 2]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| [std::hash::RandomState::new(), std::hash::RandomState::new()])
}

/// 128 bits from two differently keyed SipHash runs: a collision would hide
/// a change from a proxy, so 64 bits alone are not enough over a long life.
fn hash(body: &[u8]) -> u128 {
    use std::hash::BuildHasher as _;
    let [ka, kb] = hash_keys();
    let (mut a, mut b) = (ka.build_hasher(), kb.build_hasher());
    a.write(body);
    b.write(body);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Appends one entry (`tag`, length, message) to `out`; returns where the
/// message lies.
fn put_entry<M: Message>(out: &mut BytesMut, tag: u32, entry: &M) -> Range<usize> {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(entry.encoded_len() as u64, out);
    let start = out.len();
    // A `BytesMut` grows, so encoding cannot run out of room.
    let _ = entry.encode(out);
    start..out.len()
}

impl EncodedHalf {
    /// Encodes `outbound`, each list ordered by name.
    pub(crate) fn encode(outbound: &Outbound) -> Self {
        fn sorted<T>(list: &[T], name: fn(&T) -> &str) -> Vec<(&str, &T)> {
            let mut v: Vec<_> = list.iter().map(|e| (name(e), e)).collect();
            v.sort_by(|a, b| a.0.cmp(b.0));
            v
        }
        let vhosts = sorted(&outbound.virtual_hosts, |e| &e.name);
        let clusters = sorted(&outbound.clusters, |e| &e.cluster.name);
        let tcp = sorted(&outbound.tcp_services, |e| &e.name);
        let mut out = BytesMut::new();
        let mut digest = Digest::default();
        let mut spans: [Vec<Range<usize>>; KINDS] = Default::default();
        let mut record = |kind: usize, name: &str, span: Range<usize>, hash: u128| {
            digest.lists[kind].push((name.into(), hash));
            spans[kind].push(span);
        };
        for (name, e) in vhosts {
            let span = put_entry(&mut out, CONFIG_TAGS[0], e);
            let h = hash(&out[span.clone()]);
            record(0, name, span, h);
        }
        // A cluster kept from an earlier revision brings its encoding along.
        for (name, e) in clusters {
            let (body, h) = e.encoded(|c| {
                let body = Bytes::from(c.encode_to_vec());
                let h = hash(&body);
                (body, h)
            });
            encode_key(CONFIG_TAGS[1], WireType::LengthDelimited, &mut out);
            encode_varint(body.len() as u64, &mut out);
            let start = out.len();
            out.put_slice(body);
            record(1, name, start..out.len(), *h);
        }
        for (name, e) in tcp {
            let span = put_entry(&mut out, CONFIG_TAGS[2], e);
            let h = hash(&out[span.clone()]);
            record(2, name, span, h);
        }
        Self {
            bytes: out.freeze(),
            digest: std::sync::Arc::new(digest),
            spans,
        }
    }

    /// The half as a message (copies; for tests and tools).
    pub fn decode(&self) -> pb::ProxyConfig {
        pb::ProxyConfig::decode(self.bytes.as_ref()).unwrap_or_default()
    }

    /// `ConfigDelta` fields 2–7 that turn a config whose half has `base` into
    /// one with this half: entries new or different, names gone. In field
    /// order, like prost's own encoding of the same message.
    pub fn delta_from(&self, base: &Digest) -> Bytes {
        let mut upserts = BytesMut::new();
        let mut removed = BytesMut::new();
        for (kind, (old, new)) in base.lists.iter().zip(&self.digest.lists).enumerate() {
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < new.len() {
                let order = match (old.get(i), new.get(j)) {
                    (Some(o), Some(n)) => o.0.cmp(&n.0),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                };
                match order {
                    // A name listed twice is still there after its first copy.
                    std::cmp::Ordering::Less if j > 0 && new[j - 1].0 == old[i].0 => i += 1,
                    std::cmp::Ordering::Less => {
                        let name = old[i].0.as_bytes();
                        encode_key(REMOVED_TAGS[kind], WireType::LengthDelimited, &mut removed);
                        encode_varint(name.len() as u64, &mut removed);
                        removed.put_slice(name);
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        self.put_upsert(kind, j, &mut upserts);
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        if old[i].1 != new[j].1 {
                            self.put_upsert(kind, j, &mut upserts);
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
        upserts.put(removed);
        upserts.freeze()
    }

    fn put_upsert(&self, kind: usize, j: usize, out: &mut BytesMut) {
        let body = &self.bytes[self.spans[kind][j].clone()];
        encode_key(UPSERT_TAGS[kind], WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.put_slice(body);
    }
}

#[cfg(test)]
mod tests;
