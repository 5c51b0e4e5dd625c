//! Keeps the mesh root in the `caBundle` of every webhook of the named
//! Validating/MutatingWebhookConfiguration, as istiod does, so the API server
//! trusts the webhook's certificate. Re-applied whenever the object changes
//! (a `kubectl apply` or Helm upgrade resets the field).

use base64::Engine;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

/// The merge patch that puts `bundle` (base64 PEM) into every webhook of
/// `object`, or `None` when all already have it. The whole `webhooks` list
/// is replaced (merge patches cannot address list items), so the patch
/// carries the object's `resourceVersion`: a concurrent change makes it fail
/// with a conflict instead of being overwritten, and the watch retries.
pub fn bundle_patch(object: &Value, bundle: &str) -> Option<Value> {
    let webhooks = object.get("webhooks")?.as_array()?;
    let stale = webhooks
        .iter()
        .any(|w| w.pointer("/clientConfig/caBundle").and_then(Value::as_str) != Some(bundle));
    if !stale {
        return None;
    }
    let patched: Vec<Value> = webhooks
        .iter()
        .map(|w| {
            let mut w = w.clone();
            if let Some(obj) = w.as_object_mut() {
                let config = obj
                    .entry("clientConfig")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(config) = config.as_object_mut() {
                    config.insert("caBundle".into(), Value::String(bundle.to_owned()));
                }
            }
            w
        })
        .collect();
    let mut patch = json!({ "webhooks": patched });
    if let Some(version) = object.pointer("/metadata/resourceVersion") {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    Some(patch)
}

/// `caBundle` value of `roots`: the PEM bundle, base64 as JSON carries bytes.
pub fn bundle_of(roots: &[String]) -> String {
    base64::engine::general_purpose::STANDARD.encode(roots.concat())
}

/// Watches both configurations (by name) and patches them until the runtime
/// stops; either name may be empty to skip it.
pub fn spawn(client: kube::Client, validating: String, mutating: String, bundle: String) {
    if !validating.is_empty() {
        let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        tokio::spawn(keep_patched(api, validating, bundle.clone()));
    }
    if !mutating.is_empty() {
        let api: Api<MutatingWebhookConfiguration> = Api::all(client);
        tokio::spawn(keep_patched(api, mutating, bundle));
    }
}

async fn keep_patched<K>(api: Api<K>, name: String, bundle: String)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let kind = K::kind(&());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut objects = std::pin::pin!(
        watcher(api.clone(), config)
            .default_backoff()
            .applied_objects()
    );
    while let Some(object) = objects.next().await {
        let object = match object {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(%kind, %name, "watch failed (retrying): {e}");
                continue;
            }
        };
        let Ok(value) = serde_json::to_value(&object) else {
            continue;
        };
        let Some(patch) = bundle_patch(&value, &bundle) else {
            continue;
        };
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(%kind, %name, "patched caBundle with the mesh root"),
            // A conflict means a newer version is on its way through the watch.
            Err(e) => tracing::warn!(%kind, %name, "patching caBundle: {e}"),
        }
    }
}
