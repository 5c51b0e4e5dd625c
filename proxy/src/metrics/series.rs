//! The request metrics of one label set, resolved once and then found with a
//! single cheap lookup: `Family::get_or_create` on four families hashed the
//! 21-label set four times with SipHash on every request.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::RequestLabels;

/// Handles sharing their state with the registered families' entries.
#[derive(Clone)]
pub(super) struct RequestSeries {
    pub requests: Counter,
    pub duration: Histogram,
    pub request_bytes: Histogram,
    pub response_bytes: Histogram,
}

/// Label sets come from the proxy's own config and peers' metadata, not from
/// request bytes an attacker picks freely, so a fast non-keyed hash is fine.
#[derive(Default)]
pub(super) struct FoldHasher(u64);

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
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ rest.len() as u64);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

impl FoldHasher {
    fn add(&mut self, word: u64) {
        // Multiply-rotate mixing (as in rustc's FxHasher).
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type Map = HashMap<RequestLabels, RequestSeries, BuildHasherDefault<FoldHasher>>;

/// Label set → series; read-mostly (a label set is new only once).
#[derive(Default)]
pub(super) struct SeriesCache(RwLock<Map>);

impl SeriesCache {
    /// Runs `f` on the series of `labels`, created with `make` the first time.
    pub fn with(
        &self,
        labels: &RequestLabels,
        make: impl FnOnce() -> RequestSeries,
        f: impl FnOnce(&RequestSeries),
    ) {
        {
            let map = self.0.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = map.get(labels) {
                return f(s);
            }
        }
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        f(map.entry(labels.clone()).or_insert_with(make));
    }
}
