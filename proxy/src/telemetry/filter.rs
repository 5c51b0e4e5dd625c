//! CEL access-log filters evaluated against the line about to be written.

use super::access_log::Entry;
use sluice_api::cel::{Attributes, Value};

/// What a filter sees of one request: its log entry and the headers the
/// filter reads, captured when the request arrived.
pub(crate) struct Logged<'a> {
    pub entry: &'a Entry<'a>,
    /// `(lower-case name, value)` for each header the filter reads.
    pub headers: &'a [(String, Option<String>)],
    /// Scheme of the request URL.
    pub scheme: &'a str,
}

fn text(v: Option<&str>) -> Option<Value> {
    v.map(|s| Value::Str(s.to_owned()))
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Attributes for Logged<'_> {
    fn attribute(&self, name: &str) -> Option<Value> {
        let e = self.entry;
        match name {
            // TCP lines have no response code: the attribute is absent.
            "response.code" => (e.response_code != 0).then(|| Value::Int(e.response_code.into())),
            "response.code_details" => text(e.response_code_details),
            "request.method" => text(e.method),
            "request.path" => text(e.path),
            "request.url_path" => e
                .path
                .map(|p| Value::Str(p.split('?').next().unwrap_or(p).to_owned())),
            "request.host" => text(e.authority),
            "request.scheme" => Some(Value::Str(self.scheme.to_owned())),
            "request.protocol" => text(e.protocol),
            "request.useragent" => text(e.user_agent),
            "request.id" => text(e.request_id),
            "request.size" => Some(int(e.bytes_received)),
            "response.size" => Some(int(e.bytes_sent)),
            // The downstream connection: mutual TLS when the caller presented
            // a workload certificate.
            "connection.mtls" => Some(Value::Bool(e.downstream_peer_principal.is_some())),
            "connection.requested_server_name" => text(e.requested_server_name),
            "source.address" => text(e.downstream_remote_address),
            "destination.address" => text(e.downstream_local_address),
            "upstream.address" => text(e.upstream_host),
            "xds.cluster_name" => text(e.upstream_cluster),
            "xds.route_name" => text(e.route_name),
            _ => None,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }
}
