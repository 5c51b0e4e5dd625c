//! Warnings: valid configuration that still deserves a word, as Istio's
//! analyzers give (deprecated fields, settings that do nothing).

use super::FieldError;
use crate::crd::{HttpFaultInjection, SidecarSpec, TrafficPolicy};
use crate::resource::Resource;

/// Warnings for `resource`; it stays valid whatever they say.
pub fn warnings(resource: &Resource) -> Vec<FieldError> {
    let mut out = Vec::new();
    match resource {
        Resource::DestinationRule(dr) => {
            if let Some(p) = &dr.spec.traffic_policy {
                policy(&mut out, "spec.trafficPolicy", p);
            }
            for (i, s) in dr.spec.subsets.iter().enumerate() {
                if let Some(p) = &s.traffic_policy {
                    policy(&mut out, &format!("spec.subsets[{i}].trafficPolicy"), p);
                }
            }
        }
        Resource::VirtualService(vs) => {
            if !vs.spec.gateways.is_empty() && !vs.spec.gateways.iter().any(|g| g == "mesh") {
                out.push(FieldError::new(
                    "spec.gateways",
                    "applies to no sidecar: bound only to gateways (no `mesh`), and Sluice runs no gateway proxy",
                ));
            }
            for (i, r) in vs.spec.http.iter().enumerate() {
                let path = format!("spec.http[{i}]");
                if r.mirror_percent.is_some() {
                    out.push(FieldError::new(
                        format!("{path}.mirrorPercent"),
                        "deprecated: use mirrorPercentage",
                    ));
                }
                if let Some(f) = &r.fault {
                    fault(&mut out, &format!("{path}.fault"), f);
                }
            }
        }
        Resource::EnvoyFilter(f) => {
            for (i, patch) in f.spec.config_patches.iter().enumerate() {
                let path = format!("spec.configPatches[{i}]");
                if let Some(why) = super::envoy_filter::inert_patch(patch) {
                    out.push(FieldError::new(path, why));
                } else {
                    out.extend(super::envoy_filter::patch_warnings(&path, patch));
                }
            }
        }
        Resource::Telemetry(t) => {
            for (i, m) in t.spec.metrics.iter().enumerate() {
                if m.reporting_interval.is_some() {
                    out.push(FieldError::new(
                        format!("spec.metrics[{i}].reportingInterval"),
                        "not applied: Prometheus scrapes the sidecar's current values",
                    ));
                }
                for (k, p) in m.providers.iter().enumerate() {
                    if p.name != crate::mesh_config::PROMETHEUS_PROVIDER {
                        out.push(FieldError::new(
                            format!("spec.metrics[{i}].providers[{k}]"),
                            format!(
                                "Sluice sidecars export metrics only to Prometheus: `{}` gets nothing (unless MeshConfig defines it as a prometheus provider), and where the most specific Telemetry names no Prometheus provider the workloads serve no istio_* metrics",
                                p.name
                            ),
                        ));
                    }
                }
                for (j, o) in m.parsed_overrides().enumerate() {
                    let Ok(o) = o else { continue };
                    let path = format!("spec.metrics[{i}].overrides[{j}]");
                    if o.match_.as_ref().is_some_and(|s| s.custom_metric.is_some()) {
                        out.push(FieldError::new(
                            format!("{path}.match.customMetric"),
                            "not applied: Sluice sidecars have no custom metrics",
                        ));
                    }
                }
            }
            for (i, tr) in t.spec.tracing.iter().enumerate() {
                if tr.use_request_id_for_trace_sampling == Some(true) {
                    out.push(FieldError::new(
                        format!("spec.tracing[{i}].useRequestIdForTraceSampling"),
                        "not applied: Sluice samples at random",
                    ));
                }
            }
        }
        Resource::ServiceEntry(se) => {
            // Istio's ValidatePartialWildCard: valid, but only `*` or a
            // `*.` prefix is the wildcard it documents.
            for (i, host) in se.spec.hosts.iter().enumerate() {
                if host.contains('*') && host != "*" && !host.starts_with("*.") {
                    out.push(FieldError::new(
                        format!("spec.hosts[{i}]"),
                        format!(
                            "partial wildcard `{host}`: matches every host ending in `{}`",
                            host.trim_start_matches('*')
                        ),
                    ));
                }
            }
        }
        Resource::Sidecar(s) => sidecar(&mut out, &s.spec),
        Resource::Gateway(g) => super::gateway::warnings(&mut out, &g.spec),
        _ => {}
    }
    out
}

