//! Parsing YAML documents (what `kubectl apply -f` takes) into typed
//! resources, with errors that name the document, the object and the field.

use crate::crd::{
    AuthorizationPolicy, DestinationRule, EnvoyFilter, Gateway, PeerAuthentication,
    RateLimitPolicy, RequestAuthentication, ServiceEntry, Sidecar, Telemetry, VirtualService,
    WorkloadEntry,
};
use serde::Serialize;
use std::fmt;
use std::sync::Arc;

/// Kind names, as written in `kind:`.
pub mod kind {
    /// `networking.istio.io` VirtualService.
    pub const VIRTUAL_SERVICE: &str = "VirtualService";
    /// `networking.istio.io` DestinationRule.
    pub const DESTINATION_RULE: &str = "DestinationRule";
    /// `networking.istio.io` ServiceEntry.
    pub const SERVICE_ENTRY: &str = "ServiceEntry";
    /// `networking.istio.io` WorkloadEntry.
    pub const WORKLOAD_ENTRY: &str = "WorkloadEntry";
    /// `networking.istio.io` Sidecar.
    pub const SIDECAR: &str = "Sidecar";
    /// `networking.istio.io` Gateway.
    pub const GATEWAY: &str = "Gateway";
    /// `networking.istio.io` EnvoyFilter.
    pub const ENVOY_FILTER: &str = "EnvoyFilter";
    /// `security.istio.io` PeerAuthentication.
    pub const PEER_AUTHENTICATION: &str = "PeerAuthentication";
    /// `security.istio.io` AuthorizationPolicy.
    pub const AUTHORIZATION_POLICY: &str = "AuthorizationPolicy";
    /// `security.istio.io` RequestAuthentication.
    pub const REQUEST_AUTHENTICATION: &str = "RequestAuthentication";
    /// `sluice.io` RateLimitPolicy.
    pub const RATE_LIMIT_POLICY: &str = "RateLimitPolicy";
    /// `telemetry.istio.io` Telemetry.
    pub const TELEMETRY: &str = "Telemetry";
}

/// A kind Sluice serves: its API group, served versions and storage version.
#[derive(Clone, Copy, Debug)]
pub struct KindInfo {
    /// Kind name.
    pub kind: &'static str,
    /// API group.
    pub group: &'static str,
    /// Served versions, storage version first.
    pub versions: &'static [&'static str],
}

const NETWORKING: &[&str] = &["v1", "v1beta1", "v1alpha3"];
const SECURITY: &[&str] = &["v1", "v1beta1"];

/// Every kind Sluice understands. EnvoyFilter is also served at `v1beta1`
/// (Istio serves only `v1alpha3`) because widely shared examples use it.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: kind::VIRTUAL_SERVICE,
        group: "networking.istio.io",
        versions: NETWORKING,
    },
    KindInfo {
        kind: kind::DESTINATION_RULE,
        group: "networking.istio.io",
        versions: NETWORKING,
    },
    KindInfo {
        kind: kind::SERVICE_ENTRY,
        group: "networking.istio.io",
        versions: NETWORKING,
    },
    KindInfo {
        kind: kind::WORKLOAD_ENTRY,
        group: "networking.istio.io",
        versions: NETWORKING,
    },
    KindInfo {
        kind: kind::SIDECAR,
        group: "networking.istio.io",
        versions: NETWORKING,
    },
    KindInfo {
        kind: kind::GATEWAY,
        group: "networking.istio.io",
        versions: NETWORKING,
    },
    KindInfo {
        kind: kind::ENVOY_FILTER,
        group: "networking.istio.io",
        versions: &["v1alpha3", "v1beta1"],
    },
    KindInfo {
        kind: kind::PEER_AUTHENTICATION,
        group: "security.istio.io",
        versions: SECURITY,
    },
    KindInfo {
        kind: kind::AUTHORIZATION_POLICY,
        group: "security.istio.io",
        versions: SECURITY,
    },
    KindInfo {
        kind: kind::REQUEST_AUTHENTICATION,
        group: "security.istio.io",
        versions: SECURITY,
    },
    KindInfo {
        kind: kind::RATE_LIMIT_POLICY,
        group: "sluice.io",
        versions: &["v1alpha1"],
    },
    KindInfo {
        kind: kind::TELEMETRY,
        group: "telemetry.istio.io",
        versions: &["v1", "v1alpha1"],
    },
];

