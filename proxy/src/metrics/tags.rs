//! Telemetry `metrics[].overrides[].tagOverrides`: standard labels left out
//! or given another value, and labels added, per standard metric and side,
//! as Istio's stats filter applies them. Values are CEL expressions
//! (`sluice_api::cel::parse_value`) evaluated once per request (per
//! connection for TCP) when the metrics are recorded; one that fails to
//! evaluate gives `unknown`. Proxies with no overrides never get here.

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use sluice_api::cel::{self, Attributes, Expr, Value};
use sluice_api::config as pb;

use super::{
    Custom, MESSAGE_LABEL_NAMES, MessageLabels, REQUEST_LABEL_NAMES, Relabel, RequestLabels,
    TCP_LABEL_NAMES, TcpLabels,
};
use crate::model::Text;

/// Standard metrics, indexed as [`super::standard`] bits shifted down by one:
/// 0..4 the request metrics, 4..8 the TCP ones, 8..10 the gRPC message ones.
const METRICS: usize = 10;
const REQUEST: std::ops::Range<usize> = 0..4;
const TCP: std::ops::Range<usize> = 4..8;
const MESSAGES: std::ops::Range<usize> = 8..10;

/// One label change as the controller sent it (shown in the config dump).
#[derive(Clone, Debug, Serialize)]
pub struct TagEntry {
    pub name: String,
    pub remove: bool,
    pub value: String,
    /// [`super::standard`] bits, per side.
    pub client_metrics: u16,
    pub server_metrics: u16,
}

/// What to do to one metric's labels on one side.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// Standard request / TCP / message labels left out (bit = index in
    /// the names).
    request_removed: u32,
    tcp_removed: u32,
    message_removed: u32,
    /// Labels set from expression `usize`, in name order.
    set: Vec<(Text, usize)>,
}

/// Every label change of the running config.
#[derive(Debug, Default)]
pub struct TagPlans {
    exprs: Vec<Expr>,
    /// `[client, server][metric]`; equal plans share one `Arc`.
    plans: [[Option<Arc<Plan>>; METRICS]; 2],
    /// Header names the expressions read (lower-case).
    headers: Vec<String>,
    entries: Vec<TagEntry>,
}

impl Serialize for TagPlans {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

/// Whether `name` is a label Prometheus accepts.
fn label_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn bit_of(names: &[&str], name: &str) -> u32 {
    names.iter().position(|n| *n == name).map_or(0, |i| 1 << i)
}

impl TagPlans {
    /// The plans of `tags`; `None` when there are none. An entry whose name
    /// or value the sidecar cannot use is an error naming it.
    pub fn new(
        tags: &[pb::MetricTag],
        bits: impl Fn(&[i32]) -> Result<u16, String>,
    ) -> Result<Option<Self>, String> {
        if tags.is_empty() {
            return Ok(None);
        }
        let mut out = TagPlans::default();
        let mut built: [[Plan; METRICS]; 2] = Default::default();
        for t in tags {
            if !label_name(&t.name) {
                return Err(format!(
                    "metric tag `{}`: not a Prometheus label name",
                    t.name
                ));
            }
            let expr = if t.remove {
                None
            } else {
                let e = cel::parse_value(&t.value)
                    .map_err(|e| format!("metric tag `{}`: {e} in `{}`", t.name, t.value))?;
                for h in e.headers() {
                    if !out.headers.contains(&h) {
                        out.headers.push(h);
                    }
                }
                out.exprs.push(e);
                Some(out.exprs.len() - 1)
            };
            let sides = [bits(&t.client_metrics)?, bits(&t.server_metrics)?];
            out.entries.push(TagEntry {
                name: t.name.clone(),
                remove: t.remove,
                value: t.value.clone(),
                client_metrics: sides[0],
                server_metrics: sides[1],
            });
            for (side, metrics) in sides.into_iter().enumerate() {
                for (m, plan) in built[side].iter_mut().enumerate() {
                    // Bit 1 is the first standard metric.
                    if metrics & (1 << (m + 1)) == 0 {
                        continue;
                    }
                    plan.request_removed |= bit_of(REQUEST_LABEL_NAMES, &t.name);
                    plan.tcp_removed |= bit_of(TCP_LABEL_NAMES, &t.name);
                    plan.message_removed |= bit_of(MESSAGE_LABEL_NAMES, &t.name);
                    plan.set.retain(|(n, _)| n.as_str() != t.name);
                    if let Some(i) = expr {
                        plan.set.push((Text::from(t.name.as_str()), i));
                    }
                }
            }
        }
        let mut shared: Vec<Arc<Plan>> = Vec::new();
        for (side, plans) in built.into_iter().enumerate() {
            for (m, mut plan) in plans.into_iter().enumerate() {
                if plan == Plan::default() {
                    continue;
                }
                plan.set.sort_by(|a, b| a.0.cmp(&b.0));
                let arc = match shared.iter().find(|p| ***p == plan) {
                    Some(p) => Arc::clone(p),
                    None => {
                        let p = Arc::new(plan);
                        shared.push(Arc::clone(&p));
                        p
                    }
                };
                out.plans[side][m] = Some(arc);
            }
        }
        Ok(Some(out))
    }

