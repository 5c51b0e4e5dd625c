//! SPIFFE identities of workloads: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.

use std::fmt;

/// A workload identity as Istio writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// Trust domain, e.g. `cluster.local`.
    pub trust_domain: String,
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
}

/// A string that is not an Istio SPIFFE identity.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not a SPIFFE identity of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>"
)]
pub struct InvalidSpiffeId(pub String);

impl SpiffeId {
    /// The identity of `namespace`/`service_account` in `trust_domain`.
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        Self {
            trust_domain: trust_domain.to_owned(),
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        }
    }

    /// Parses `spiffe://td/ns/NS/sa/SA`.
    pub fn parse(s: &str) -> Result<Self, InvalidSpiffeId> {
        let bad = || InvalidSpiffeId(s.to_owned());
        let rest = s.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] if !td.is_empty() && !ns.is_empty() && !sa.is_empty() => {
                Ok(Self::new(td, ns, sa))
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}
