//! `sluice-proxy` library: every part of the sidecar, so the binary, the fuzz
//! targets and the tests drive the same code. `main.rs` only wires it together.
#![forbid(unsafe_code)]

pub mod admin;
mod app_probe;
mod authz;
mod balance;
mod body;
mod circuit;
pub mod config;
mod cors;
mod detect;
mod fast_hash;
pub mod fuzzing;
mod http_util;
pub mod identity;
pub mod inbound;
pub mod init;
mod ip_block;
pub mod jwt;
pub mod listener;
mod matching;
pub mod metrics;
mod model;
pub mod outbound;
mod outlier;
mod path_normalization;
pub mod proxy_protocol;
mod rate_limit;
mod report;
mod retry;
mod retry_budget;
mod rewrite;
pub mod rlimit;
pub mod runtime;
mod source_meta;
pub mod state;
mod tcp;
pub mod telemetry;
mod tls;
mod token_bucket;
mod upgrade;
mod upstream;
mod window;
pub mod xds;
