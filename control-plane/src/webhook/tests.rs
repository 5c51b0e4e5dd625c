use super::review::{AdmissionResponse, ReviewError, parse_review, review_body};
use super::*;
use crate::inject::{self, InjectConfig};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn review(kind: (&str, &str, &str), operation: &str, object: Value) -> Vec<u8> {
    let (group, version, kind) = kind;
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "x"},
            "name": object.pointer("/metadata/name"),
            "namespace": "default",
            "operation": operation,
            "object": object,
            "dryRun": false,
        }
    }))
    .expect("json")
}

const VS: (&str, &str, &str) = ("networking.istio.io", "v1", "VirtualService");

fn virtual_service(weight: i64) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "reviews", "namespace": "default", "uid": "u-1", "resourceVersion": "7",
            "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
        },
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "reviews"}, "weight": weight}]}]
        },
        "status": {"conditions": [{"type": "Accepted", "status": "True"}]}
    })
}

fn validate_body(body: &[u8]) -> AdmissionResponse {
    let (_, request) = parse_review(body).expect("review");
    validate::review(&request)
}

#[test]
fn parse_review_v1_request_reads_uid_kind_and_object() {
    let (version, request) =
        parse_review(&review(VS, "CREATE", virtual_service(1))).expect("parse");
    assert_eq!(version, "admission.k8s.io/v1");
    assert_eq!(request.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(request.kind.kind, "VirtualService");
    assert_eq!(request.operation, "CREATE");
    assert_eq!(request.namespace_or_default(), "default");
    assert!(request.object.is_some());
}

#[test]
fn parse_review_garbage_or_wrong_kind_errors() {
    assert!(matches!(
        parse_review(b"\xff{not json"),
        Err(ReviewError::Json(_))
    ));
    assert!(matches!(parse_review(b"[]"), Err(ReviewError::Json(_))));
    let wrong = br#"{"apiVersion": "v1", "kind": "Pod"}"#;
    let err = parse_review(wrong).expect_err("wrong kind");
    assert!(err.to_string().contains("`Pod`"), "{err}");
    let empty = br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#;
    assert!(matches!(parse_review(empty), Err(ReviewError::NoRequest)));
    let no_uid = br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"operation": "CREATE"}}"#;
    assert!(matches!(parse_review(no_uid), Err(ReviewError::Json(_))));
}

#[test]
fn validate_negative_weight_denied_with_analyze_line() {
    let response = validate_body(&review(VS, "CREATE", virtual_service(-1)));
    assert!(!response.allowed);
    let status = response.status.expect("status");
    assert_eq!(status.code, 400);
    assert_eq!(
        status.message,
        "VirtualService default/reviews: spec.http[0].route[0].weight: must be >= 0"
    );
    assert_eq!(response.uid, "705ab4f5-6393-11e8-b7cc-42010a800002");
}

#[test]
fn validate_valid_object_with_server_fields_allowed() {
    let response = validate_body(&review(VS, "UPDATE", virtual_service(100)));
    assert_eq!(
        response,
        AdmissionResponse::allow("705ab4f5-6393-11e8-b7cc-42010a800002")
    );
}

#[test]
fn validate_delete_and_unknown_kinds_allowed() {
    let delete = validate_body(&review(VS, "DELETE", virtual_service(-1)));
    assert!(delete.allowed);
    let other_group = validate_body(&review(
        ("example.com", "v1", "VirtualService"),
        "CREATE",
        virtual_service(-1),
    ));
    assert!(other_group.allowed);
    let pod = validate_body(&review(("", "v1", "Pod"), "CREATE", json!({"kind": "Pod"})));
    assert!(pod.allowed);
}

#[test]
fn validate_deprecated_field_allowed_with_warning() {
    let mut vs = virtual_service(100);
    vs["spec"]["http"][0]["mirrorPercent"] = json!(5);
    vs["spec"]["http"][0]["mirror"] = json!({"host": "reviews-shadow"});
    let response = validate_body(&review(VS, "CREATE", vs));
    assert!(response.allowed, "{response:?}");
    assert_eq!(
        response.warnings,
        [
            "VirtualService default/reviews: spec.http[0].mirrorPercent: deprecated: use mirrorPercentage"
        ]
    );
}

#[test]
fn validate_unknown_spec_field_denied_naming_object_and_field() {
    let mut vs = virtual_service(100);
    vs["spec"]["hots"] = json!(["x"]);
    let response = validate_body(&review(VS, "CREATE", vs));
    let message = response.status.expect("denied").message;
    assert!(
        message.starts_with("VirtualService default/reviews: spec.hots: unknown field"),
        "{message}"
    );
}

#[test]
fn validate_object_of_wrong_shape_denied_without_panic() {
    for object in [
        json!("text"),
        json!({"metadata": 3}),
        json!({"kind": "VirtualService", "spec": []}),
    ] {
        let response = validate_body(&review(VS, "CREATE", object));
        assert!(!response.allowed, "{response:?}");
        assert_eq!(response.status.map(|s| s.code), Some(400));
    }
}

fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "ratings-1", "namespace": "default", "annotations": annotations},
        "spec": {
            "containers": [{
                "name": "app", "image": "example.invalid/ratings",
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}
            }]
        }
    })
}

