//! Probe rewrite (Istio's `rewriteAppHTTPProbers`): kubelet's HTTP probes of
//! the app go to the proxy's health port, which forwards them to the app.
//!
//! With mTLS on the inbound side, kubelet's plaintext probe could not reach
//! the app through the proxy; so each HTTP `livenessProbe`, `readinessProbe`
//! and `startupProbe` of an app container is pointed at
//! `:15021/app-health/<container>/<livez|readyz|startupz>`, and the original
//! is recorded in the sidecar's `SLUICE_APP_PROBES` environment variable:
//!
//! ```json
//! {"/app-health/web/livez":{"httpGet":{"path":"/healthz","port":8080,"scheme":"HTTP"},"timeoutSeconds":1}}
//! ```
//!
//! A JSON object keyed by the rewritten path; each value holds `httpGet`
//! (Kubernetes' `HTTPGetAction` with the port always resolved to a number;
//! `path`, `scheme`, `host`, `httpHeaders` as the user wrote them, absent
//! when unset) and `timeoutSeconds` when the probe set one. Keys are sorted.
//! TCP, gRPC and exec probes are left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::capture::HEALTH_PORT;

/// Original probes by rewritten path, as `SLUICE_APP_PROBES` carries them.
pub type AppProbes = BTreeMap<String, serde_json::Value>;

/// Points the HTTP probes of `container` at the proxy and records the originals.
pub fn rewrite(container: &mut Container, recorded: &mut AppProbes) {
    let name = container.name.clone();
    let ports = container.ports.clone().unwrap_or_default();
    let resolve = |port: &IntOrString| -> Option<i32> {
        match port {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(s) => s.parse().ok().or_else(|| {
                ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(s.as_str()))
                    .map(|p| p.container_port)
            }),
        }
    };
    for (probe, kind) in [
        (&mut container.liveness_probe, "livez"),
        (&mut container.readiness_probe, "readyz"),
        (&mut container.startup_probe, "startupz"),
    ] {
        let Some(probe) = probe.as_mut() else {
            continue;
        };
        let Some(get) = probe.http_get.as_ref() else {
            continue;
        };
        // A port kubelet cannot resolve fails the same way rewritten or not;
        // one that is already the proxy's needs no forwarding.
        let Some(port) = resolve(&get.port) else {
            continue;
        };
        if port == i32::from(HEALTH_PORT) {
            continue;
        }
        let path = format!("/app-health/{name}/{kind}");
        recorded.insert(path.clone(), original(get, port, probe));
        probe.http_get = Some(HTTPGetAction {
            path: Some(path),
            port: IntOrString::Int(i32::from(HEALTH_PORT)),
            scheme: Some("HTTP".to_owned()),
            host: None,
            http_headers: None,
        });
    }
}

fn original(get: &HTTPGetAction, port: i32, probe: &Probe) -> serde_json::Value {
    let mut get = get.clone();
    get.port = IntOrString::Int(port);
    let mut entry = serde_json::Map::new();
    // Serialising a k8s-openapi struct into a Value cannot fail (no maps with
    // non-string keys); Null would only drop the record, never panic.
    entry.insert(
        "httpGet".to_owned(),
        serde_json::to_value(&get).unwrap_or(serde_json::Value::Null),
    );
    if let Some(timeout) = probe.timeout_seconds {
        entry.insert("timeoutSeconds".to_owned(), timeout.into());
    }
    serde_json::Value::Object(entry)
}
