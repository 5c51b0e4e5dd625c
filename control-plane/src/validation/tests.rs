use super::*;
use crate::resource::parse_documents;

const SEED: &str = include_str!("../../../../shared/seed-mesh.yaml");

/// Problems of a single-document YAML, as report lines.
pub(crate) fn problems(yaml: &str) -> Vec<String> {
    let mut docs = parse_documents(yaml, "default");
    assert_eq!(docs.len(), 1, "{docs:?}");
    let resource = docs.remove(0).unwrap_or_else(|e| panic!("parse: {e}"));
    let key = resource.key();
    validate(&resource)
        .iter()
        .map(|e| Problem(&key, e).to_string())
        .collect()
}

#[test]
fn validate_seed_mesh_is_clean() {
    for doc in parse_documents(SEED, "default") {
        let resource = doc.unwrap();
        assert_eq!(validate(&resource), [], "{}", resource.key());
    }
}

#[test]
fn problem_display_names_object_and_field() {
    let key = crate::resource::ResourceKey {
        kind: "VirtualService",
        namespace: "default".into(),
        name: "reviews".into(),
    };
    let e = FieldError::new("spec.http[0].route[1].weight", "must be >= 0");
    assert_eq!(
        Problem(&key, &e).to_string(),
        "VirtualService default/reviews: spec.http[0].route[1].weight: must be >= 0"
    );
}

#[test]
fn validate_bad_object_name_is_refused() {
    assert_eq!(
        problems(
            "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: VM_1, namespace: Shop}\nspec: {address: 10.0.0.1}\n"
        ),
        [
            "WorkloadEntry Shop/VM_1: metadata.name: `VM_1` is not a lowercase DNS-1123 subdomain",
            "WorkloadEntry Shop/VM_1: metadata.namespace: `Shop` is not a lowercase DNS-1123 label",
        ]
    );
}
