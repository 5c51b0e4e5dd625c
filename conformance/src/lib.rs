//! Conformance suite for Sluice: the scenario format, the echo workload, a local mesh launcher
//! (controller + echo apps + sidecars on loopback) and the runner that plays scenarios against it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod echo;
pub mod expect;
pub mod jaeger;
pub mod mesh;
pub mod metrics;
pub mod runner;
pub mod scenario;
