//! Tracing and access logging of one proxy: Istio's Telemetry API merged over
//! the mesh config's defaults.

use super::ProxyIdentity;
use crate::index::MeshIndex;
use sluice_api::config as pb;

/// The telemetry settings of `proxy`.
pub(crate) fn for_proxy(_index: &MeshIndex, _proxy: &ProxyIdentity) -> pb::Telemetry {
    pb::Telemetry::default()
}
