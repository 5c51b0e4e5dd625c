//! Where a webhook's `clientConfig` leads: the Service it names and the
//! ready endpoint addresses behind it (the EndpointSlices the API server
//! itself routes webhook calls to), or the host of a plain `url`.

use k8s_openapi::api::admissionregistration::v1::WebhookClientConfig;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use std::net::{IpAddr, SocketAddr};

/// Where the API server sends a webhook's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `clientConfig.service`: the Service's namespace, name and port.
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
    /// `clientConfig.url`: the host its certificate must name, and its
    /// address when the host is an IP.
    Url {
        host: String,
        addr: Option<SocketAddr>,
    },
}

impl Target {
    /// The target of `config`, or `None` when it has neither service nor url.
    pub fn of(config: &WebhookClientConfig) -> Option<Target> {
        if let Some(s) = &config.service {
            return Some(Target::Service {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                port: s.port.unwrap_or(443),
            });
        }
        let uri: http::Uri = config.url.as_deref()?.parse().ok()?;
        let host = uri.host()?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let addr = host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Some(Target::Url { host, addr })
    }

    /// The name the serving certificate must carry: the API server calls
    /// a Service as `<name>.<namespace>.svc`.
    pub fn server_name(&self) -> String {
        match self {
            Target::Service {
                namespace, name, ..
            } => format!("{name}.{namespace}.svc"),
            Target::Url { host, .. } => host.clone(),
        }
    }
}

/// Why a Service has no address to call.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The Service does not exist.
    #[error("Service {namespace}/{name} does not exist")]
    NoService { namespace: String, name: String },
    /// The Service has no port with the webhook's port number.
    #[error("Service {namespace}/{name} has no port {port}")]
    NoPort {
        namespace: String,
        name: String,
        port: i32,
    },
    /// No ready endpoint behind the Service.
    #[error("Service {namespace}/{name} has no ready endpoint")]
    NoEndpoint { namespace: String, name: String },
    /// The API server refused a read.
    #[error("reading {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// The ready addresses (with the target port) behind a Service port.
pub async fn ready_addresses(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    port: i32,
) -> Result<Vec<SocketAddr>, EndpointError> {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let api = |what: &str| {
        let what = format!("{what} {namespace}/{name}");
        move |source| EndpointError::Api { what, source }
    };
    let service = services
        .get_opt(name)
        .await
        .map_err(api("Service"))?
        .ok_or_else(|| EndpointError::NoService {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })?;
    let port_name = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.port == port))
        .map(|p| p.name.clone().unwrap_or_default())
        .ok_or_else(|| EndpointError::NoPort {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            port,
        })?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let list = slices
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={name}")))
        .await
        .map_err(api("EndpointSlices of Service"))?;
    let addrs = addresses(&list.items, &port_name);
    if addrs.is_empty() {
        return Err(EndpointError::NoEndpoint {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(addrs)
}

/// Ready addresses of `slices` on the port named `port_name` (`""` for the
/// unnamed port), as the API server would pick them.
pub fn addresses(slices: &[EndpointSlice], port_name: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for slice in slices {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            // An endpoint without conditions counts as ready (the API's rule).
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if !ready {
                continue;
            }
            out.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, port)),
            );
        }
    }
    out
}