/// Looks a kind up by name.
pub fn kind_info(kind: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// One typed Istio or Sluice object.
// Resources live behind `Arc` in the index, so variant size differences cost nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Resource {
    /// A VirtualService.
    VirtualService(VirtualService),
    /// A DestinationRule.
    DestinationRule(DestinationRule),
    /// A ServiceEntry.
    ServiceEntry(ServiceEntry),
    /// A WorkloadEntry.
    WorkloadEntry(WorkloadEntry),
    /// A Sidecar.
    Sidecar(Sidecar),
    /// A Gateway (stored and validated; no proxy serves it).
    Gateway(Gateway),
    /// An EnvoyFilter.
    EnvoyFilter(EnvoyFilter),
    /// A PeerAuthentication.
    PeerAuthentication(PeerAuthentication),
    /// An AuthorizationPolicy.
    AuthorizationPolicy(AuthorizationPolicy),
    /// A RequestAuthentication.
    RequestAuthentication(RequestAuthentication),
    /// A RateLimitPolicy.
    RateLimitPolicy(RateLimitPolicy),
    /// A Telemetry.
    Telemetry(Telemetry),
}

/// Identity of an object: kind, namespace and name. Ordered by kind, then
/// namespace, then name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ResourceKey {
    /// Kind name (one of [`kind`]).
    pub kind: &'static str,
    /// Namespace (shared: every index of a revision holds each key several times).
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
}

impl Ord for ResourceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Maps of keys are rebuilt on every ingest (11,000 keys at the bench's
        // size): the same text (a kind's literal, a shared namespace) is
        // equal without reading it.
        fn part(a: &str, b: &str) -> std::cmp::Ordering {
            if std::ptr::eq(a, b) {
                std::cmp::Ordering::Equal
            } else {
                a.cmp(b)
            }
        }
        part(self.kind, other.kind)
            .then_with(|| part(&self.namespace, &other.namespace))
            .then_with(|| part(&self.name, &other.name))
    }
}

impl PartialOrd for ResourceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

macro_rules! each_kind {
    ($self:expr, $r:ident => $e:expr) => {
        match $self {
            Resource::VirtualService($r) => $e,
            Resource::DestinationRule($r) => $e,
            Resource::ServiceEntry($r) => $e,
            Resource::WorkloadEntry($r) => $e,
            Resource::Sidecar($r) => $e,
            Resource::Gateway($r) => $e,
            Resource::EnvoyFilter($r) => $e,
            Resource::PeerAuthentication($r) => $e,
            Resource::AuthorizationPolicy($r) => $e,
            Resource::RequestAuthentication($r) => $e,
            Resource::RateLimitPolicy($r) => $e,
            Resource::Telemetry($r) => $e,
        }
    };
}

impl Resource {
    /// Kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::VirtualService(_) => kind::VIRTUAL_SERVICE,
            Resource::DestinationRule(_) => kind::DESTINATION_RULE,
            Resource::ServiceEntry(_) => kind::SERVICE_ENTRY,
            Resource::WorkloadEntry(_) => kind::WORKLOAD_ENTRY,
            Resource::Sidecar(_) => kind::SIDECAR,
            Resource::Gateway(_) => kind::GATEWAY,
            Resource::EnvoyFilter(_) => kind::ENVOY_FILTER,
            Resource::PeerAuthentication(_) => kind::PEER_AUTHENTICATION,
            Resource::AuthorizationPolicy(_) => kind::AUTHORIZATION_POLICY,
            Resource::RequestAuthentication(_) => kind::REQUEST_AUTHENTICATION,
            Resource::RateLimitPolicy(_) => kind::RATE_LIMIT_POLICY,
            Resource::Telemetry(_) => kind::TELEMETRY,
        }
    }

    /// Object metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        each_kind!(self, r => &r.metadata)
    }

    /// `metadata.name` (empty when unset).
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// `metadata.namespace` (set by parsing when the document had none).
    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or("")
    }

    /// `metadata.generation`, when the API server set one.
    pub fn generation(&self) -> Option<i64> {
        self.metadata().generation
    }

    /// Kind, namespace and name.
    pub fn key(&self) -> ResourceKey {
        ResourceKey {
            kind: self.kind(),
            namespace: self.namespace().into(),
            name: self.name().into(),
        }
    }
}

/// A document that could not be turned into a [`Resource`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based position of the document in its file.
    pub document: usize,
    /// The object, when kind and name could be read.
    pub key: Option<ResourceKey>,
    /// Field path, e.g. `spec.http[0].route`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The document is an object of a kind Sluice does not serve (so it
    /// cannot be an earlier version of one of Sluice's objects).
    pub foreign_kind: bool,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{key}: ")?,
            None => write!(f, "document {}: ", self.document)?,
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

mod document;

pub use document::{parse_documents, parse_keys, parse_object};

#[cfg(test)]
mod tests;
