//! Tracing, access logging and metrics of one proxy: Istio's Telemetry API
//! merged over the mesh config's defaults.
//!
//! Scopes, least to most specific: the root namespace without a selector,
//! the proxy's namespace without a selector, then a Telemetry whose selector
//! picks the workload (in its namespace). Of several at one level the oldest
//! applies, as Istio does. A more specific level overrides each field it
//! sets (providers, sampling, span reporting, `disabled`); custom tags merge
//! by name; metric overrides apply in order, so a later `disabled` on the
//! same metric and mode wins.

use super::{ProxyIdentity, canonical, namespace_of};
use crate::crd::Telemetry;
use crate::crd::telemetry::{TelemetryAccessLogging, TelemetryMetrics, TelemetryTracing};
use crate::index::MeshIndex;
use crate::mesh_config::{
    AccessLogEncoding, ENVOY_PROVIDER, MeshTelemetry, PROMETHEUS_PROVIDER, Provider,
};
use crate::resource::{Resource, kind};
use crate::services::labels_match;
use sluice_api::config as pb;
use std::collections::BTreeMap;

/// The telemetry settings of `proxy`.
pub(crate) fn for_proxy(index: &MeshIndex, proxy: &ProxyIdentity) -> pb::Telemetry {
    let mesh = &index.mesh.telemetry;
    let levels = levels(index, proxy);
    let (app, _) = canonical(&proxy.labels, &proxy.workload);
    pb::Telemetry {
        tracing: tracing(mesh, &levels, &format!("{app}.{}", proxy.namespace)),
        access_log: access_log(mesh, &levels),
        ..disabled_metrics(mesh, &levels)
    }
}

/// Whether the provider named `name` is the Prometheus one (the built-in
/// `prometheus`, or an `extensionProviders` entry of that type).
fn is_prometheus(mesh: &MeshTelemetry, name: &str) -> bool {
    match mesh.providers.get(name) {
        Some(p) => matches!(p, Provider::Prometheus),
        None => name.eq_ignore_ascii_case(PROMETHEUS_PROVIDER),
    }
}

/// Standard metrics in the order of `pb::StandardMetric`, by Istio's names.
const STANDARD: [(&str, pb::StandardMetric); 10] = [
    ("REQUEST_COUNT", pb::StandardMetric::RequestCount),
    ("REQUEST_DURATION", pb::StandardMetric::RequestDuration),
    ("REQUEST_SIZE", pb::StandardMetric::RequestSize),
    ("RESPONSE_SIZE", pb::StandardMetric::ResponseSize),
    (
        "TCP_OPENED_CONNECTIONS",
        pb::StandardMetric::TcpOpenedConnections,
    ),
    (
        "TCP_CLOSED_CONNECTIONS",
        pb::StandardMetric::TcpClosedConnections,
    ),
    ("TCP_SENT_BYTES", pb::StandardMetric::TcpSentBytes),
    ("TCP_RECEIVED_BYTES", pb::StandardMetric::TcpReceivedBytes),
    (
        "GRPC_REQUEST_MESSAGES",
        pb::StandardMetric::GrpcRequestMessages,
    ),
    (
        "GRPC_RESPONSE_MESSAGES",
        pb::StandardMetric::GrpcResponseMessages,
    ),
];

