//! Access-log lines in Istio's default formats (Envoy's text line, or JSON
//! with the same fields) and the task that writes them to stdout.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::LogEncoding;
use super::time::write_rfc3339_millis;
use crate::metrics::{LogOutcome, TelemetryMetrics};

/// One request (or TCP connection); `None` prints as `-` (text) or `null` (JSON).
#[derive(Debug)]
pub struct Entry<'a> {
    pub start_time: SystemTime,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub protocol: Option<&'a str>,
    /// 0 for TCP.
    pub response_code: u16,
    pub response_flags: &'a str,
    pub response_code_details: Option<&'a str>,
    pub connection_termination_details: Option<&'a str>,
    pub upstream_transport_failure_reason: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration: Duration,
    pub upstream_service_time: Option<Duration>,
    pub x_forwarded_for: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub upstream_host: Option<&'a str>,
    pub upstream_cluster: Option<&'a str>,
    pub upstream_local_address: Option<&'a str>,
    pub downstream_local_address: Option<&'a str>,
    pub downstream_remote_address: Option<&'a str>,
    pub requested_server_name: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub upstream_peer_principal: Option<&'a str>,
    pub downstream_peer_principal: Option<&'a str>,
    pub trace_id: Option<&'a str>,
}

/// The line for `entry`, newline included.
pub fn format(encoding: LogEncoding, entry: &Entry<'_>) -> String {
    match encoding {
        LogEncoding::Text => text(entry),
        LogEncoding::Json => json(entry),
    }
}

fn dash(v: Option<&str>) -> &str {
    match v {
        Some(s) if !s.is_empty() => s,
        _ => "-",
    }
}

/// Envoy's default format as Istio documents it:
/// `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
/// %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%
/// %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%"
/// %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
/// "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%"
/// "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER%
/// %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS%
/// %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%`.
pub fn text(e: &Entry<'_>) -> String {
    let mut out = String::with_capacity(384);
    out.push('[');
    write_rfc3339_millis(&mut out, e.start_time);
    let service_time = e.upstream_service_time.map(|d| d.as_millis().to_string());
    let _ = writeln!(
        out,
        "] \"{} {} {}\" {} {} {} {} \"{}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} {} {} {}",
        dash(e.method),
        dash(e.path),
        dash(e.protocol),
        e.response_code,
        dash(Some(e.response_flags)),
        dash(e.response_code_details),
        dash(e.connection_termination_details),
        dash(e.upstream_transport_failure_reason),
        e.bytes_received,
        e.bytes_sent,
        e.duration.as_millis(),
        dash(service_time.as_deref()),
        dash(e.x_forwarded_for),
        dash(e.user_agent),
        dash(e.request_id),
        dash(e.authority),
        dash(e.upstream_host),
        dash(e.upstream_cluster),
        dash(e.upstream_local_address),
        dash(e.downstream_local_address),
        dash(e.downstream_remote_address),
        dash(e.requested_server_name),
        dash(e.route_name),
    );
    out
}

/// Istio's default JSON access log: same fields, numbers as numbers, absent
/// values as `null`.
pub fn json(e: &Entry<'_>) -> String {
    let mut start = String::with_capacity(24);
    write_rfc3339_millis(&mut start, e.start_time);
    let opt = |v: Option<&str>| match v {
        Some(s) if !s.is_empty() => serde_json::Value::from(s),
        _ => serde_json::Value::Null,
    };
    let value = serde_json::json!({
        "start_time": start,
        "method": opt(e.method),
        "path": opt(e.path),
        "protocol": opt(e.protocol),
        "response_code": e.response_code,
        "response_flags": dash(Some(e.response_flags)),
        "response_code_details": opt(e.response_code_details),
        "connection_termination_details": opt(e.connection_termination_details),
        "upstream_transport_failure_reason": opt(e.upstream_transport_failure_reason),
        "bytes_received": e.bytes_received,
        "bytes_sent": e.bytes_sent,
        "duration": u64::try_from(e.duration.as_millis()).unwrap_or(u64::MAX),
        "upstream_service_time": e
            .upstream_service_time
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "x_forwarded_for": opt(e.x_forwarded_for),
        "user_agent": opt(e.user_agent),
        "request_id": opt(e.request_id),
        "authority": opt(e.authority),
        "upstream_host": opt(e.upstream_host),
        "upstream_cluster": opt(e.upstream_cluster),
        "upstream_local_address": opt(e.upstream_local_address),
        "downstream_local_address": opt(e.downstream_local_address),
        "downstream_remote_address": opt(e.downstream_remote_address),
        "requested_server_name": opt(e.requested_server_name),
        "route_name": opt(e.route_name),
        "upstream_peer_principal": opt(e.upstream_peer_principal),
        "downstream_peer_principal": opt(e.downstream_peer_principal),
        "trace_id": opt(e.trace_id),
    });
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// Writes queued lines to `out` until the queue closes; flushes whenever the
/// queue runs empty, so a line is out within one scheduling round.
pub async fn run_writer<W: AsyncWrite + Unpin>(
    mut lines: mpsc::Receiver<String>,
    out: W,
    metrics: TelemetryMetrics,
) {
    let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, out);
    while let Some(line) = lines.recv().await {
        let mut written = 0u64;
        let mut failed = 0u64;
        let mut next = Some(line);
        while let Some(line) = next.take() {
            if out.write_all(line.as_bytes()).await.is_ok() {
                written += 1;
            } else {
                failed += 1;
            }
            next = lines.try_recv().ok();
        }
        if out.flush().await.is_err() {
            // Whatever sat in the buffer is lost with the failed flush.
            failed += written;
            written = 0;
        }
        metrics.log_entries(LogOutcome::Written, written);
        metrics.log_entries(LogOutcome::Dropped, failed);
    }
}

#[cfg(test)]
mod tests;
