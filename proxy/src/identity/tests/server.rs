//! An in-process certificate service over real TLS, playing the controller.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sluice_api::ca::certificate_service_server::{CertificateService, CertificateServiceServer};
use sluice_api::ca::{CertificateRequest, CertificateResponse};
use tokio::net::TcpListener;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::pki::Ca;

/// What the test CA does with a well-authenticated CSR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Signs for the requested identity with the listed root.
    Honest,
    /// Signs, but for another identity.
    WrongIdentity,
    /// Signs with a root missing from the bundle it returns.
    UnlistedIssuer,
}

/// The accepted token.
pub const TOKEN: &str = "good-token";

/// Counters the tests read.
#[derive(Default)]
pub struct Seen {
    pub issued: AtomicUsize,
    pub unauthenticated: AtomicUsize,
}

struct TestService {
    mesh: Arc<Ca>,
    previous_root: String,
    stranger: Ca,
    behaviour: Behaviour,
    seen: Arc<Seen>,
}

#[tonic::async_trait]
impl CertificateService for TestService {
    async fn create_certificate(
        &self,
        request: Request<CertificateRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let expected = format!("Bearer {TOKEN}");
        let authorized = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(expected.as_str());
        if !authorized {
            self.seen.unauthenticated.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unauthenticated("bad token"));
        }
        let req = request.into_inner();
        let csr = rcgen::CertificateSigningRequestParams::from_pem(&req.csr)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let asked = match csr.params.subject_alt_names.as_slice() {
            [rcgen::SanType::URI(uri)] => uri.as_str().to_owned(),
            _ => return Err(Status::invalid_argument("one URI SAN expected")),
        };
        let validity = Duration::from_secs(u64::try_from(req.validity_seconds).unwrap_or(0).max(1));
        let leaf = match self.behaviour {
            Behaviour::Honest => self.mesh.sign_csr(&req.csr, &asked, validity),
            Behaviour::WrongIdentity => {
                self.mesh
                    .sign_csr(&req.csr, "spiffe://cluster.local/ns/x/sa/y", validity)
            }
            Behaviour::UnlistedIssuer => self.stranger.sign_csr(&req.csr, &asked, validity),
        };
        self.seen.issued.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(CertificateResponse {
            cert_chain: vec![leaf],
            trust_bundle: vec![self.mesh.pem.clone(), self.previous_root.clone()],
        }))
    }
}

/// Serves on `listener` with a certificate from `mesh` until the test ends.
pub fn spawn(listener: TcpListener, mesh: Arc<Ca>, behaviour: Behaviour) -> Arc<Seen> {
    let seen = Arc::new(Seen::default());
    let (cert, key) = mesh.server();
    let service = TestService {
        mesh,
        previous_root: Ca::new("previous root").pem,
        stranger: Ca::new("stranger"),
        behaviour,
        seen: Arc::clone(&seen),
    };
    let server = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
        .unwrap()
        .add_service(CertificateServiceServer::new(service))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    seen
}
