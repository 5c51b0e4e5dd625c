//! Checks of the cluster itself: the API server answers, runs a Kubernetes
//! version Sluice supports, and (before installing) lets the user create what
//! the chart creates, with no Istio injector that would add a second sidecar.

use super::Context;
use super::report::Category;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{Api, ListParams, PostParams};
use std::path::Path;

/// Oldest Kubernetes release Sluice supports: injected sidecars are native
/// sidecars (init containers with `restartPolicy: Always`), on by default
/// since 1.29; the chart's `kubeVersion` says the same.
pub const MIN_VERSION: (u32, u32) = (1, 29);

const CLIENT_HINT: &str = "pass --kubeconfig FILE, set $KUBECONFIG, or run `kubectl config view` \
                           to see which cluster kubectl would use";
const QUERY_HINT: &str =
    "is the API server reachable with these credentials? try `kubectl version`";

/// Builds the client as kubectl would (or from `kubeconfig`); `None` after
/// recording the failure.
pub async fn connect(kubeconfig: Option<&Path>, out: &mut Category) -> Option<kube::Client> {
    const WHAT: &str = "can initialize the client";
    let mut config = match sluice_control_plane::kube_source::client_config(kubeconfig).await {
        Ok(c) => c,
        Err(e) => {
            out.fail(WHAT, super::error_chain(&e), CLIENT_HINT);
            return None;
        }
    };
    // A check reports what it finds at once instead of retrying for minutes.
    config.default_retry = false;
    config.connect_timeout = Some(super::REQUEST_TIMEOUT);
    // Longer than a webhook's 10 s timeout, which a dry-run create may wait for.
    config.read_timeout = Some(super::REQUEST_TIMEOUT * 3);
    match kube::Client::try_from(config) {
        Ok(client) => {
            out.pass(WHAT);
            Some(client)
        }
        Err(e) => {
            out.fail(WHAT, super::error_chain(&e), CLIENT_HINT);
            None
        }
    }
}

/// Asks the API server for its version; `None` after recording the failure.
pub async fn query(client: &kube::Client, out: &mut Category) -> Option<Info> {
    const WHAT: &str = "can query the Kubernetes API";
    match client.apiserver_version().await {
        Ok(info) => {
            out.pass(WHAT);
            Some(info)
        }
        Err(e) => {
            out.fail(WHAT, super::error_chain(&e), QUERY_HINT);
            None
        }
    }
}

/// `(major, minor)` of a version answer; providers append to the minor
/// number (`"29+"` on EKS and GKE).
pub fn parse_version(info: &Info) -> Option<(u32, u32)> {
    let digits = |s: &str| -> Option<u32> {
        let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        s[..end].parse().ok()
    };
    Some((digits(&info.major)?, digits(&info.minor)?))
}

/// The `kubernetes-version` category.
pub fn version(info: &Info) -> Category {
    let mut out = Category::new("kubernetes-version");
    let (min_major, min_minor) = MIN_VERSION;
    let what = format!("is running Kubernetes {min_major}.{min_minor} or newer");
    match parse_version(info) {
        Some(v) if v >= MIN_VERSION => out.pass(format!("{what} ({})", info.git_version)),
        Some(_) => out.fail(
            what,
            format!(
                "the API server runs {}; injected sidecars are native sidecars, on by default \
                 from Kubernetes {min_major}.{min_minor}",
                info.git_version
            ),
            "upgrade the cluster (docs/install.md lists the supported versions)",
        ),
        None => out.warn(
            what,
            format!(
                "cannot read the version the API server reports (major {:?}, minor {:?}, {})",
                info.major, info.minor, info.git_version
            ),
            "check `kubectl version` by hand",
        ),
    }
    out
}

/// What the chart creates: `(API group, resource, namespaced)`.
const CREATES: [(&str, &str, bool); 11] = [
    ("apiextensions.k8s.io", "customresourcedefinitions", false),
    ("", "namespaces", false),
    ("rbac.authorization.k8s.io", "clusterroles", false),
    ("rbac.authorization.k8s.io", "clusterrolebindings", false),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        false,
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        false,
    ),
    ("", "serviceaccounts", true),
    ("", "services", true),
    ("apps", "deployments", true),
    ("rbac.authorization.k8s.io", "roles", true),
    ("policy", "poddisruptionbudgets", true),
];

/// The `pre-kubernetes-setup` category: permissions (SelfSubjectAccessReview)
/// and other meshes' injectors.
pub async fn setup(ctx: &Context) -> Category {
    let mut out = Category::new("pre-kubernetes-setup");
    let reviews: Api<SelfSubjectAccessReview> = Api::all(ctx.client.clone());
    for (group, resource, namespaced) in CREATES {
        let what = if namespaced {
            format!("can create {resource} in namespace {}", ctx.namespace)
        } else {
            format!("can create {resource}")
        };
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    verb: Some("create".to_owned()),
                    namespace: namespaced.then(|| ctx.namespace.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let kubectl = format!(
            "`kubectl auth can-i create {resource}{}`; installing the chart needs a cluster \
             administrator",
            if namespaced {
                format!(" -n {}", ctx.namespace)
            } else {
                String::new()
            }
        );
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) => match answer.status {
                Some(s) if s.allowed => out.pass(what),
                Some(s) => out.fail(
                    what,
                    format!(
                        "not allowed{}",
                        s.reason
                            .filter(|r| !r.is_empty())
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ),
                    &kubectl,
                ),
                None => out.warn(what, "the API server gave no answer", &kubectl),
            },
            Err(e) => out.warn(what, format!("cannot ask the API server: {e}"), &kubectl),
        }
    }
    istio_injector(ctx, &mut out).await;
    out
}

/// Istio's injector adds its own sidecar to pods it selects; two meshes on
/// one pod fight over the iptables capture.
async fn istio_injector(ctx: &Context, out: &mut Category) {
    const WHAT: &str = "no Istio sidecar injector is installed";
    const HINT: &str = "uninstall Istio first, or never label a namespace both \
                        istio-injection=enabled and sluice-injection=enabled";
    let api: Api<MutatingWebhookConfiguration> = Api::all(ctx.client.clone());
    match api.list(&ListParams::default()).await {
        Ok(list) => {
            let istio: Vec<String> = list
                .items
                .iter()
                .filter(|c| {
                    c.webhooks
                        .iter()
                        .flatten()
                        .any(|w| w.name.ends_with("sidecar-injector.istio.io"))
                })
                .filter_map(|c| c.metadata.name.clone())
                .collect();
            if istio.is_empty() {
                out.pass(WHAT);
            } else {
                out.warn(
                    WHAT,
                    format!(
                        "MutatingWebhookConfiguration {} injects Istio's sidecar",
                        istio.join(", ")
                    ),
                    HINT,
                );
            }
        }
        Err(e) => out.warn(
            WHAT,
            format!("cannot list MutatingWebhookConfigurations: {e}"),
            HINT,
        ),
    }
}
