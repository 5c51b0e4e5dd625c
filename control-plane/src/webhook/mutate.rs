//! `/inject`: the sidecar injector. The pod is changed by
//! [`crate::inject::inject`] (shared with `sluicectl inject`) and the
//! difference goes back to the API server as a JSON Patch.

use super::review::{AdmissionRequest, AdmissionResponse};
use crate::inject::{self, InjectConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeMap;

/// Answers an injection request for a pod in a namespace labelled
/// `namespace_labels`: allowed, with a patch when injection changed the pod;
/// denied (400) when its annotations make injection impossible.
pub fn review(
    request: &AdmissionRequest,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectConfig,
) -> AdmissionResponse {
    let uid = &request.uid;
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != "CREATE" || request.is_subresource() {
        return AdmissionResponse::allow(uid);
    }
    let Some(object) = &request.object else {
        return AdmissionResponse::deny(uid, 400, "the request has no pod to inject");
    };
    let mut pod: Pod = match serde_json::from_value(object.clone()) {
        Ok(p) => p,
        Err(e) => return AdmissionResponse::deny(uid, 400, format!("cannot read the pod: {e}")),
    };
    // On CREATE the namespace may only be in the request; injection may
    // need it, and setting it on both sides keeps it out of the patch.
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some(request.namespace_or_default().to_owned());
    }
    if !inject::wants_sidecar(namespace_labels, &pod) {
        return AdmissionResponse::allow(uid);
    }
    let injected = match inject::inject(&pod, config) {
        Ok(p) => p,
        Err(e) => {
            let who = pod
                .metadata
                .name
                .as_deref()
                .or(pod.metadata.generate_name.as_deref())
                .unwrap_or("");
            return AdmissionResponse::deny(
                uid,
                400,
                format!(
                    "sidecar injection of pod {}/{who}: {e}",
                    request.namespace_or_default()
                ),
            );
        }
    };
    // Both sides through the same serializer: the patch holds only what
    // injection changed, never fields the typed Pod does not model.
    let patch = match (serde_json::to_value(&pod), serde_json::to_value(&injected)) {
        (Ok(before), Ok(after)) => json_patch::diff(&before, &after),
        (Err(e), _) | (_, Err(e)) => {
            return AdmissionResponse::deny(uid, 500, format!("encoding the pod: {e}"));
        }
    };
    AdmissionResponse::allow(uid)
        .with_patch(&patch)
        .unwrap_or_else(|e| AdmissionResponse::deny(uid, 500, format!("encoding the patch: {e}")))
}

/// Labels of namespaces: a watched cache, with a direct read for a
/// namespace created so recently the cache has not seen it yet.
#[derive(Clone)]
pub struct Namespaces {
    store: Store<Namespace>,
    api: Api<Namespace>,
}

impl Namespaces {
    /// Starts watching namespaces; the task ends when the runtime does.
    pub fn watch(client: kube::Client) -> Self {
        let api: Api<Namespace> = Api::all(client);
        let (store, writer) = reflector::store();
        let events = watcher(api.clone(), watcher::Config::default())
            .modify(|n: &mut Namespace| n.metadata.managed_fields = None)
            .default_backoff();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(reflector::reflector(writer, events));
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!("namespace watch failed (retrying): {e}");
                }
            }
        });
        Self { store, api }
    }

    /// Labels of `name`; empty when it does not exist.
    pub async fn labels(&self, name: &str) -> Result<BTreeMap<String, String>, kube::Error> {
        if let Some(ns) = self.store.get(&ObjectRef::new(name)) {
            return Ok(ns.metadata.labels.clone().unwrap_or_default());
        }
        let ns = self.api.get_opt(name).await?;
        Ok(ns.and_then(|n| n.metadata.labels).unwrap_or_default())
    }
}
