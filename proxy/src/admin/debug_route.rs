//! `/debug/route`: explains how the running config routes a described request —
//! which virtual host, why earlier routes did not match, and where traffic goes.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use crate::matching::{Matched, RequestView, host_of, port_of, select_vhost};
use crate::model::{Action, Running};
use crate::path_normalization;
use crate::rewrite::{path_and_query, redirect_location, rewritten_path};

/// Decodes `%XX` and `+` in a query component.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request described by `/debug/route`'s query string.
pub struct Described {
    pub authority: String,
    pub path: String,
    pub query: Option<String>,
    pub method: String,
    pub scheme: String,
    pub headers: HeaderMap,
}

impl Described {
    /// Parses `host=..&path=..&method=..&header=k:v&query=..&scheme=..`.
    pub fn parse(query: &str) -> Result<Self, String> {
        let mut d = Described {
            authority: String::new(),
            path: "/".to_owned(),
            query: None,
            method: "GET".to_owned(),
            scheme: "http".to_owned(),
            headers: HeaderMap::new(),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k {
                "host" | "authority" => d.authority = v,
                "path" => match v.split_once('?') {
                    Some((p, q)) => {
                        d.path = p.to_owned();
                        d.query = Some(q.to_owned());
                    }
                    None => d.path = v,
                },
                "method" => d.method = v.to_ascii_uppercase(),
                "scheme" => d.scheme = v,
                "query" => d.query = Some(v),
                "header" => {
                    let (name, value) = v
                        .split_once(':')
                        .ok_or_else(|| format!("header {v:?} is not name:value"))?;
                    let name = HeaderName::from_bytes(name.trim().as_bytes())
                        .map_err(|_| format!("bad header name {name:?}"))?;
                    let value = HeaderValue::from_str(value.trim())
                        .map_err(|_| format!("bad value for header {name}"))?;
                    d.headers.append(name, value);
                }
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (use host, path, method, scheme, header, query)"
                    ));
                }
            }
        }
        if d.authority.is_empty() {
            return Err("missing host=<host[:port]>".to_owned());
        }
        Ok(d)
    }
}

/// What a sidecar running `snapshot` would do with `d`, as `/debug/route`
/// answers it (for tools that simulate a sidecar, e.g. `sluicectl describe`);
/// an error when the sidecar would refuse (NACK) the snapshot.
pub fn explain_snapshot(
    snapshot: &sluice_api::config::Snapshot,
    d: &Described,
) -> Result<Value, String> {
    let running = Running::try_from(snapshot).map_err(|e| e.to_string())?;
    Ok(explain(&running, d))
}

/// The explanation as JSON.
pub fn explain(running: &Running, d: &Described) -> Value {
    let cfg = &running.config;
    let host = host_of(&d.authority);
    let port = port_of(&d.authority).unwrap_or(80);
    let mut out = json!({
        "config_version": running.version,
        "request": {
            "host": host, "port": port, "method": d.method, "path": d.path, "query": d.query,
            "headers": d.headers.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<binary>"))).collect::<Vec<_>>(),
        },
    });
    // Routing sees the normalized path, as the outbound listener does.
    let normalized = match path_normalization::normalize(&d.path, cfg.path_normalization) {
        Ok(normalized) => normalized,
        Err(e) => {
            out["result"] = json!(format!("400: path normalization refused the path ({e})"));
            return out;
        }
    };
    if let Some(p) = &normalized {
        out["request"]["normalized_path"] = json!(p);
    }
    let path = normalized.as_deref().unwrap_or(&d.path);
    let Some(vh) = select_vhost(cfg, &host, port) else {
        let on_port: Vec<Value> = cfg
            .virtual_hosts
            .iter()
            .filter(|v| v.port == port)
            .map(|v| json!({"name": v.name, "why_not": format!("domains {:?} do not include {host:?}", domain_list(v))}))
            .collect();
        out["result"] = json!(if cfg.registry_only {
            format!("502: no virtual host for {host}:{port} (outboundTrafficPolicy REGISTRY_ONLY)")
        } else {
            format!("404 NR: no virtual host for {host}:{port}")
        });
        out["virtual_hosts_on_port"] = json!(on_port);
        return out;
    };
    let others: Vec<Value> = cfg
        .virtual_hosts
        .iter()
        .filter(|v| v.port == vh.port && !std::ptr::eq(*v, vh))
        .map(|v| {
            let why = match v.domain_score(&host) {
                Some(_) => "names the host less specifically".to_owned(),
                None => format!("domains {:?} do not include {host:?}", domain_list(v)),
            };
            json!({"name": v.name, "why_not": why})
        })
        .collect();
    let why_selected = if vh.port == port {
        format!("port {port} and domain match for {host:?}")
    } else {
        format!(
            "no virtual host on port {port} names {host:?}; the only one that does is on port {}",
            vh.port
        )
    };
    out["virtual_host"] =
        json!({"name": vh.name, "service": vh.service, "port": vh.port, "why": why_selected});
    out["other_virtual_hosts"] = json!(others);
    let view = RequestView {
        method: &d.method,
        scheme: &d.scheme,
        authority: &d.authority,
        path,
        query: d.query.as_deref(),
        headers: &d.headers,
    };
    let mut tried = Vec::new();
    for (i, route) in vh.routes.iter().enumerate() {
        if let Some(matched) = route.applies(&view) {
            out["routes_not_matched"] = json!(tried);
            out["route"] = json!({
                "index": i,
                "route": route.describe(),
                "matched_by": match matched {
                    Matched::Always => Cow::Borrowed("route has no match conditions"),
                    Matched::Alternative(m) => Cow::Owned(format!("match[{m}]{}", named(&route.matches[m].name))),
                },
            });
            out["action"] = action(running, route, matched, &view);
            return out;
        }
        let why: Vec<String> = route
            .matches
            .iter()
            .enumerate()
            .filter_map(|(m, rm)| {
                rm.check(&view)
                    .err()
                    .map(|e| format!("match[{m}]{}: {e}", named(&rm.name)))
            })
            .collect();
        tried.push(json!({"index": i, "route": route.describe(), "why_not": why}));
    }
    out["routes_not_matched"] = json!(tried);
    out["result"] = json!(format!("404 NR: no route of {} matched", vh.name));
    out
}

fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name:?})")
    }
}

fn domain_list(v: &crate::model::VirtualHost) -> Vec<String> {
    v.domains
        .iter()
        .map(|d| match d {
            crate::model::Domain::Exact(e) => e.clone(),
            crate::model::Domain::Wildcard(s) => format!("*{s}"),
        })
        .collect()
}

fn action(
    running: &Running,
    route: &crate::model::Route,
    matched: Matched,
    view: &RequestView<'_>,
) -> Value {
    match &route.action {
        Action::DirectResponse { status, body } => {
            json!({"direct_response": {"status": status, "body": body}})
        }
        Action::Redirect(r) => json!({"redirect": {
            "status": r.status,
            "location": redirect_location(r, view.scheme, view.authority, view.path, view.query),
        }}),
        Action::Forward(dests) => {
            let total: u64 = dests.iter().map(|d| u64::from(d.weight)).sum();
            let list: Vec<Value> = dests
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let share = match total {
                        0 if i == 0 => 100.0,
                        0 => 0.0,
                        t => (f64::from(d.weight) * 100.0 / t as f64 * 100.0).round() / 100.0,
                    };
                    let cluster = running.config.cluster(&d.cluster);
                    json!({
                        "cluster": d.cluster,
                        "weight": d.weight,
                        "share_percent": share,
                        "subset": cluster.map(|c| c.subset.clone()),
                        "load_balancer": cluster.map(|c| format!("{:?}", c.load_balancer)),
                        "endpoints": cluster.map(|c| c.endpoints.iter().map(|e| json!({
                            "address": format!("{}:{}", e.address, e.port),
                            "via_sidecar": e.sidecar,
                            "workload": e.workload.workload,
                            "version": e.workload.version,
                        })).collect::<Vec<_>>()),
                        "problem": if cluster.is_none() { Some("cluster not configured: 503 NC") } else if cluster.is_some_and(|c| c.endpoints.is_empty()) { Some("no endpoints: 503 UH") } else { None },
                        "request_headers": d.request_headers.summary,
                        "response_headers": d.response_headers.summary,
                    })
                })
                .collect();
            let path = rewritten_path(route, matched, view.path);
            json!({"forward": {
                "destinations": list,
                "upstream_path": path_and_query(&path, view.query),
                "upstream_authority": route.rewrite.authority.as_deref().unwrap_or(view.authority),
                "request_headers": route.request_headers.summary,
                "response_headers": route.response_headers.summary,
                "timeout_ms": route.timeout_ms,
                "fault": route.fault,
                "mirrors": route.mirrors,
                "retries": route.retries,
            }})
        }
    }
}