    /// Whether requests on `side` (0 client, 1 server) need [`TagFacts`]:
    /// some request or message metric there has a label from an expression.
    pub fn wants_facts(&self, side: usize) -> bool {
        let plans = &self.plans[side];
        plans[REQUEST]
            .iter()
            .chain(&plans[MESSAGES])
            .flatten()
            .any(|p| !p.set.is_empty())
    }

    /// Label changes on `side`: one per metric and label removed, replaced
    /// or added.
    pub fn changes(&self, side: usize) -> i64 {
        let per_metric = |m: usize, p: &Plan| {
            let (removed, names): (u32, &[&str]) = if REQUEST.contains(&m) {
                (p.request_removed, REQUEST_LABEL_NAMES)
            } else if TCP.contains(&m) {
                (p.tcp_removed, TCP_LABEL_NAMES)
            } else {
                (p.message_removed, MESSAGE_LABEL_NAMES)
            };
            let replaced = p
                .set
                .iter()
                .filter(|(n, _)| names.contains(&n.as_str()))
                .count();
            // A replaced label is in `removed` and in `set`: count it once.
            i64::from(removed.count_ones()) + p.set.len() as i64 - replaced as i64
        };
        self.plans[side]
            .iter()
            .enumerate()
            .filter_map(|(m, p)| p.as_ref().map(|p| per_metric(m, p)))
            .sum()
    }

    /// Header names the expressions read.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The labels of each request metric (`REQUEST_COUNT`, `_DURATION`,
    /// `REQUEST_SIZE`, `RESPONSE_SIZE`) for a request on `side`; `None` when
    /// none of them changes.
    pub fn request(
        &self,
        side: usize,
        labels: &RequestLabels,
        seen: &Seen<'_>,
        unknown: &Counter,
    ) -> Option<[RequestLabels; 4]> {
        let peers = Peers::of_request(side, labels);
        self.relabel(
            &self.plans[side][REQUEST],
            labels,
            (seen, peers),
            unknown,
            |p| p.request_removed,
        )
    }

    /// The labels of each TCP metric (opened, closed, sent, received) of a
    /// connection on `side`; `None` when none of them changes.
    pub fn tcp(
        &self,
        side: usize,
        labels: &TcpLabels,
        seen: &Seen<'_>,
        unknown: &Counter,
    ) -> Option<[TcpLabels; 4]> {
        let peers = Peers::of_tcp(side, labels);
        self.relabel(
            &self.plans[side][TCP],
            labels,
            (seen, peers),
            unknown,
            |p| p.tcp_removed,
        )
    }

    /// The labels of the gRPC message counters (request, response) of a
    /// call on `side` reported with `labels`; `None` when neither changes.
    pub fn messages(
        &self,
        side: usize,
        labels: &RequestLabels,
        seen: &Seen<'_>,
        unknown: &Counter,
    ) -> Option<[MessageLabels; 2]> {
        let plans = &self.plans[side][MESSAGES];
        if plans.iter().all(Option::is_none) {
            return None;
        }
        let peers = Peers::of_request(side, labels);
        let base = MessageLabels::from(labels);
        self.relabel(plans, &base, (seen, peers), unknown, |p| p.message_removed)
    }

