//! `/validate`: Istio and Sluice objects checked by the same parsing and
//! validation `sluicectl analyze` and the controller use.

use super::review::{AdmissionRequest, AdmissionResponse};
use crate::kube_source::catalog::istio_document;
use crate::resource::{ResourceKey, kind_info, parse_documents};
use crate::validation::{Problem, validate, warnings};

/// Answers a validation request: denied (400) with one report line per
/// problem, or allowed with the warnings. DELETE, subresources and kinds
/// Sluice does not know are always allowed.
pub fn review(request: &AdmissionRequest) -> AdmissionResponse {
    let uid = &request.uid;
    let known = kind_info(&request.kind.kind).is_some_and(|k| k.group == request.kind.group);
    if !known
        || request.is_subresource()
        || !matches!(request.operation.as_str(), "CREATE" | "UPDATE")
    {
        return AdmissionResponse::allow(uid);
    }
    let Some(object) = &request.object else {
        return AdmissionResponse::deny(uid, 400, "the request has no object to validate");
    };
    let namespace = request.namespace_or_default();
    let name = request.name.as_deref().unwrap_or("");
    let label = format!("{} {namespace}/{name}", request.kind.kind);
    // The same document the controller renders from what it watches: only
    // what the user wrote (apiVersion, kind, name, labels, annotations,
    // spec), so API-server-owned fields never count against an object.
    let document = serde_json::from_value(object.clone())
        .map_err(|e| e.to_string())
        .and_then(|o| istio_document(&o));
    let document = match document {
        Ok(d) => d,
        Err(e) => return AdmissionResponse::deny(uid, 400, format!("{label}: {e}")),
    };
    let resource = match parse_documents(&document, namespace).into_iter().next() {
        Some(Ok(r)) => r,
        Some(Err(e)) if e.key.is_some() => return AdmissionResponse::deny(uid, 400, e.to_string()),
        Some(Err(e)) => {
            let at = if e.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path)
            };
            return AdmissionResponse::deny(uid, 400, format!("{label}: {at}{}", e.message));
        }
        None => return AdmissionResponse::deny(uid, 400, format!("{label}: empty object")),
    };
    let key: ResourceKey = resource.key();
    let problems: Vec<String> = validate(&resource)
        .iter()
        .map(|p| Problem(&key, p).to_string())
        .collect();
    let warned: Vec<String> = warnings(&resource)
        .iter()
        .map(|w| Problem(&key, w).to_string())
        .collect();
    let response = if problems.is_empty() {
        AdmissionResponse::allow(uid)
    } else {
        AdmissionResponse::deny(uid, 400, problems.join("\n"))
    };
    response.with_warnings(warned)
}
