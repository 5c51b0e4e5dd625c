//! The human-readable form of a [`Description`].

use super::Description;
use super::report::{ServiceView, WorkloadView};
use std::fmt::Write as _;

/// The description as text, one section per service and workload.
pub fn text(d: &Description) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}/{}  (from {}, config revision {})",
        d.target.kind, d.target.namespace, d.target.name, d.source, d.revision
    );
    if d.services.is_empty() {
        let _ = writeln!(out, "\nNo service in the mesh has it as an endpoint.");
    }
    for s in &d.services {
        service(&mut out, s, &d.viewer);
    }
    for w in &d.workloads {
        workload(&mut out, w);
    }
    if let Some(r) = &d.request {
        let _ = writeln!(out, "\nSample request: {} (from {})", r.line, r.from);
        let _ = writeln!(
            out,
            "   simulated (revision {}): {}",
            d.revision, r.simulated_summary
        );
        for tried in r.simulated["routes_not_matched"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let why: Vec<&str> = tried["why_not"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|w| w.as_str())
                .collect();
            let _ = writeln!(
                out,
                "      skipped route {} ({}): {}",
                tried["index"],
                tried["route"].as_str().unwrap_or("?"),
                why.join("; ")
            );
        }
        if let Some(live) = &r.live {
            match (&live.summary, &live.error) {
                (Some(summary), _) => {
                    let version = live
                        .answer
                        .as_ref()
                        .and_then(|a| a.get("config_version"))
                        .and_then(|v| v.as_str())
                        .unwrap_or("?");
                    let _ = writeln!(
                        out,
                        "   sidecar {} (config version {version}): {summary}",
                        live.admin
                    );
                }
                (None, Some(e)) => {
                    let _ = writeln!(out, "   sidecar {}: {e}", live.admin);
                }
                (None, None) => {}
            }
            match r.agree {
                Some(true) => {
                    let _ = writeln!(out, "   the sidecar agrees with the simulation");
                }
                Some(false) => {
                    let _ = writeln!(
                        out,
                        "   DIFFERENT: the sidecar does not run this configuration (not synced yet? see sluicectl proxy-status)"
                    );
                    for diff in &r.differences {
                        let _ = writeln!(out, "      {diff}");
                    }
                }
                None => {}
            }
        }
    }
    if d.warnings.is_empty() {
        let _ = writeln!(out, "\nNo conflicts found.");
    } else {
        let _ = writeln!(out, "\nWarnings:");
        for w in &d.warnings {
            let _ = writeln!(out, "   - {w}");
        }
    }
    out
}

