//! Fuzz target logic that cannot live in `sluice-proxy` (it needs the controller).
#![forbid(unsafe_code)]

#[cfg(feature = "yaml")]
pub mod analyze;
