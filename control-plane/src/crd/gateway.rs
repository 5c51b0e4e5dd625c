//! `Gateway` (networking.istio.io): the ports, hosts and TLS of a proxy at
//! the edge of the mesh. Sluice runs no gateway proxy: a Gateway is stored
//! and validated so that files mixing it with other kinds apply, and it
//! serves no traffic.

use super::sidecar::ServerTlsSettings;
use super::status::IstioStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Spec of a `Gateway`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "networking.istio.io",
    version = "v1",
    kind = "Gateway",
    plural = "gateways",
    shortname = "gw",
    namespaced,
    status = "IstioStatus",
    derive = "PartialEq",
    doc = "A load balancer at the edge of the mesh: its ports, hosts and TLS (accepted and validated; Sluice runs no gateway proxy)."
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewaySpec {
    /// What the gateway listens on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// Labels of the gateway workloads (in the Gateway's namespace) this
    /// configuration is for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

/// One port of a gateway, the hosts it exposes there and its TLS.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// The port the proxy listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<GatewayPort>,
    /// IP address or `unix://` socket the listener binds to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// Hosts exposed: `dnsName` or `namespace/dnsName`, the namespace `*`
    /// (any, the default) or `.` (the Gateway's own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// TLS settings: HTTPS redirect, termination mode and certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Loopback endpoint or unix socket to send traffic to (not implemented by Istio either).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    /// Optional name of the server, for statistics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The port of a gateway server.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayPort {
    /// Port number.
    #[serde(default)]
    pub number: u32,
    /// `HTTP`, `HTTPS`, `GRPC`, `GRPC-WEB`, `HTTP2`, `MONGO`, `TCP`, `TLS`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Port name (unique across the Gateway's servers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Not used by gateways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u32>,
}
