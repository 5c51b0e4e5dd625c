//! The request metrics of one label set, resolved once and then found with a
//! single cheap lookup: `Family::get_or_create` on four families hashed the
//! 21-label set four times with SipHash on every request.

#[cfg(test)]
mod tests;

use std::sync::RwLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::RequestLabels;
use crate::fast_hash::FastMap;

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
type Map = FastMap<RequestLabels, RequestSeries>;

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