fn enabled() -> BTreeMap<String, String> {
    BTreeMap::from([(inject::NAMESPACE_LABEL.to_owned(), "enabled".to_owned())])
}

fn inject_body(object: Value, labels: &BTreeMap<String, String>) -> AdmissionResponse {
    let (_, request) = parse_review(&review(("", "v1", "Pod"), "CREATE", object)).expect("review");
    mutate::review(&request, labels, &InjectConfig::default())
}

fn apply_patch(object: &Value, response: &AdmissionResponse) -> Value {
    let mut patched = object.clone();
    if let Some(patch) = &response.patch {
        assert_eq!(response.patch_type, Some("JSONPatch"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("patch json");
        json_patch::patch(&mut patched, &patch).expect("patch applies to the original");
    }
    patched
}

#[test]
fn inject_labelled_namespace_patch_turns_pod_into_inject_output() {
    let object = pod(json!({}));
    let response = inject_body(object.clone(), &enabled());
    assert!(response.allowed, "{response:?}");
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(object.clone()).expect("pod");
    let expected = inject::inject(&typed, &InjectConfig::default()).expect("inject");
    let patched: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(apply_patch(&object, &response)).expect("patched pod");
    assert_eq!(patched, expected);
    // A patch exactly when injection changes something.
    assert_eq!(response.patch.is_some(), expected != typed);
}

#[test]
fn inject_unlabelled_namespace_or_opt_out_leaves_pod_alone() {
    let plain = inject_body(pod(json!({})), &BTreeMap::new());
    assert!(plain.allowed && plain.patch.is_none(), "{plain:?}");
    let opted_out = inject_body(pod(json!({inject::INJECT_ANNOTATION: "false"})), &enabled());
    assert!(
        opted_out.allowed && opted_out.patch.is_none(),
        "{opted_out:?}"
    );
}

#[test]
fn inject_unusable_annotation_denied_naming_it_or_allowed() {
    let annotations = json!({inject::REWRITE_PROBES_ANNOTATION: "sometimes"});
    let object = pod(annotations);
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(object.clone()).expect("pod");
    let response = inject_body(object, &enabled());
    match inject::inject(&typed, &InjectConfig::default()) {
        Err(e) => {
            let status = response.status.expect("denied");
            assert_eq!(status.code, 400);
            assert!(
                status.message.contains(&e.to_string()),
                "{}",
                status.message
            );
            assert!(
                status.message.contains("default/ratings-1"),
                "{}",
                status.message
            );
        }
        Ok(_) => assert!(response.allowed, "{response:?}"),
    }
}

#[test]
fn inject_non_pod_or_update_allowed_unchanged() {
    let (_, update) =
        parse_review(&review(("", "v1", "Pod"), "UPDATE", pod(json!({})))).expect("review");
    let response = mutate::review(&update, &enabled(), &InjectConfig::default());
    assert_eq!(response, AdmissionResponse::allow(&update.uid));
    let bad_pod = inject_body(json!({"spec": {"containers": "none"}}), &enabled());
    assert_eq!(bad_pod.status.map(|s| s.code), Some(400));
}

#[test]
fn review_body_denial_serializes_as_admission_review() {
    let response = AdmissionResponse::deny("u", 400, "bad").with_warnings(vec!["w".into()]);
    let body = review_body("admission.k8s.io/v1", &response);
    assert_eq!(
        body,
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": "u", "allowed": false, "warnings": ["w"],
                "status": {"status": "Failure", "code": 400, "message": "bad"}
            }
        })
    );
    assert_eq!(response.outcome(), Outcome::Denied);
    assert_eq!(
        AdmissionResponse::deny("u", 500, "x").outcome(),
        Outcome::Error
    );
}

#[test]
fn bundle_patch_sets_every_webhook_and_carries_resource_version() {
    let config = json!({
        "metadata": {"name": "sluice-validator", "resourceVersion": "42"},
        "webhooks": [
            {"name": "a.sluice.io", "clientConfig": {"url": "https://127.0.0.1:1/validate"}},
            {"name": "b.sluice.io", "clientConfig": {"caBundle": "b2xk"}},
        ]
    });
    let patch = ca_bundle::bundle_patch(&config, "bmV3").expect("stale");
    assert_eq!(patch["metadata"]["resourceVersion"], "42");
    let hooks = patch["webhooks"].as_array().expect("list");
    assert_eq!(hooks.len(), 2);
    assert!(
        hooks
            .iter()
            .all(|h| h["clientConfig"]["caBundle"] == "bmV3")
    );
    assert_eq!(
        hooks[0]["clientConfig"]["url"],
        "https://127.0.0.1:1/validate"
    );
    assert_eq!(hooks[1]["name"], "b.sluice.io");
    let mut current = config;
    current["webhooks"] = patch["webhooks"].clone();
    assert_eq!(ca_bundle::bundle_patch(&current, "bmV3"), None);
}

#[test]
fn bundle_of_roots_is_base64_of_the_pem_bundle() {
    let roots = ["-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".to_owned()];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle::bundle_of(&roots))
        .expect("base64");
    assert_eq!(decoded, roots[0].as_bytes());
}

mod server;
