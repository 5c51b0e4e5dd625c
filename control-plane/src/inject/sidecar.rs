//! The containers and volumes injection adds: `sluice-init` (iptables), the
//! `sluice-proxy` native sidecar, its token and CA root volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, Probe, ProjectedVolumeSource, ResourceRequirements, SecurityContext,
    ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::InjectConfig;
use super::capture::{Capture, HEALTH_PORT};

/// Name of the iptables init container.
pub const INIT_NAME: &str = "sluice-init";
/// Name of the proxy (native sidecar) container.
pub const PROXY_NAME: &str = "sluice-proxy";
/// Volume with the projected ServiceAccount token.
pub const TOKEN_VOLUME: &str = "sluice-token";
/// Volume with the mesh's root certificate.
pub const CA_ROOT_VOLUME: &str = "sluice-ca-root-cert";
/// ConfigMap (in the pod's namespace) holding the root certificate.
pub const CA_ROOT_CONFIG_MAP: &str = "sluice-ca-root-cert";
/// Audience of the projected token the CA checks.
pub const TOKEN_AUDIENCE: &str = "sluice";

const TOKEN_DIR: &str = "/var/run/secrets/tokens";
const CA_ROOT_DIR: &str = "/var/run/sluice";
/// Kubelet refreshes the projected token at 80% of this.
const TOKEN_SECONDS: i64 = 3600;

/// What the proxy container needs to know about its workload.
pub struct Workload<'a> {
    pub name: &'a str,
    /// Labels the proxy reports (`SLUICE_LABELS`).
    pub labels: &'a BTreeMap<String, String>,
    /// `SLUICE_APP_PROBES` value, when any probe was rewritten.
    pub app_probes: Option<String>,
    /// `SLUICE_CONCURRENCY` (worker threads), when the pod or the mesh sets it.
    pub concurrency: Option<u32>,
}

/// The `sluice-init` container that programs the pod's iptables.
pub fn init_container(cfg: &InjectConfig, capture: &Capture) -> Container {
    Container {
        name: INIT_NAME.to_owned(),
        image: Some(cfg.proxy_image.clone()),
        args: Some(capture.to_args()),
        resources: Some(resources(cfg)),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

/// The `sluice-proxy` native sidecar.
pub fn proxy_container(cfg: &InjectConfig, workload: &Workload<'_>) -> Container {
    let labels = workload
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut env = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        value_env("SLUICE_ID", "$(POD_NAME).$(POD_NAMESPACE)"),
        value_env("SLUICE_WORKLOAD", workload.name),
        field_env("SLUICE_NAMESPACE", "metadata.namespace"),
        field_env("SLUICE_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        field_env("SLUICE_IP", "status.podIP"),
        // iptables REDIRECT delivers captured connections to 127.0.0.1 (and
        // inbound ones to the pod IP): listen on every address, and dial the
        // app on loopback.
        value_env("SLUICE_BIND_IP", "0.0.0.0"),
        value_env("SLUICE_APP_IP", "127.0.0.1"),
        value_env("SLUICE_LABELS", &labels),
    ];
    if let Some(probes) = &workload.app_probes {
        env.push(value_env("SLUICE_APP_PROBES", probes));
    }
    if let Some(n) = workload.concurrency {
        env.push(value_env("SLUICE_CONCURRENCY", &n.to_string()));
    }
    let uid = cfg.proxy_uid;
    Container {
        name: PROXY_NAME.to_owned(),
        image: Some(cfg.proxy_image.clone()),
        // The image's entrypoint is `sluice-proxy`.
        args: Some(proxy_args(cfg)),
        env: Some(env),
        // What makes it a native sidecar: started before the app containers,
        // stopped after them, so Jobs complete.
        restart_policy: Some("Always".to_owned()),
        ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            name: Some("http-envoy-prom".to_owned()),
            container_port: 15090,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        // Kubelet starts the next container only once this passes: the app
        // never runs with its traffic captured but nobody listening.
        startup_probe: Some(ready_probe(1, 600)),
        readiness_probe: Some(ready_probe(15, 4)),
        resources: Some(resources(cfg)),
        security_context: Some(SecurityContext {
            run_as_user: Some(uid),
            run_as_group: Some(uid),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: None,
                drop: Some(vec!["ALL".to_owned()]),
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: TOKEN_VOLUME.to_owned(),
                mount_path: TOKEN_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: CA_ROOT_VOLUME.to_owned(),
                mount_path: CA_ROOT_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// The volumes the proxy mounts.
pub fn volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: TOKEN_VOLUME.to_owned(),
            projected: Some(ProjectedVolumeSource {
                default_mode: None,
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(TOKEN_AUDIENCE.to_owned()),
                        expiration_seconds: Some(TOKEN_SECONDS),
                        path: TOKEN_VOLUME.to_owned(),
                    }),
                    ..VolumeProjection::default()
                }]),
            }),
            ..Volume::default()
        },
        Volume {
            name: CA_ROOT_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: CA_ROOT_CONFIG_MAP.to_owned(),
                items: Some(vec![KeyToPath {
                    key: "root-cert.pem".to_owned(),
                    path: "root-cert.pem".to_owned(),
                    mode: None,
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

fn proxy_args(cfg: &InjectConfig) -> Vec<String> {
    let controller = with_scheme(&cfg.controller);
    // Over TLS the config stream, like the certificate service, wants the
    // controller's root and the workload's projected token.
    let needs_credentials = controller.starts_with("https://") || !cfg.ca_address.is_empty();
    let mut args = vec!["--controller".to_owned(), controller];
    // No certificate service configured = a mesh without mTLS.
    if !cfg.ca_address.is_empty() {
        args.extend(["--ca-address".to_owned(), cfg.ca_address.clone()]);
    }
    if needs_credentials {
        args.extend([
            "--ca-root".to_owned(),
            format!("{CA_ROOT_DIR}/root-cert.pem"),
            "--token-file".to_owned(),
            format!("{TOKEN_DIR}/{TOKEN_VOLUME}"),
        ]);
    }
    args.extend(["--trust-domain".to_owned(), cfg.trust_domain.clone()]);
    args
}

/// tonic needs a URI; Helm values usually give `host:port`.
fn with_scheme(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

fn ready_probe(period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz/ready".to_owned()),
            port: IntOrString::Int(i32::from(HEALTH_PORT)),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(3),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn resources(cfg: &InjectConfig) -> ResourceRequirements {
    let quantities = |m: &BTreeMap<String, String>| {
        (!m.is_empty()).then(|| {
            m.iter()
                .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                .collect()
        })
    };
    ResourceRequirements {
        requests: quantities(&cfg.requests),
        limits: quantities(&cfg.limits),
        claims: None,
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: field_path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    }
}
