//! Reads the controller's `/debug/syncz` to tell when every proxy applied the latest config.
use crate::client;
use serde_json::Value;
use std::net::SocketAddr;

/// One proxy's sync state.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySync {
    /// Proxy id (`<svc>-<version>-<i>.<ns>`).
    pub id: String,
    /// Last version acknowledged.
    pub acked: Option<String>,
    /// Last NACK, as `version: error`.
    pub last_nack: Option<String>,
}

/// The controller's view.
#[derive(Debug, Clone, PartialEq)]
pub struct Syncz {
    /// Revision of the controller's config view.
    pub revision: u64,
    /// Connected proxies.
    pub proxies: Vec<ProxySync>,
    /// The controller has seen a change it has not published yet (the rest
    /// of a burst waiting for quiet), so `revision` is not final.
    pub pending: bool,
}

impl Syncz {
    /// Proxies among `ids` that have not acked `revision` (missing ones included).
    pub fn lagging(&self, ids: &[String]) -> Vec<String> {
        let want = self.revision.to_string();
        ids.iter()
            .filter_map(|id| match self.proxies.iter().find(|p| &p.id == id) {
                None => Some(format!("{id} (not connected)")),
                Some(p) if p.acked.as_deref() == Some(want.as_str()) => None,
                Some(p) => Some(format!(
                    "{id} (acked {}{})",
                    p.acked.as_deref().unwrap_or("nothing"),
                    p.last_nack
                        .as_ref()
                        .map(|n| format!(", last NACK {n}"))
                        .unwrap_or_default()
                )),
            })
            .collect()
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses the syncz JSON leniently (numbers or strings for versions).
pub fn parse(body: &[u8]) -> Option<Syncz> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let revision = match &v["revision"] {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let proxies = v["proxies"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some(ProxySync {
                        id: text(&p["id"])?,
                        acked: text(&p["versionAcked"]),
                        last_nack: p["lastNack"].as_object().map(|n| {
                            format!(
                                "{}: {}",
                                n.get("version").and_then(text).unwrap_or_default(),
                                n.get("error").and_then(text).unwrap_or_default()
                            )
                        }),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Syncz {
        revision,
        proxies,
        pending: v["pending"].as_bool().unwrap_or(false),
    })
}

/// Fetches and parses `/debug/syncz`; the error says why there is no answer.
pub async fn fetch(metrics_addr: SocketAddr) -> Result<Syncz, String> {
    let resp = client::http_get(metrics_addr, "/debug/syncz")
        .await
        .map_err(|e| format!("GET http://{metrics_addr}/debug/syncz: {e}"))?;
    if resp.status != 200 {
        return Err(format!(
            "GET http://{metrics_addr}/debug/syncz: status {}",
            resp.status
        ));
    }
    parse(&resp.body).ok_or_else(|| {
        format!(
            "GET http://{metrics_addr}/debug/syncz: unexpected body {:?}",
            String::from_utf8_lossy(&resp.body)
                .chars()
                .take(200)
                .collect::<String>()
        )
    })
}
