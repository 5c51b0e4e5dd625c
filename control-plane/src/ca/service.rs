//! `sluice.ca.v1.CertificateService`: signs a CSR for the caller's own identity.

use super::{Authenticator, CertificateAuthority, DEFAULT_WORKLOAD_TTL, SpiffeId};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sluice_api::ca::certificate_service_server::CertificateService;
use sluice_api::ca::{CertificateRequest, CertificateResponse};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Outcome labels of certificate requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct CsrLabels {
    /// `issued`, `unauthenticated`, `unavailable`, `denied` or `invalid`.
    pub outcome: &'static str,
}

/// Serves certificate requests.
#[derive(Clone)]
pub struct CertificateServer {
    ca: Arc<CertificateAuthority>,
    authn: Authenticator,
    default_ttl: Duration,
    requests: Family<CsrLabels, Counter>,
}

impl CertificateServer {
    /// Creates the service; `authn` checks callers' tokens, `requests`
    /// counts outcomes (`sluice_csr_requests_total`).
    pub fn new(
        ca: Arc<CertificateAuthority>,
        authn: Authenticator,
        requests: Family<CsrLabels, Counter>,
    ) -> Self {
        Self {
            ca,
            authn,
            default_ttl: DEFAULT_WORKLOAD_TTL,
            requests,
        }
    }

    fn count(&self, outcome: &'static str) {
        self.requests.get_or_create(&CsrLabels { outcome }).inc();
    }

    /// Who the caller proved to be from its bearer token; the error carries
    /// the outcome label to count.
    async fn caller<T>(&self, request: &Request<T>) -> Result<SpiffeId, (&'static str, Status)> {
        let unauthenticated = |why: &str| ("unauthenticated", Status::unauthenticated(why));
        let token = super::authn::bearer_token(request.metadata()).map_err(unauthenticated)?;
        let (ns, sa) = self.authn.authenticate(token).await.map_err(|e| {
            if e.is_unavailable() {
                ("unavailable", Status::unavailable(e.to_string()))
            } else {
                tracing::info!("refused a certificate request: {e}");
                unauthenticated(&e.to_string())
            }
        })?;
        Ok(SpiffeId::new(self.ca.trust_domain(), &ns, &sa))
    }
}

#[tonic::async_trait]
impl CertificateService for CertificateServer {
    async fn create_certificate(
        &self,
        request: Request<CertificateRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let caller = match self.caller(&request).await {
            Ok(c) => c,
            Err((outcome, status)) => {
                self.count(outcome);
                return Err(status);
            }
        };
        let req = request.into_inner();
        let ttl = u64::try_from(req.validity_seconds)
            .ok()
            .filter(|s| *s > 0)
            .map_or(self.default_ttl, Duration::from_secs);
        match self.ca.sign_workload(&req.csr, &caller, ttl) {
            Ok(issued) => {
                self.count("issued");
                tracing::info!(identity = %caller, "issued a workload certificate");
                Ok(Response::new(CertificateResponse {
                    cert_chain: issued.chain,
                    trust_bundle: issued.trust_bundle,
                }))
            }
            Err(e @ super::CaError::WrongIdentity { .. }) => {
                self.count("denied");
                tracing::warn!(caller = %caller, "refused a CSR: {e}");
                Err(Status::permission_denied(e.to_string()))
            }
            Err(e) => {
                self.count("invalid");
                Err(Status::invalid_argument(e.to_string()))
            }
        }
    }
}