    /// `base` as each of `plans` (one per metric) changes it: the standard
    /// labels the plan's `removed` mask leaves out blanked, its labels added;
    /// `None` when no plan changes anything.
    fn relabel<L: Relabel, const N: usize>(
        &self,
        plans: &[Option<Arc<Plan>>],
        base: &L,
        (seen, peers): (&Seen<'_>, Peers<'_>),
        unknown: &Counter,
        removed: fn(&Plan) -> u32,
    ) -> Option<[L; N]> {
        if plans.len() != N || plans.iter().all(Option::is_none) {
            return None;
        }
        let attrs = Facts { seen, peers };
        let values = self.evaluate(plans, &attrs, unknown);
        Some(std::array::from_fn(|i| {
            let mut l = base.clone();
            if let Some(p) = &plans[i] {
                let removed = removed(p);
                l.blank(removed);
                l.set_custom(custom(p, removed, &values));
            }
            l
        }))
    }

    /// The value of each expression the `plans` use (others stay empty).
    fn evaluate(
        &self,
        plans: &[Option<Arc<Plan>>],
        attrs: &Facts<'_>,
        unknown: &Counter,
    ) -> Vec<Option<Text>> {
        let mut values: Vec<Option<Text>> = vec![None; self.exprs.len()];
        for (_, i) in plans.iter().flatten().flat_map(|p| p.set.iter()) {
            if values[*i].is_none() {
                let v = self.exprs[*i].label(attrs);
                if v.is_none() {
                    unknown.inc();
                }
                values[*i] = Some(Text::from(v.as_deref().unwrap_or("unknown")));
            }
        }
        values
    }
}

fn custom(p: &Plan, removed: u32, values: &[Option<Text>]) -> Custom {
    let added = p
        .set
        .iter()
        .map(|(name, i)| {
            let v = values[*i].clone().unwrap_or_default();
            (name.clone(), v)
        })
        .collect();
    Custom::new(removed, added)
}

/// What a request looked like when it arrived, kept for label expressions
/// (only when some label needs it).
#[derive(Clone, Debug, Default)]
pub struct TagFacts {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub host: Option<String>,
    pub scheme: &'static str,
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub protocol: &'static str,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    /// The downstream connection's remote and local addresses.
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    /// The downstream connection is mutual TLS.
    pub mtls: bool,
    pub requested_server_name: Option<String>,
    /// `(lower-case name, value)` of each header an expression reads.
    pub headers: Vec<(String, Option<String>)>,
}

impl TagFacts {
    /// The facts of a request with `parts`, keeping the `headers` named.
    pub fn of(parts: &http::request::Parts, headers: &[String]) -> Self {
        Self::of_head(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            headers,
        )
    }

    /// The facts of a request head, keeping the `names` headers.
    pub fn of_head(
        method: &http::Method,
        uri: &http::Uri,
        version: http::Version,
        h: &http::HeaderMap,
        names: &[String],
    ) -> Self {
        let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        TagFacts {
            method: method.as_str().to_owned(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
            host: crate::http_util::authority_of(uri, h).map(str::to_owned),
            scheme: if uri.scheme_str() == Some("https") {
                "https"
            } else {
                "http"
            },
            protocol: match version {
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2",
                http::Version::HTTP_3 => "HTTP/3",
                _ => "HTTP/1.1",
            },
            user_agent: text("user-agent"),
            request_id: text("x-request-id"),
            headers: names.iter().map(|n| (n.clone(), text(n))).collect(),
            ..TagFacts::default()
        }
    }
}

/// What an expression sees at recording time.
pub struct Seen<'a> {
    pub facts: Option<&'a TagFacts>,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    /// Response code and gRPC status (HTTP only).
    pub response: Option<(u16, &'a Text)>,
}

/// A peer's metadata, from the standard labels.
#[derive(Clone, Copy)]
struct Peer<'a> {
    app: &'a Text,
    version: &'a Text,
    service: &'a Text,
    revision: &'a Text,
    workload: &'a Text,
    namespace: &'a Text,
    cluster: &'a Text,
}

/// The upstream (client side) or downstream (server side) peer.
struct Peers<'a> {
    upstream: Option<Peer<'a>>,
    downstream: Option<Peer<'a>>,
}

