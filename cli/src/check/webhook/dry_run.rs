//! Whether the API server itself can call the validation webhook: a dry-run
//! create of an invalid VirtualService must come back refused *by the
//! webhook*. This tests `caBundle`, the Service and the network from where
//! it matters, which the CLI often cannot reach (pod addresses).

use super::super::report::Category;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};

/// Records whether the API server got an answer from `hook` in `namespace`.
pub async fn check(client: &kube::Client, namespace: &str, hook: &str, out: &mut Category) {
    let what = format!("the API server calls webhook {hook}");
    let hint = "a dry-run create of an invalid VirtualService must be refused by the webhook; \
                the API server verifies the webhook's certificate with caBundle and reaches it \
                through its clientConfig (Service or url): see the checks above and the API server's logs";
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "virtualservices");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    // A negative weight: valid to the CRD schema, refused by Sluice's validation.
    let invalid = serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"generateName": "sluicectl-check-", "namespace": namespace},
        "spec": {
            "hosts": ["sluicectl-check.invalid"],
            "http": [{"route": [{"destination": {"host": "sluicectl-check.invalid"}, "weight": -1}]}]
        }
    });
    let object: DynamicObject = match serde_json::from_value(invalid) {
        Ok(o) => o,
        Err(e) => return out.warn(what, format!("cannot build the test object: {e}"), hint),
    };
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &object).await {
        Err(kube::Error::Api(status)) => {
            let message = status.message.trim();
            let named = format!("webhook \"{hook}\"");
            if message.contains(&named) && message.contains("denied the request") {
                out.pass(format!(
                    "{what} (a dry-run invalid VirtualService was refused by it)"
                ));
            } else if message.contains(&named) {
                out.fail(what, message.to_owned(), hint);
            } else {
                out.warn(
                    what,
                    format!("the dry run was refused before the webhook: {message}"),
                    hint,
                );
            }
        }
        Err(e) => out.warn(what, format!("cannot run the dry-run create: {e}"), hint),
        Ok(_) => out.warn(
            what,
            "a dry-run invalid VirtualService was accepted: the webhook did not run or was \
             ignored (failurePolicy Ignore while unreachable?)",
            hint,
        ),
    }
}
