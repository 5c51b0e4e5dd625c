//! Snapshots as ready-to-write gRPC messages. A complete config's outbound
//! half, and a delta's outbound changes, are encoded once per group (or move
//! between groups) and revision, and those bytes are shared by every stream
//! that sends them; only the proxy's own fields are encoded per push.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use sluice_api::config as pb;

/// gRPC's message prefix: a compression flag and a big-endian u32 length.
const PREFIX: usize = 5;
/// `Snapshot.version`.
const VERSION_TAG: u32 = 1;
/// `Snapshot.config`.
const CONFIG_TAG: u32 = 2;
/// `Snapshot.delta`.
const DELTA_TAG: u32 = 3;

/// A snapshot too large for gRPC's 32-bit length prefix.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a snapshot of {0} bytes does not fit a gRPC message")]
pub struct TooLarge(pub usize);

/// One gRPC message (prefix + encoded `Snapshot`) as buffers to write in order.
#[derive(Clone, Debug)]
pub struct EncodedSnapshot {
    chunks: Vec<Bytes>,
    len: usize,
}

impl EncodedSnapshot {
    /// Length of the encoded `Snapshot`, without the gRPC prefix.
    pub fn message_len(&self) -> usize {
        self.len
    }

    /// The buffers that together make the gRPC message.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// The whole gRPC message in one buffer (copies; for tests and tools).
    pub fn to_vec(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }
}

/// The encoding of `outbound` (a `ProxyConfig` with only fields 1–3 set), to
/// share between every complete config of the group.
pub fn outbound_bytes(outbound: &pb::ProxyConfig) -> Bytes {
    Bytes::from(outbound.encode_to_vec())
}

fn prefix(out: &mut BytesMut, len: usize) -> Result<(), TooLarge> {
    let len32 = u32::try_from(len).map_err(|_| TooLarge(len))?;
    out.put_u8(0);
    out.put_u32(len32);
    Ok(())
}

/// A complete config: `Snapshot { version, config }` where `config` is the
/// concatenation of the shared `outbound` encoding and this proxy's fields.
/// Protobuf concatenates field encodings, so the result is byte for byte
/// what encoding the assembled `Snapshot` would give.
pub fn complete(
    version: &str,
    outbound: &Bytes,
    inbound: Option<&pb::Inbound>,
    self_: Option<&pb::WorkloadMeta>,
    telemetry: Option<&pb::Telemetry>,
    outbound_settings: Option<&pb::Outbound>,
) -> Result<EncodedSnapshot, TooLarge> {
    let own = pb::ProxyConfig {
        inbound: inbound.cloned(),
        self_: self_.cloned(),
        telemetry: telemetry.cloned(),
        outbound: outbound_settings.copied(),
        ..pb::ProxyConfig::default()
    }
    .encode_to_vec();
    nested(
        version,
        CONFIG_TAG,
        vec![outbound.clone(), Bytes::from(own)],
    )
}

/// A delta: `Snapshot { version, delta }` where `delta` is `base_version`,
/// then the shared encoding of the outbound changes (`ConfigDelta` fields
/// 2–7, the same bytes for every proxy making the same move), then `own`
/// (this proxy's fields 8–10, `base_version` unset). Fields go in number
/// order, so the bytes are those prost gives for the assembled message.
pub fn delta(
    version: &str,
    base_version: &str,
    outbound: &Bytes,
    own: &pb::ConfigDelta,
) -> Result<EncodedSnapshot, TooLarge> {
    let base = pb::ConfigDelta {
        base_version: base_version.to_owned(),
        ..pb::ConfigDelta::default()
    }
    .encode_to_vec();
    nested(
        version,
        DELTA_TAG,
        vec![
            Bytes::from(base),
            outbound.clone(),
            Bytes::from(own.encode_to_vec()),
        ],
    )
}

/// `Snapshot { version, <tag>: <parts concatenated> }` as a gRPC message:
/// only the head is written here, the parts are sent as they are.
fn nested(version: &str, tag: u32, parts: Vec<Bytes>) -> Result<EncodedSnapshot, TooLarge> {
    let inner_len: usize = parts.iter().map(Bytes::len).sum();
    let version_len = if version.is_empty() {
        0
    } else {
        key_len(VERSION_TAG) + encoded_len_varint(version.len() as u64) + version.len()
    };
    let len = version_len + key_len(tag) + encoded_len_varint(inner_len as u64) + inner_len;
    let mut head = BytesMut::with_capacity(PREFIX + len - inner_len);
    prefix(&mut head, len)?;
    if !version.is_empty() {
        encode_key(VERSION_TAG, WireType::LengthDelimited, &mut head);
        encode_varint(version.len() as u64, &mut head);
        head.put_slice(version.as_bytes());
    }
    encode_key(tag, WireType::LengthDelimited, &mut head);
    encode_varint(inner_len as u64, &mut head);
    let mut chunks = Vec::with_capacity(parts.len() + 1);
    chunks.push(head.freeze());
    chunks.extend(parts);
    Ok(EncodedSnapshot { chunks, len })
}

/// Any snapshot, encoded whole (deltas: small and specific to one proxy).
pub fn whole(snapshot: &pb::Snapshot) -> Result<EncodedSnapshot, TooLarge> {
    let len = snapshot.encoded_len();
    let mut out = BytesMut::with_capacity(PREFIX + len);
    prefix(&mut out, len)?;
    // Only fails for lack of room, and a `BytesMut` grows.
    snapshot.encode(&mut out).map_err(|_| TooLarge(len))?;
    Ok(EncodedSnapshot {
        chunks: vec![out.freeze()],
        len,
    })
}

#[cfg(test)]
mod tests;