macro_rules! peers_of {
    ($side:expr, $l:expr) => {{
        let l = $l;
        let known = |t: &Text| !t.as_str().is_empty() && t.as_str() != "unknown";
        if $side == 0 {
            // Client side: the destination answered, when it has a sidecar.
            Peers {
                upstream: known(&l.destination_workload).then_some(Peer {
                    app: &l.destination_app,
                    version: &l.destination_version,
                    service: &l.destination_canonical_service,
                    revision: &l.destination_canonical_revision,
                    workload: &l.destination_workload,
                    namespace: &l.destination_workload_namespace,
                    cluster: &l.destination_cluster,
                }),
                downstream: None,
            }
        } else {
            Peers {
                upstream: None,
                downstream: known(&l.source_workload).then_some(Peer {
                    app: &l.source_app,
                    version: &l.source_version,
                    service: &l.source_canonical_service,
                    revision: &l.source_canonical_revision,
                    workload: &l.source_workload,
                    namespace: &l.source_workload_namespace,
                    cluster: &l.source_cluster,
                }),
            }
        }
    }};
}

impl<'a> Peers<'a> {
    fn of_request(side: usize, l: &'a RequestLabels) -> Self {
        peers_of!(side, l)
    }

    fn of_tcp(side: usize, l: &'a TcpLabels) -> Self {
        peers_of!(side, l)
    }
}

struct Facts<'a> {
    seen: &'a Seen<'a>,
    peers: Peers<'a>,
}

fn text(v: Option<&str>) -> Option<Value> {
    v.map(|s| Value::Str(s.to_owned()))
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Attributes for Facts<'_> {
    fn attribute(&self, name: &str) -> Option<Value> {
        let f = self.seen.facts;
        let peer_field = |peer: Option<Peer<'_>>, field: &str| {
            let p = peer?;
            let t = match field {
                "app" => p.app,
                "version" => p.version,
                "service" => p.service,
                "revision" => p.revision,
                "workload" => p.workload,
                "namespace" => p.namespace,
                "cluster" => p.cluster,
                _ => return None,
            };
            (!t.as_str().is_empty()).then(|| Value::Str(t.as_str().to_owned()))
        };
        if let Some(field) = name.strip_prefix("filter_state.upstream_peer.") {
            return peer_field(self.peers.upstream, field);
        }
        if let Some(field) = name.strip_prefix("filter_state.downstream_peer.") {
            return peer_field(self.peers.downstream, field);
        }
        match name {
            "filter_state.upstream_peer" => self.peers.upstream.map(|_| Value::Bool(true)),
            "filter_state.downstream_peer" => self.peers.downstream.map(|_| Value::Bool(true)),
            "response.code" => self
                .seen
                .response
                .filter(|(c, _)| *c != 0)
                .map(|(c, _)| Value::Int(c.into())),
            "response.grpc_status" => self
                .seen
                .response
                .and_then(|(_, g)| g.as_str().parse::<i64>().ok())
                .map(Value::Int),
            "request.size" => self.seen.request_bytes.map(int),
            "response.size" => self.seen.response_bytes.map(int),
            "request.method" => text(f.map(|f| f.method.as_str())),
            "request.path" => text(f.map(|f| f.path.as_str())),
            "request.url_path" => text(f.map(|f| f.path.split('?').next().unwrap_or(""))),
            "request.host" => text(f.and_then(|f| f.host.as_deref())),
            "request.scheme" => text(f.map(|f| f.scheme)),
            "request.protocol" => text(f.map(|f| f.protocol)),
            "request.useragent" => text(f.and_then(|f| f.user_agent.as_deref())),
            "request.id" => text(f.and_then(|f| f.request_id.as_deref())),
            "connection.mtls" => f.map(|f| Value::Bool(f.mtls)),
            "connection.requested_server_name" => {
                text(f.and_then(|f| f.requested_server_name.as_deref()))
            }
            "source.address" => f.and_then(|f| f.source).map(|a| Value::Str(a.to_string())),
            "source.port" => f.and_then(|f| f.source).map(|a| int(a.port().into())),
            "destination.address" => f
                .and_then(|f| f.destination)
                .map(|a| Value::Str(a.to_string())),
            "destination.port" => f.and_then(|f| f.destination).map(|a| int(a.port().into())),
            // upstream.*, xds.*, response.code_details: not known here.
            _ => None,
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.seen
            .facts?
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.clone())
    }
}
