//! Access-log lines of TCP connections, written when a relay closes; only
//! what the connection's metric labels know is filled in.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Sinks;
use super::access_log::{self, Entry};
use crate::metrics::{TcpLabels, TcpLog};
use crate::state::ConfigRx;

/// Writes a line per closed TCP connection while the running config asks for
/// an access log.
pub struct TcpAccessLog {
    sinks: Arc<Sinks>,
    config: ConfigRx,
}

impl TcpAccessLog {
    /// Logs through `sinks` in the encoding `config` names at close time.
    pub fn new(sinks: Arc<Sinks>, config: ConfigRx) -> Self {
        TcpAccessLog { sinks, config }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty() && s != "unknown").then_some(s)
}

impl TcpLog for TcpAccessLog {
    fn closed(
        &self,
        labels: &TcpLabels,
        start: SystemTime,
        duration: Duration,
        received: u64,
        sent: u64,
    ) {
        let (encoding, filter) = {
            let running = self.config.borrow();
            match running
                .as_ref()
                .and_then(|r| r.config.telemetry.access_log.as_ref())
            {
                // The destination reporter is the inbound (server) side.
                Some(a) => {
                    let side = if labels.reporter.as_str() == "destination" {
                        super::Side::Inbound
                    } else {
                        super::Side::Outbound
                    };
                    if !a.logs_on(side) {
                        return;
                    }
                    (a.encoding, a.filter_expr.clone())
                }
                None => return,
            }
        };
        let entry = Entry {
            start_time: start,
            method: None,
            path: None,
            protocol: None,
            response_code: 0,
            response_flags: labels.response_flags.as_str(),
            response_code_details: None,
            connection_termination_details: None,
            upstream_transport_failure_reason: None,
            bytes_received: received,
            bytes_sent: sent,
            duration,
            upstream_service_time: None,
            x_forwarded_for: None,
            user_agent: None,
            request_id: None,
            authority: non_empty(labels.destination_service.as_str()),
            upstream_host: None,
            upstream_cluster: non_empty(labels.destination_service.as_str()),
            upstream_local_address: None,
            downstream_local_address: None,
            downstream_remote_address: None,
            requested_server_name: None,
            route_name: None,
            upstream_peer_principal: non_empty(labels.destination_principal.as_str()),
            downstream_peer_principal: non_empty(labels.source_principal.as_str()),
            trace_id: None,
        };
        if let Some(expr) = filter {
            let logged = super::filter::Logged {
                entry: &entry,
                headers: &[],
                scheme: "tcp",
            };
            if !expr.matches(&logged) {
                return;
            }
        }
        self.sinks.line(access_log::format(encoding, &entry));
    }
}
