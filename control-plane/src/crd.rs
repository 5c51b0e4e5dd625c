//! Istio and Sluice CRD types, one module per kind, and the generator of the
//! CustomResourceDefinition YAML committed under `crds/`.

pub mod authorization_policy;
pub mod destination_rule;
pub mod envoy_filter;
pub mod gateway;
mod generate;
pub mod http_route;
pub mod peer_authentication;
pub mod rate_limit_policy;
pub mod request_authentication;
pub mod service_entry;
pub mod sidecar;
pub mod status;
pub mod string_match;
pub mod telemetry;
pub mod traffic_policy;
pub mod virtual_service;
pub mod workload_entry;

pub use authorization_policy::{AuthorizationPolicy, AuthorizationPolicySpec};
pub use destination_rule::{DestinationRule, DestinationRuleSpec, Subset};
pub use envoy_filter::{EnvoyFilter, EnvoyFilterSpec};
pub use gateway::{Gateway, GatewaySpec};
pub use generate::crd_documents;
pub use http_route::*;
pub use peer_authentication::{MutualTls, PeerAuthentication, PeerAuthenticationSpec, PortKey};
pub use rate_limit_policy::{RateLimitMatch, RateLimitPolicy, RateLimitPolicySpec};
pub use request_authentication::{RequestAuthentication, RequestAuthenticationSpec};
pub use service_entry::{ServiceEntry, ServiceEntrySpec, ServicePort};
pub use sidecar::{Sidecar, SidecarSpec};
pub use status::{Condition, IstioStatus};
pub use string_match::{
    Percent, PolicyTargetReference, StringMatch, WorkloadLabelSelector, WorkloadSelector,
};
pub use telemetry::{Telemetry, TelemetrySpec};
pub use traffic_policy::*;
pub use virtual_service::{
    Destination, L4MatchAttributes, PortSelector, RouteDestination, TcpRoute, TlsMatchAttributes,
    TlsRoute, VirtualService, VirtualServiceSpec,
};
pub use workload_entry::{WorkloadEntry, WorkloadEntrySpec};

/// Parses Istio durations (`2s`, `1.5s`, `100ms`, `1m`, `1h`).
pub use crate::validation::parse_duration;

/// Schema of a protobuf `Struct`: any object, kept as written.
fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