/// The standard metrics switched off per side by `metrics[].overrides[]`
/// `disabled`, and the label changes of their `tagOverrides`, as istiod merges
/// them (`mergeMetrics`). Providers: the ones named by the last `metrics`
/// entry that names any (the most specific level's), else MeshConfig's
/// `defaultProviders.metrics`; without the Prometheus provider among them the
/// proxy serves no standard metric. An entry naming no providers applies to
/// its predecessor's. The Prometheus entries' overrides apply least specific
/// level first, each in order, so the last one naming a metric and mode
/// decides (for a label: the last one naming it). `disabled: true` for all
/// metrics (`ALL_METRICS`, or no metric named) switches a side off whole
/// until a later override for that side, which brings back every metric not
/// switched off one by one. Custom metrics select nothing Sluice exports.
fn disabled_metrics(mesh: &MeshTelemetry, levels: &[&Telemetry]) -> pb::Telemetry {
    let entries: Vec<_> = levels.iter().flat_map(|t| t.spec.metrics.iter()).collect();
    let names = |e: &TelemetryMetrics| -> Vec<String> {
        e.providers.iter().map(|p| p.name.clone()).collect()
    };
    let in_scope = entries
        .iter()
        .rev()
        .map(|e| names(e))
        .find(|n| !n.is_empty())
        .unwrap_or_else(|| mesh.default_metrics.clone());
    let prometheus_in = |list: &[String]| list.iter().any(|n| is_prometheus(mesh, n));
    let mut served = entries.is_empty() && prometheus_in(&mesh.default_metrics);
    // Per side: every metric off (istiod drops the side's stats filter).
    let mut side_off = [false; 2];
    let mut off = [[false; STANDARD.len()]; 2];
    // (label, side, metric) → Some(value expression) or None (REMOVE).
    let mut tags: BTreeMap<(String, usize, usize), Option<String>> = BTreeMap::new();
    let mut parent = mesh.default_metrics.clone();
    for entry in entries {
        let own = names(entry);
        if !own.is_empty() {
            parent = own;
        }
        // A provider counts only while the most specific level keeps it.
        if !parent
            .iter()
            .any(|n| is_prometheus(mesh, n) && in_scope.contains(n))
        {
            continue;
        }
        served = true;
        // Validation refused what does not parse.
        for o in entry.parsed_overrides().flatten() {
            let selector = o.match_.as_ref();
            let (client, server) = sides(selector.and_then(|s| s.mode.as_deref()));
            let every = selector.is_none_or(|s| {
                s.custom_metric.is_none() && s.metric.as_deref().is_none_or(|m| m == "ALL_METRICS")
            });
            for (side, applies) in [client, server].into_iter().enumerate() {
                if applies {
                    side_off[side] = every && o.disabled == Some(true);
                }
            }
            if (every && o.disabled == Some(true))
                || selector.is_some_and(|s| s.custom_metric.is_some())
            {
                continue;
            }
            let metric = selector.and_then(|s| s.metric.as_deref());
            for (i, (name, _)) in STANDARD.iter().enumerate() {
                if !metric.is_none_or(|m| m == "ALL_METRICS" || m == *name) {
                    continue;
                }
                for (side, applies) in [client, server].into_iter().enumerate() {
                    if !applies {
                        continue;
                    }
                    if let Some(disabled) = o.disabled {
                        off[side][i] = disabled;
                    }
                    for (tag, t) in &o.tag_overrides {
                        let value = match t.operation.as_deref() {
                            Some("REMOVE") => None,
                            _ => Some(t.value.clone().unwrap_or_default()),
                        };
                        tags.insert((tag.clone(), side, i), value);
                    }
                }
            }
        }
    }
    let list = |side: &[bool; STANDARD.len()]| {
        STANDARD
            .iter()
            .zip(side)
            .filter(|(_, off)| **off)
            .map(|((_, m), _)| *m as i32)
            .collect()
    };
    for (side, whole) in side_off.iter().enumerate() {
        if !served || *whole {
            off[side] = [true; STANDARD.len()];
        }
    }
    tags.retain(|(_, side, _), _| !off[*side].iter().all(|o| *o));
    pb::Telemetry {
        client_disabled_metrics: list(&off[0]),
        server_disabled_metrics: list(&off[1]),
        metric_tags: metric_tags(&tags),
        ..Default::default()
    }
}

