//! A fast non-keyed hasher for maps whose keys come from the proxy's own
//! config (pool targets, cluster names, metric label sets), never from bytes a
//! peer picks freely. std's default SipHash is keyed against flooding, which
//! these keys do not need; it cost ~3k instructions per request in the pool
//! and cluster lookups alone.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hashing of 8-byte words (the mixing of rustc's FxHasher).
#[derive(Default, Clone, Copy)]
pub struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        self.add(tail_word(rest) ^ rest.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// The last 0–7 bytes as one word, read in fixed-size pieces: a
/// variable-length copy into a buffer is a `memcpy` call per string, and
/// metric label sets hash about twenty strings per request. Overlapping
/// pieces cover every byte, so with the length mixed in no two tails of the
/// same length give the same word.
fn tail_word(rest: &[u8]) -> u64 {
    let n = rest.len();
    match n {
        0 => 0,
        1..=3 => u64::from(rest[0]) | u64::from(rest[n / 2]) << 8 | u64::from(rest[n - 1]) << 16,
        _ => {
            let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
            u64::from(lo) | u64::from(hi) << 32
        }
    }
}

impl FoldHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// Builds [`FoldHasher`]s.
pub type FastBuild = BuildHasherDefault<FoldHasher>;

/// A `HashMap` keyed by config-derived values, hashed with [`FoldHasher`].
pub type FastMap<K, V> = HashMap<K, V, FastBuild>;
