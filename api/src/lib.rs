//! The proxy <-> controller configuration protocol: protobuf messages and the
//! gRPC service, generated from `proto/` and committed (see `tests/generated.rs`).
#![forbid(unsafe_code)]

/// `sluice.config.v1`: snapshots, ACK/NACK and the `ConfigDiscovery` service.
pub mod config {
    #![allow(clippy::all, missing_docs)]
    include!("gen/sluice.config.v1.rs");
}

/// `sluice.ca.v1`: workload certificate signing.
pub mod ca {
    #![allow(clippy::all, missing_docs)]
    include!("gen/sluice.ca.v1.rs");
}

pub mod capture;
pub mod cel;
pub mod delta;
