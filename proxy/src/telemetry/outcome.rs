//! What the routing code tells telemetry about a response it produced: flags,
//! cluster, endpoint, span name. Attached as a response extension, and only
//! for requests that are sampled or logged.

use std::net::SocketAddr;
use std::time::Duration;

use crate::model::{Cluster, Endpoint, InboundPort, Route, Text};

/// How a response came about (Envoy's upstream and response details).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Envoy response flags (`-` or e.g. `UF,URX`).
    pub flags: Text,
    /// Upstream cluster name.
    pub cluster: Text,
    /// The endpoint that answered (or was tried last).
    pub upstream_host: Option<SocketAddr>,
    /// Span name: `<service host>:<port>/*`.
    pub operation: Option<String>,
    /// Route name for the access log.
    pub route_name: Option<String>,
    /// Time until upstream response headers.
    pub upstream_service_time: Option<Duration>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`; empty means `via_upstream`.
    pub details: &'static str,
    /// The upstream peer's SPIFFE identity, when it has a sidecar.
    pub upstream_principal: Option<Text>,
}

/// Envoy's response code details for a reply the proxy made with `flags`.
fn details_for(flags: &str) -> &'static str {
    match flags.split(',').next_back().unwrap_or("") {
        "NR" => "route_not_found",
        "NC" => "cluster_not_found",
        "UH" => "no_healthy_upstream",
        "UF" => "upstream_reset_before_response_started{connection_failure}",
        "UC" => "upstream_reset_before_response_started{connection_termination}",
        "UT" => "response_timeout",
        "UO" => "upstream_reset_before_response_started{overflow}",
        "RL" => "local_rate_limited",
        "FI" => "fault_filter_abort",
        _ => "",
    }
}

impl Outcome {
    /// A reply the proxy generated itself, with `flags`.
    pub fn local(flags: &Text) -> Self {
        Outcome {
            flags: flags.clone(),
            details: details_for(flags.as_str()),
            ..Default::default()
        }
    }

    /// A request routed by `route` (when known) to `cluster`.
    pub fn routed(cluster: &Cluster, route: Option<&Route>) -> Self {
        Outcome {
            cluster: cluster.name.as_str().into(),
            operation: Some(format!("{}:{}/*", cluster.service, cluster.port)),
            route_name: route.map(route_name),
            ..Default::default()
        }
    }

    /// A direct response or redirect of `route`.
    pub fn direct(route: &Route) -> Self {
        Outcome {
            route_name: Some(route_name(route)),
            details: "direct_response",
            ..Default::default()
        }
    }

    /// A request to the local application on `app`, for inbound `port`.
    pub fn inbound(port: Option<&InboundPort>, target_port: u16, app: SocketAddr) -> Self {
        let operation = match port {
            Some(p) if !p.service.as_str().is_empty() => {
                format!("{}:{}/*", p.service, p.service_port)
            }
            _ => format!("{app}/*"),
        };
        Outcome {
            cluster: format!("inbound|{target_port}||").into(),
            upstream_host: Some(app),
            operation: Some(operation),
            route_name: Some("default".to_owned()),
            ..Default::default()
        }
    }

    /// Sets the response flags (and the details they imply).
    pub fn flagged(mut self, flags: &Text) -> Self {
        self.flags = flags.clone();
        self.details = details_for(flags.as_str());
        self
    }

    /// Sets the endpoint that answered.
    pub fn at(mut self, endpoint: Option<&Endpoint>) -> Self {
        if let Some(ep) = endpoint {
            self.upstream_host = Some(SocketAddr::new(ep.address, ep.port));
            if ep.sidecar && !ep.workload.principal.as_str().is_empty() {
                self.upstream_principal = Some(ep.workload.principal.clone());
            }
        }
        self
    }

    /// Sets the time until upstream response headers.
    pub fn after(mut self, service_time: Duration) -> Self {
        self.upstream_service_time = Some(service_time);
        self
    }

    /// Sets the response code details.
    pub fn detailed(mut self, details: &'static str) -> Self {
        self.details = details;
        self
    }
}

/// Istio's route name: the VirtualService route's name, or `default`.
pub fn route_name(route: &Route) -> String {
    if route.name.is_empty() {
        "default".to_owned()
    } else {
        route.name.clone()
    }
}
