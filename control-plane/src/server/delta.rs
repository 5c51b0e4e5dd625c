//! Deltas between complete configurations: the protocol's own implementation
//! (`sluice_api::delta`), shared with the proxy and the benchmark's simulator.

pub use sluice_api::delta::*;
