//! Sluice control plane: Istio resource types and validation, the mesh index,
//! translation into proxy config, and the config stream server.
#![forbid(unsafe_code)]

pub mod admin;
pub mod ca;
pub mod config_dir;
pub mod crd;
pub mod debounce;
pub mod index;
pub mod inject;
pub mod jwks;
pub mod kube_source;
pub mod leader;
pub mod mesh_config;
pub mod metrics;
pub mod resource;
pub mod server;
pub mod services;
pub mod sync;
pub mod translate;
pub mod validation;
pub mod webhook;