fn service(out: &mut String, s: &ServiceView, viewer: &str) {
    let ports: Vec<String> = s
        .ports
        .iter()
        .map(|p| format!("{}/{}", p.number, p.protocol))
        .collect();
    let _ = writeln!(out, "\nService: {}  ports {}", s.host, ports.join(", "));
    let endpoints: Vec<String> = s
        .endpoints
        .iter()
        .map(|e| {
            format!(
                "{} ({}{}{})",
                e.address,
                e.workload,
                e.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                if e.sidecar { "" } else { ", no sidecar" }
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "   Endpoints: {}",
        if endpoints.is_empty() {
            "none".to_owned()
        } else {
            endpoints.join(", ")
        }
    );
    let _ = writeln!(out, "   As seen by {viewer}:");
    match &s.virtual_service {
        Some(vs) => {
            let _ = writeln!(out, "   VirtualService: {} ({})", vs.object, vs.why);
        }
        None => {
            let _ = writeln!(
                out,
                "   VirtualService: none (default route to every endpoint)"
            );
        }
    }
    for vs in &s.ignored_virtual_services {
        let _ = writeln!(out, "      ignored {}: {}", vs.object, vs.why);
    }
    match &s.destination_rule {
        Some(dr) => {
            let _ = writeln!(out, "   DestinationRule: {} ({})", dr.object, dr.why);
            for sub in &s.subsets {
                let _ = writeln!(
                    out,
                    "      subset {} ({}): {} endpoint(s)",
                    sub.name, sub.labels, sub.endpoints
                );
            }
        }
        None => {
            let _ = writeln!(out, "   DestinationRule: none");
        }
    }
    for dr in &s.ignored_destination_rules {
        let _ = writeln!(out, "      ignored {}: {}", dr.object, dr.why);
    }
}

fn workload(out: &mut String, w: &WorkloadView) {
    let i = &w.instance;
    let ips: Vec<String> = i.ips.iter().map(ToString::to_string).collect();
    let _ = writeln!(
        out,
        "\nWorkload: {}/{} ({}, workload {}, service account {}, {}, address {})",
        i.namespace,
        i.name,
        i.kind,
        i.workload,
        i.service_account,
        if i.sidecar { "sidecar" } else { "NO sidecar" },
        if ips.is_empty() {
            "none".to_owned()
        } else {
            ips.join(", ")
        }
    );
    let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "   Labels: {}", labels.join(", "));
    if w.peer_authentications.is_empty() {
        let _ = writeln!(out, "   PeerAuthentication: none (PERMISSIVE)");
    } else {
        let _ = writeln!(out, "   PeerAuthentication:");
    }
    for pa in &w.peer_authentications {
        let ports = if pa.port_level.is_empty() {
            String::new()
        } else {
            format!(", portLevelMtls {}", pa.port_level.join(" "))
        };
        let _ = writeln!(
            out,
            "      {:<9} {} mode {}{ports}{}",
            pa.level,
            pa.object,
            pa.mode,
            if pa.decides { " (decides)" } else { "" }
        );
    }
    let ports: Vec<String> = w
        .ports
        .iter()
        .map(|p| format!("port {} {}", p.port, p.mode))
        .collect();
    let _ = writeln!(
        out,
        "   Effective mTLS: {}{}",
        w.mtls,
        if ports.is_empty() {
            String::new()
        } else {
            format!(" ({})", ports.join(", "))
        }
    );
    if w.jwt_rules.is_empty() {
        let _ = writeln!(
            out,
            "   RequestAuthentication: none (tokens are not checked)"
        );
    } else {
        let _ = writeln!(
            out,
            "   RequestAuthentication (every token found must pass):"
        );
    }
    for r in &w.jwt_rules {
        let issuer = if r.issuer.is_empty() {
            "any issuer"
        } else {
            &r.issuer
        };
        let _ = writeln!(out, "      {} {} ({})", r.policy, issuer, r.keys);
    }
    if w.authorization_policies.is_empty() {
        let _ = writeln!(out, "   AuthorizationPolicy: none (every request allowed)");
    } else {
        let _ = writeln!(out, "   AuthorizationPolicy (in evaluation order):");
    }
    for ap in &w.authorization_policies {
        let _ = writeln!(
            out,
            "      {:<5} {} ({} rule(s); {}){}",
            ap.action,
            ap.object,
            ap.rules,
            ap.why,
            if ap.dry_run { " dry-run" } else { "" }
        );
    }
    if w.rate_limits.is_empty() {
        let _ = writeln!(out, "   Rate limits: none");
    }
    for rl in &w.rate_limits {
        let _ = writeln!(
            out,
            "   Rate limit: {} ({} tokens, +{} every {} ms; {})",
            rl.name, rl.max_tokens, rl.tokens_per_fill, rl.fill_interval_ms, rl.runs
        );
    }
    let _ = writeln!(out, "   Telemetry: {}", w.telemetry.effective);
    for t in &w.telemetry.objects {
        let _ = writeln!(out, "      {} ({})", t.object, t.why);
    }
    match &w.sidecar {
        None => {
            let _ = writeln!(out, "   Sidecar: none (every service in scope)");
        }
        Some(s) => {
            let _ = writeln!(
                out,
                "   Sidecar: {} ({}): {} service port(s) in scope, outbound {}",
                s.object, s.why, s.reachable, s.outbound_traffic_policy
            );
            for e in &s.egress {
                let _ = writeln!(out, "      egress {e}");
            }
        }
    }
}
