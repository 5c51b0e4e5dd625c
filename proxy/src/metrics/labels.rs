//! The standard labels of one request or connection, built from cached parts
//! (workloads, destination service, the mutual TLS principals) by cloning `Arc`s.

#[cfg(test)]
mod tests;

use super::{Custom, Metrics, RequestLabels, ServiceLabels, TcpLabels};
use crate::model::{Text, WorkloadMeta};

/// The SPIFFE ids in the certificates of a mutual TLS connection: the
/// client's and the server's. Istio's stats filter takes `source_principal`
/// and `destination_principal` from these only (the upstream connection on
/// the client side, the downstream one on the server side); without mutual
/// TLS both are `unknown`, whatever the workloads' service accounts.
#[derive(Clone, Copy, Debug)]
pub struct Principals<'a> {
    pub source: &'a Text,
    pub destination: &'a Text,
}

/// A workload's labels, `unknown` (`latest` for a canonical revision) where
/// its metadata has nothing.
struct Workload {
    workload: Text,
    namespace: Text,
    app: Text,
    version: Text,
    canonical_service: Text,
    canonical_revision: Text,
    cluster: Text,
}

fn or_unknown(t: &Text, unknown: &Text) -> Text {
    if t.as_str().is_empty() {
        unknown.clone()
    } else {
        t.clone()
    }
}

impl Metrics {
    fn workload(&self, m: &WorkloadMeta) -> Workload {
        let u = &self.words.unknown;
        Workload {
            workload: or_unknown(&m.workload, u),
            namespace: or_unknown(&m.namespace, u),
            app: or_unknown(&m.app, u),
            version: or_unknown(&m.version, u),
            canonical_service: or_unknown(&m.app, u),
            canonical_revision: or_unknown(&m.version, &self.words.latest),
            cluster: or_unknown(&m.cluster, u),
        }
    }

    /// Builds request labels from cached parts; only clones `Arc`s. The
    /// response code (0) and gRPC status (empty) are filled in at the end;
    /// `principals` is the mutual TLS connection's, if there is one.
    #[allow(clippy::too_many_arguments)]
    pub fn request_labels(
        &self,
        reporter: &Text,
        source: &WorkloadMeta,
        destination: &WorkloadMeta,
        service: &ServiceLabels,
        protocol: &Text,
        flags: &Text,
        security: &Text,
        principals: Option<Principals<'_>>,
    ) -> RequestLabels {
        let u = &self.words.unknown;
        let s = self.workload(source);
        let d = self.workload(destination);
        let (source_principal, destination_principal) = self.principals(principals);
        RequestLabels {
            reporter: reporter.clone(),
            source_workload: s.workload,
            source_canonical_service: s.canonical_service,
            source_canonical_revision: s.canonical_revision,
            source_workload_namespace: s.namespace,
            source_principal,
            source_app: s.app,
            source_version: s.version,
            source_cluster: s.cluster,
            destination_workload: d.workload,
            destination_workload_namespace: d.namespace,
            destination_principal,
            destination_app: d.app,
            destination_version: d.version,
            destination_service: or_unknown(&service.service, u),
            destination_canonical_service: d.canonical_service,
            destination_canonical_revision: d.canonical_revision,
            destination_service_name: or_unknown(&service.name, u),
            destination_service_namespace: or_unknown(&service.namespace, u),
            destination_cluster: d.cluster,
            request_protocol: protocol.clone(),
            response_code: 0,
            grpc_response_status: self.words.empty.clone(),
            response_flags: flags.clone(),
            connection_security_policy: security.clone(),
            custom: Custom::default(),
        }
    }

    /// Leaves out what Istio's client side cannot know of the workload it
    /// called when no answer came back (so no peer metadata): it falls back
    /// to the upstream endpoint's metadata, which has workload, namespace,
    /// canonical service and revision and cluster, but no `app` or `version`
    /// labels (`unknown`).
    pub fn endpoint_metadata_only(&self, l: &mut RequestLabels) {
        l.destination_app = self.words.unknown.clone();
        l.destination_version = self.words.unknown.clone();
    }

    /// `source_principal` and `destination_principal`.
    fn principals(&self, p: Option<Principals<'_>>) -> (Text, Text) {
        let u = &self.words.unknown;
        match p {
            Some(p) => (or_unknown(p.source, u), or_unknown(p.destination, u)),
            None => (u.clone(), u.clone()),
        }
    }

    /// `grpc_response_status` for a `grpc-status` value, read as Envoy does:
    /// a known code (0-16) as it is, anything else `-1` (its `InvalidCode`).
    pub fn grpc_status_label(&self, value: &http::HeaderValue) -> Text {
        let code = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .and_then(|c| usize::try_from(c).ok());
        match code.and_then(|c| self.words.grpc_codes.get(c)) {
            Some(t) => t.clone(),
            None => self.words.grpc_invalid.clone(),
        }
    }

    /// `grpc_response_status` of a gRPC response without `grpc-status`:
    /// inferred from its HTTP status (Envoy's `httpToGrpcStatus`); empty when
    /// no response was sent (code 0).
    pub fn grpc_status_of_http(&self, code: u16) -> Text {
        let Ok(status) = http::StatusCode::from_u16(code) else {
            return self.words.empty.clone();
        };
        let grpc = usize::from(crate::report::grpc_status_of(status));
        self.words.grpc_codes[grpc].clone()
    }

    /// Builds TCP labels from cached parts.
    pub fn tcp_labels(
        &self,
        reporter: &Text,
        source: &WorkloadMeta,
        destination: &WorkloadMeta,
        service: &ServiceLabels,
        security: &Text,
        principals: Option<Principals<'_>>,
    ) -> TcpLabels {
        let r = self.request_labels(
            reporter,
            source,
            destination,
            service,
            &self.words.tcp,
            &self.words.no_flags,
            security,
            principals,
        );
        TcpLabels {
            reporter: r.reporter,
            source_workload: r.source_workload,
            source_canonical_service: r.source_canonical_service,
            source_canonical_revision: r.source_canonical_revision,
            source_workload_namespace: r.source_workload_namespace,
            source_principal: r.source_principal,
            source_app: r.source_app,
            source_version: r.source_version,
            source_cluster: r.source_cluster,
            destination_workload: r.destination_workload,
            destination_workload_namespace: r.destination_workload_namespace,
            destination_principal: r.destination_principal,
            destination_app: r.destination_app,
            destination_version: r.destination_version,
            destination_service: r.destination_service,
            destination_canonical_service: r.destination_canonical_service,
            destination_canonical_revision: r.destination_canonical_revision,
            destination_service_name: r.destination_service_name,
            destination_service_namespace: r.destination_service_namespace,
            destination_cluster: r.destination_cluster,
            request_protocol: r.request_protocol,
            response_flags: r.response_flags,
            connection_security_policy: r.connection_security_policy,
            custom: Custom::default(),
        }
    }
}
