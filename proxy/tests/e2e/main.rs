//! End-to-end tests: the real proxy binary against an in-test controller and
//! backends, over real loopback sockets (one 127.0.<net>.0/24 per test).

mod admin;
mod capture;
mod h2_hop;
mod harness;
mod hostile;
mod lifecycle;
mod logged;
mod mesh;
mod origination;
mod outlier;
mod path_normalization;
mod policies;
mod resilience;
mod routing;
mod security;
mod stream;
mod tcp_limits;
mod telemetry;
mod upstream_protocol;
mod websocket;