/// One entry per label and change, with the metrics of each side it applies to.
fn metric_tags(tags: &BTreeMap<(String, usize, usize), Option<String>>) -> Vec<pb::MetricTag> {
    let mut out: Vec<pb::MetricTag> = Vec::new();
    for ((name, side, metric), value) in tags {
        let (name, side, metric) = (name.as_str(), *side, *metric);
        let remove = value.is_none();
        let value = value.as_deref().unwrap_or_default();
        let at = match out
            .iter()
            .position(|t| t.name == name && t.remove == remove && t.value == value)
        {
            Some(at) => at,
            None => {
                out.push(pb::MetricTag {
                    name: name.to_owned(),
                    remove,
                    value: value.to_owned(),
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let m = STANDARD[metric].1 as i32;
        if side == 0 {
            out[at].client_metrics.push(m);
        } else {
            out[at].server_metrics.push(m);
        }
    }
    out
}

/// The Telemetry objects that apply, least specific first.
fn levels<'a>(index: &'a MeshIndex, proxy: &ProxyIdentity) -> Vec<&'a Telemetry> {
    let root = index.mesh.root_namespace.as_str();
    let mut mesh_wide = Vec::new();
    let mut namespace_wide = Vec::new();
    let mut workload = Vec::new();
    for resource in index.of_kind(kind::TELEMETRY) {
        let Resource::Telemetry(t) = resource else {
            continue;
        };
        let ns = namespace_of(&t.metadata);
        match &t.spec.selector {
            None if ns == root => mesh_wide.push(t),
            None if ns == proxy.namespace => namespace_wide.push(t),
            Some(sel)
                if ns == proxy.namespace && labels_match(&sel.match_labels, &proxy.labels) =>
            {
                workload.push(t)
            }
            _ => {}
        }
    }
    [mesh_wide, namespace_wide, workload]
        .into_iter()
        .filter_map(|mut level| {
            level.sort_by_key(|t| {
                (
                    t.metadata.creation_timestamp.as_ref().map(|ts| ts.0),
                    t.metadata.name.clone(),
                )
            });
            level.first().copied()
        })
        .collect()
}

/// Whether an entry applies to the client side, the server side.
fn sides(mode: Option<&str>) -> (bool, bool) {
    match mode {
        Some("CLIENT") => (true, false),
        Some("SERVER") => (false, true),
        _ => (true, true),
    }
}

/// Tracing fields after merging, for one side.
#[derive(Clone, Default, PartialEq)]
struct TracingMerge {
    providers: Option<Vec<String>>,
    sampling: Option<f64>,
    disable_reporting: Option<bool>,
    tags: BTreeMap<String, pb::CustomTag>,
}

impl TracingMerge {
    fn apply(&mut self, t: &TelemetryTracing) {
        if !t.providers.is_empty() {
            self.providers = Some(t.providers.iter().map(|p| p.name.clone()).collect());
        }
        if t.random_sampling_percentage.is_some() {
            self.sampling = t.random_sampling_percentage;
        }
        if t.disable_span_reporting.is_some() {
            self.disable_reporting = t.disable_span_reporting;
        }
        for (name, tag) in &t.custom_tags {
            let value = if let Some(l) = &tag.literal {
                pb::custom_tag::Value::Literal(l.value.clone())
            } else if let Some(h) = &tag.header {
                pb::custom_tag::Value::Header(pb::HeaderTag {
                    name: h.name.clone(),
                    default_value: h.default_value.clone().unwrap_or_default(),
                })
            } else if let Some(e) = &tag.environment {
                pb::custom_tag::Value::Environment(pb::EnvTag {
                    name: e.name.clone(),
                    default_value: e.default_value.clone().unwrap_or_default(),
                })
            } else {
                continue;
            };
            self.tags.insert(
                name.clone(),
                pb::CustomTag {
                    name: name.clone(),
                    value: Some(value),
                },
            );
        }
    }

    /// The OTLP endpoint and provider name, when spans are reported.
    fn exporter(&self, mesh: &MeshTelemetry) -> Option<(String, String)> {
        if !mesh.enable_tracing || self.disable_reporting == Some(true) {
            return None;
        }
        let providers = self.providers.as_ref().unwrap_or(&mesh.default_tracing);
        // Istio supports one tracing provider per proxy.
        let name = providers.first()?;
        match mesh.providers.get(name)? {
            Provider::OpenTelemetry { host, port } => {
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                Some((format!("{host}:{port}"), name.clone()))
            }
            _ => None,
        }
    }
}

fn tracing(mesh: &MeshTelemetry, levels: &[&Telemetry], service: &str) -> Option<pb::Tracing> {
    let mut client = TracingMerge::default();
    let mut server = TracingMerge::default();
    for t in levels {
        for entry in &t.spec.tracing {
            let mode = entry.match_.as_ref().and_then(|m| m.mode.as_deref());
            let (c, s) = sides(mode);
            if c {
                client.apply(entry);
            }
            if s {
                server.apply(entry);
            }
        }
    }
    let (mode, chosen) = match (client.exporter(mesh), server.exporter(mesh)) {
        (None, None) => return None,
        (Some(_), None) => (pb::TracingMode::Client, (&client, client.exporter(mesh))),
        (None, Some(_)) => (pb::TracingMode::Server, (&server, server.exporter(mesh))),
        // One proxy reports to one collector; where the sides differ in
        // detail, the server side's settings are used for both.
        (Some(_), Some(e)) => (pb::TracingMode::ClientAndServer, (&server, Some(e))),
    };
    let (merged, Some((endpoint, provider))) = chosen else {
        return None;
    };
    Some(pb::Tracing {
        sampling_percent: merged.sampling.unwrap_or(mesh.default_sampling),
        otlp_endpoint: endpoint,
        service_name: service.to_string(),
        custom_tags: merged.tags.values().cloned().collect(),
        mode: mode as i32,
        provider,
    })
}

fn access_log(mesh: &MeshTelemetry, levels: &[&Telemetry]) -> Option<pb::AccessLog> {
    let client = access_log_side(mesh, levels, |c, _| c);
    let server = access_log_side(mesh, levels, |_, s| s);
    let (mode, chosen) = match (client, server) {
        (None, None) => return None,
        (Some(c), None) => (pb::TracingMode::Client, c),
        (None, Some(s)) => (pb::TracingMode::Server, s),
        // One log per proxy: where the sides name different providers, the
        // server side's format is used for both.
        (Some(_), Some(s)) => (pb::TracingMode::ClientAndServer, s),
    };
    Some(pb::AccessLog {
        mode: mode as i32,
        ..chosen
    })
}

/// The access log one side (picked from `(client, server)` by `side`) gets.
fn access_log_side(
    mesh: &MeshTelemetry,
    levels: &[&Telemetry],
    side: fn(bool, bool) -> bool,
) -> Option<pb::AccessLog> {
    // accessLogFile is the legacy switch: the built-in provider for everyone
    // unless a Telemetry says otherwise.
    let mut providers: Vec<String> = if mesh.access_log_file.is_some() {
        vec![ENVOY_PROVIDER.to_string()]
    } else {
        mesh.default_access_logging.clone()
    };
    let mut disabled = false;
    let mut filter = String::new();
    for entry in levels.iter().flat_map(|t| t.spec.access_logging.iter()) {
        let TelemetryAccessLogging {
            providers: named,
            disabled: off,
            match_,
            filter: expression,
        } = entry;
        let (c, s) = sides(match_.as_ref().and_then(|m| m.mode.as_deref()));
        if !side(c, s) {
            continue;
        }
        if !named.is_empty() {
            providers = named.iter().map(|p| p.name.clone()).collect();
        }
        if let Some(f) = expression {
            filter = f.expression.clone();
        }
        if let Some(off) = off {
            disabled = *off;
        } else if !named.is_empty() {
            disabled = false;
        }
    }
    if disabled {
        return None;
    }
    providers.iter().find_map(|name| {
        let encoding = match mesh.providers.get(name) {
            None if name == ENVOY_PROVIDER => mesh.access_log_encoding,
            Some(Provider::FileAccessLog { encoding }) => *encoding,
            _ => return None,
        };
        Some(pb::AccessLog {
            encoding: match encoding {
                AccessLogEncoding::Text => pb::AccessLogEncoding::Text,
                AccessLogEncoding::Json => pb::AccessLogEncoding::Json,
            } as i32,
            provider: name.clone(),
            mode: pb::TracingMode::ClientAndServer as i32,
            filter: filter.clone(),
        })
    })
}

#[cfg(test)]
mod tests;
