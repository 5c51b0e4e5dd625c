//! The `sluice-crds` category: every kind the controller watches
//! (`sluice_control_plane::resource::KINDS`) has its CRD, serving every
//! version Sluice accepts, and the API server has Established it.

use super::Context;
use super::report::Category;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use sluice_control_plane::resource::KINDS;

const HINT: &str = "kubectl apply -f crds/ (Helm installs charts/sluice/crds only when they are \
                    absent and never upgrades them)";
const PRE_MISSING_HINT: &str =
    "nothing to do: `helm install` creates it (or kubectl apply -f crds/)";

/// One CRD Sluice needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// `<plural>.<group>`.
    pub name: String,
    /// Kind, e.g. `VirtualService`.
    pub kind: &'static str,
    /// API group.
    pub group: &'static str,
    /// Versions that must be served.
    pub versions: &'static [&'static str],
}

/// The CRDs Sluice needs, named as the generated `crds/` files name them.
pub fn expected() -> Vec<Expected> {
    let generated: Vec<CustomResourceDefinition> = sluice_control_plane::crd::crd_documents()
        .into_iter()
        .filter_map(|(_, yaml)| serde_yaml::from_str(&yaml).ok())
        .collect();
    KINDS
        .iter()
        .map(|k| {
            let name = generated
                .iter()
                .find(|c| c.spec.group == k.group && c.spec.names.kind == k.kind)
                .and_then(|c| c.metadata.name.clone())
                .unwrap_or_else(|| format!("{}.{}", plural(k.kind), k.group));
            Expected {
                name,
                kind: k.kind,
                group: k.group,
                versions: k.versions,
            }
        })
        .collect()
}

/// Kubernetes' default plural of a kind (only used if generation changes).
fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    }
}

/// What is wrong with the installed `live` CRD (empty: nothing).
pub fn problems(expected: &Expected, live: &CustomResourceDefinition) -> Vec<String> {
    let mut out = Vec::new();
    if live.spec.group != expected.group || live.spec.names.kind != expected.kind {
        out.push(format!(
            "defines {}/{} instead of {}/{}",
            live.spec.group, live.spec.names.kind, expected.group, expected.kind
        ));
    }
    let missing: Vec<&str> = expected
        .versions
        .iter()
        .copied()
        .filter(|v| !live.spec.versions.iter().any(|l| l.name == *v && l.served))
        .collect();
    if !missing.is_empty() {
        out.push(format!(
            "does not serve version{} {}",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        ));
    }
    let established = live
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Established"));
    match established {
        Some(c) if c.status == "True" => {}
        Some(c) => out.push(format!(
            "is not Established ({}{})",
            c.reason.as_deref().unwrap_or("no reason"),
            c.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )),
        None => out.push("is not Established yet".to_owned()),
    }
    out
}

/// The `sluice-crds` category. Before installing (`--pre`), a missing CRD is
/// only a warning, since the chart creates it; an outdated one fails either way.
pub async fn check(ctx: &Context) -> Category {
    let mut out = Category::new("sluice-crds");
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    for crd in expected() {
        let what = format!(
            "CRD {} is installed and serves {}",
            crd.name,
            crd.versions.join(", ")
        );
        match api.get_opt(&crd.name).await {
            Ok(Some(live)) => {
                let found = problems(&crd, &live);
                if found.is_empty() {
                    out.pass(what);
                } else {
                    out.fail(what, format!("CRD {} {}", crd.name, found.join("; ")), HINT);
                }
            }
            Ok(None) if ctx.pre => out.warn(
                what,
                format!("CRD {} is not installed yet", crd.name),
                PRE_MISSING_HINT,
            ),
            Ok(None) => out.fail(what, format!("CRD {} is not installed", crd.name), HINT),
            Err(e) => out.fail(what, format!("cannot read CRD {}: {e}", crd.name), HINT),
        }
    }
    out
}
