//! `sluice_*` metrics of the security layer: the workload certificate, TLS
//! handshakes, request path normalization, request authentication (JWT) and
//! authorization decisions.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::model::Text;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    direction: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthzLabels {
    policy: Text,
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathNormalizationLabels {
    /// `source` (outbound) or `destination` (inbound), as Istio's `reporter`.
    reporter: &'static str,
    /// `normalized` (the path was rewritten) or `rejected` (400).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthnLabels {
    outcome: &'static str,
    reason: &'static str,
}

/// Which side of a connection the proxy is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Accepted on the inbound listener.
    Inbound,
    /// Opened towards an upstream.
    Outbound,
}

/// The security metrics.
#[derive(Default)]
pub struct SecurityMetrics {
    expiry: Gauge,
    renewals: Family<OutcomeLabels, Counter>,
    handshakes: Family<HandshakeLabels, Counter>,
    resumed: Family<DirectionLabels, Counter>,
    authz: Family<AuthzLabels, Counter>,
    authn: Family<AuthnLabels, Counter>,
    paths: Family<PathNormalizationLabels, Counter>,
}

impl SecurityMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = SecurityMetrics::default();
        registry.register(
            "sluice_certificate_expiration_timestamp_seconds",
            "When the workload certificate expires (Unix time); 0 without one",
            m.expiry.clone(),
        );
        registry.register(
            "sluice_certificate_requests",
            "Workload certificate requests to the CA, by outcome",
            m.renewals.clone(),
        );
        registry.register(
            "sluice_tls_handshakes",
            "TLS handshakes by side and outcome (success, failure, plaintext_refused, no_certificate)",
            m.handshakes.clone(),
        );
        registry.register(
            "sluice_tls_resumed_handshakes",
            "Successful TLS handshakes that resumed an earlier session instead of a full handshake, by side",
            m.resumed.clone(),
        );
        registry.register(
            "sluice_authorization_decisions",
            "AuthorizationPolicy decisions (allow, deny, audit, dry_run_allow, dry_run_deny) by deciding policy",
            m.authz.clone(),
        );
        registry.register(
            "sluice_request_authentications",
            "Requests checked by RequestAuthentication, by outcome (verified, no_token, refused) and refusal reason",
            m.authn.clone(),
        );
        registry.register(
            "sluice_path_normalizations",
            "Request paths rewritten by path normalization (normalized) or refused with 400 (rejected), by reporter",
            m.paths.clone(),
        );
        m
    }

    /// Records the current certificate's expiry (Unix seconds).
    pub fn certificate_expiry(&self, unix_seconds: i64) {
        self.expiry.set(unix_seconds);
    }

    /// Counts a certificate request (`success` or `failure`).
    pub fn certificate_request(&self, outcome: &'static str) {
        self.renewals
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Counts a handshake, or a connection refused before one.
    pub fn handshake(&self, side: Side, outcome: &'static str) {
        let direction = direction(side);
        self.handshakes
            .get_or_create(&HandshakeLabels { direction, outcome })
            .inc();
    }

    /// Counts a successful handshake that resumed a session.
    pub fn resumed(&self, side: Side) {
        let direction = direction(side);
        self.resumed
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    /// Counts an authorization decision; `policy` "" when none decided.
    pub fn authorization(&self, policy: &str, decision: &'static str) {
        let policy = Text::from(if policy.is_empty() { "none" } else { policy });
        self.authz
            .get_or_create(&AuthzLabels { policy, decision })
            .inc();
    }
}

impl SecurityMetrics {
    /// Counts a request-authentication outcome; `reason` "" unless refused.
    pub fn request_authentication(&self, outcome: &'static str, reason: &'static str) {
        self.authn
            .get_or_create(&AuthnLabels { outcome, reason })
            .inc();
    }

    /// Counts a request path that normalization rewrote (`normalized`) or
    /// refused (`rejected`) on the listener of `side`.
    pub fn path_normalization(&self, side: Side, outcome: &'static str) {
        let reporter = match side {
            Side::Outbound => "source",
            Side::Inbound => "destination",
        };
        self.paths
            .get_or_create(&PathNormalizationLabels { reporter, outcome })
            .inc();
    }
}

fn direction(side: Side) -> &'static str {
    match side {
        Side::Inbound => "inbound",
        Side::Outbound => "outbound",
    }
}