fn sidecar(out: &mut Vec<FieldError>, spec: &SidecarSpec) {
    let mut warn = |path: String, message: &str| out.push(FieldError::new(path, message));
    if spec
        .workload_selector
        .as_ref()
        .is_some_and(|s| s.labels.is_empty())
    {
        warn(
            "spec.workloadSelector".into(),
            "selects every workload of the namespace (no labels)",
        );
    }
    if spec.inbound_connection_pool.is_some() {
        warn(
            "spec.inboundConnectionPool".into(),
            "not applied: the sidecar does not limit connections to its workload",
        );
    }
    let listener = |warn: &mut dyn FnMut(String, &str), path: String, bind: &str, capture: &str| {
        if !bind.is_empty() {
            warn(
                format!("{path}.bind"),
                "not applied: the sidecar serves every port on its own listeners (15001, 15006)",
            );
        }
        if !capture.is_empty() && capture != "DEFAULT" && capture != "IPTABLES" {
            warn(
                format!("{path}.captureMode"),
                "not applied: traffic is captured by iptables as for DEFAULT",
            );
        }
    };
    for (i, l) in spec.ingress.iter().enumerate() {
        let path = format!("spec.ingress[{i}]");
        listener(&mut warn, path.clone(), &l.bind, &l.capture_mode);
        if l.default_endpoint.starts_with("unix://") {
            warn(
                format!("{path}.defaultEndpoint"),
                "not applied: unix sockets are not served; traffic goes to the app at the same port",
            );
        }
        if l.tls.is_some() {
            warn(
                format!("{path}.tls"),
                "not applied: the sidecar terminates only mesh mTLS",
            );
        }
        if l.connection_pool.is_some() {
            warn(
                format!("{path}.connectionPool"),
                "not applied: the sidecar does not limit connections to its workload",
            );
        }
    }
    for (i, l) in spec.egress.iter().enumerate() {
        listener(
            &mut warn,
            format!("spec.egress[{i}]"),
            &l.bind,
            &l.capture_mode,
        );
    }
}

fn policy(out: &mut Vec<FieldError>, path: &str, p: &TrafficPolicy) {
    let mut one = |path: String, p: &TrafficPolicy| {
        if let Some(od) = &p.outlier_detection
            && od.consecutive_errors.is_some()
        {
            out.push(FieldError::new(
                format!("{path}.outlierDetection.consecutiveErrors"),
                "deprecated: counts only gateway errors (502, 503, 504), as \
                 consecutiveGatewayErrors does; use consecutiveGatewayErrors or consecutive5xxErrors",
            ));
        }
        if let Some(lb) = &p.load_balancer {
            if lb.locality_lb_setting.is_some() {
                out.push(FieldError::new(
                    format!("{path}.loadBalancer.localityLbSetting"),
                    "not applied: Sluice balances over every endpoint alike, whatever its locality",
                ));
            }
            if lb.warmup.is_some() || lb.warmup_duration_secs.is_some() {
                let field = if lb.warmup.is_some() {
                    "warmup"
                } else {
                    "warmupDurationSecs"
                };
                out.push(FieldError::new(
                    format!("{path}.loadBalancer.{field}"),
                    "not applied: a new endpoint takes its full share at once",
                ));
            }
        }
        if p.load_balancer.as_ref().and_then(|lb| lb.simple.as_deref()) == Some("LEAST_CONN") {
            out.push(FieldError::new(
                format!("{path}.loadBalancer.simple"),
                "deprecated: LEAST_CONN is an alias of LEAST_REQUEST",
            ));
        }
    };
    one(path.to_owned(), p);
    for (i, pl) in p.port_level_settings.iter().enumerate() {
        let as_policy = TrafficPolicy {
            load_balancer: pl.load_balancer.clone(),
            outlier_detection: pl.outlier_detection.clone(),
            ..TrafficPolicy::default()
        };
        one(format!("{path}.portLevelSettings[{i}]"), &as_policy);
    }
}

fn fault(out: &mut Vec<FieldError>, path: &str, f: &HttpFaultInjection) {
    if let Some(d) = &f.delay {
        if d.percent.is_some() {
            out.push(FieldError::new(
                format!("{path}.delay.percent"),
                "deprecated: use percentage",
            ));
        } else if d.percentage.is_none() {
            out.push(FieldError::new(
                format!("{path}.delay"),
                "no percentage set: no request will be delayed",
            ));
        }
    }
    if let Some(a) = &f.abort {
        if a.percent.is_some() {
            out.push(FieldError::new(
                format!("{path}.abort.percent"),
                "ignored: not a field of Istio's Abort (removed from the API; istiod never reads it), so only `percentage` decides which requests are aborted; use percentage",
            ));
        }
        if a.percentage.is_none() {
            out.push(FieldError::new(
                format!("{path}.abort"),
                "no percentage set: no request will be aborted",
            ));
        }
    }
}
