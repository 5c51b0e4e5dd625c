//! Conversion of the inbound side (ports, PeerAuthentication modes,
//! AuthorizationPolicies) and of a cluster's client-side TLS.

use std::sync::Arc;

use sluice_api::config as pb;

use super::{InvalidConfig, Problem, invalid, port, protocol};
use crate::authz::InboundPolicy;
use crate::model::{ClusterTls, InboundPort, TlsMode};
use crate::tls::Origination;

/// The SNI a client sidecar sends to a peer sidecar, in Istio's form
/// (`outbound_.<port>_.<subset>_.<host>`, `outbound_.9080_._.reviews...`
/// without a subset), so `connection.sni`
/// conditions match as they do under Istio. `None` when it is not a valid
/// DNS name (the handshake then sends no SNI).
fn mesh_sni(port: u32, subset: &str, service: &str) -> Option<Arc<str>> {
    let name = format!("outbound_.{port}_.{subset}_.{service}");
    rustls::pki_types::ServerName::try_from(name.as_str())
        .is_ok()
        .then(|| name.into())
}

/// A cluster's `tls`; unset = AUTO.
pub(super) fn cluster_tls(item: &str, c: &pb::Cluster) -> Result<ClusterTls, InvalidConfig> {
    let service = c.service.as_str();
    let mesh_sni = mesh_sni(c.port, &c.subset, service);
    let Some(t) = &c.tls else {
        return Ok(ClusterTls {
            mesh_sni,
            ..ClusterTls::default()
        });
    };
    let mode = match pb::upstream_tls::Mode::try_from(t.mode) {
        Ok(pb::upstream_tls::Mode::Auto) => TlsMode::Auto,
        Ok(pb::upstream_tls::Mode::Disable) => TlsMode::Disable,
        Ok(pb::upstream_tls::Mode::IstioMutual) => TlsMode::IstioMutual,
        Ok(pb::upstream_tls::Mode::Simple) => TlsMode::Simple,
        Ok(pb::upstream_tls::Mode::Mutual) => TlsMode::Mutual,
        Err(_) => {
            return Err(invalid(
                format!("{item} tls"),
                Problem::UnknownEnum {
                    what: "tls mode",
                    value: t.mode,
                },
            ));
        }
    };
    let origination = match mode {
        TlsMode::Simple | TlsMode::Mutual => {
            if mode == TlsMode::Mutual
                && (t.client_certificate.is_empty() || t.private_key.is_empty())
            {
                return Err(invalid(
                    format!("{item} tls"),
                    Problem::Required("client_certificate and private_key with MUTUAL"),
                ));
            }
            let sni = if t.sni.is_empty() { service } else { &t.sni };
            Some(Arc::new(Origination {
                sni: sni.to_owned(),
                sans: t.subject_alt_names.clone(),
                ca_certificates: t.ca_certificates.clone(),
                client_certificate: t.client_certificate.clone(),
                private_key: t.private_key.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
            }))
        }
        _ => None,
    };
    Ok(ClusterTls {
        mode,
        subject_alt_names: t.subject_alt_names.clone().into(),
        origination,
        mesh_sni,
    })
}

/// The inbound security of the workload; unset = PERMISSIVE and no policies.
pub(super) fn inbound_security(
    inbound: &Option<pb::Inbound>,
) -> Result<InboundPolicy, InvalidConfig> {
    match inbound.as_ref().and_then(|i| i.security.as_ref()) {
        Some(s) => {
            let mut policy =
                InboundPolicy::compile(s).map_err(|e| invalid("inbound security", e))?;
            policy.jwt = crate::jwt::Authn::compile(&s.jwt_rules)
                .map_err(|e| invalid("inbound security", e))?;
            Ok(policy)
        }
        None => Ok(InboundPolicy::default()),
    }
}

pub(super) fn inbound_port(p: &pb::InboundPort) -> Result<InboundPort, InvalidConfig> {
    let item = format!("inbound port {}", p.target_port);
    let target_port = port(&item, p.target_port)?;
    Ok(InboundPort {
        target_port,
        app_port: match p.app_port {
            0 => target_port,
            n => port(&format!("{item} app port"), n)?,
        },
        service_port: port(&item, p.service_port)?,
        protocol: protocol(&item, p.protocol)?,
        service: p.service.as_str().into(),
        service_name: p.service_name.as_str().into(),
        service_namespace: p.service_namespace.as_str().into(),
    })
}
