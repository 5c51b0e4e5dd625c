//! The committed `crds/` folder matches what the Rust types generate, and the
//! generated schemas are structural (what the API server requires).

use sluice_control_plane::crd::crd_documents;
use std::collections::BTreeMap;
use std::path::Path;

fn committed() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .filter(|(name, _)| name.ends_with(".yaml"))
        .collect()
}

#[test]
fn crds_folder_matches_generated_types() {
    let generated: BTreeMap<String, String> = crd_documents().into_iter().collect();
    let committed = committed();
    let stale: std::collections::BTreeSet<&String> = generated
        .keys()
        .chain(committed.keys())
        .filter(|name| generated.get(*name) != committed.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "crds/ is stale ({stale:?}): run cargo run -p sluice-control-plane --bin sluice-crdgen -- crds"
    );
}

#[test]
fn crds_cover_every_kind_and_served_version() {
    let expected = [
        (
            "virtualservices.networking.istio.io.yaml",
            vec!["v1", "v1beta1", "v1alpha3"],
        ),
        (
            "destinationrules.networking.istio.io.yaml",
            vec!["v1", "v1beta1", "v1alpha3"],
        ),
        (
            "serviceentries.networking.istio.io.yaml",
            vec!["v1", "v1beta1", "v1alpha3"],
        ),
        (
            "workloadentries.networking.istio.io.yaml",
            vec!["v1", "v1beta1", "v1alpha3"],
        ),
        (
            "sidecars.networking.istio.io.yaml",
            vec!["v1", "v1beta1", "v1alpha3"],
        ),
        (
            "gateways.networking.istio.io.yaml",
            vec!["v1", "v1beta1", "v1alpha3"],
        ),
        (
            "envoyfilters.networking.istio.io.yaml",
            vec!["v1alpha3", "v1beta1"],
        ),
        (
            "peerauthentications.security.istio.io.yaml",
            vec!["v1", "v1beta1"],
        ),
        (
            "authorizationpolicies.security.istio.io.yaml",
            vec!["v1", "v1beta1"],
        ),
        (
            "requestauthentications.security.istio.io.yaml",
            vec!["v1", "v1beta1"],
        ),
        ("ratelimitpolicies.sluice.io.yaml", vec!["v1alpha1"]),
        (
            "telemetries.telemetry.istio.io.yaml",
            vec!["v1", "v1alpha1"],
        ),
    ];
    let docs: BTreeMap<String, String> = crd_documents().into_iter().collect();
    assert_eq!(docs.len(), expected.len());
    for (file, versions) in expected {
        let crd: serde_yaml::Value = serde_yaml::from_str(&docs[file]).unwrap();
        let listed = crd["spec"]["versions"].as_sequence().unwrap();
        let names: Vec<&str> = listed.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, versions, "{file}");
        let stored: Vec<bool> = listed
            .iter()
            .map(|v| v["storage"].as_bool().unwrap())
            .collect();
        assert_eq!(stored.iter().filter(|s| **s).count(), 1, "{file}");
        assert!(stored[0], "{file}: first version is the storage version");
        for v in listed {
            assert_eq!(v["served"].as_bool(), Some(true), "{file}");
            assert!(
                v["subresources"]["status"].is_mapping(),
                "{file}: status subresource"
            );
        }
    }
}

/// Walks a schema and returns the paths of nodes that break structural rules.
fn unstructural(node: &serde_yaml::Value, path: &str, out: &mut Vec<String>) {
    let Some(map) = node.as_mapping() else { return };
    let preserve = map.get("x-kubernetes-preserve-unknown-fields").is_some();
    if map.get("type").is_none() && !preserve && map.get("x-kubernetes-int-or-string").is_none() {
        out.push(format!("{path}: no type"));
    }
    for key in ["anyOf", "oneOf", "allOf", "$ref"] {
        if map.get(key).is_some() {
            out.push(format!("{path}: {key}"));
        }
    }
    if let Some(props) = map.get("properties").and_then(|p| p.as_mapping()) {
        for (k, v) in props {
            unstructural(v, &format!("{path}.{}", k.as_str().unwrap_or("?")), out);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key)
            && child.is_mapping()
        {
            unstructural(child, &format!("{path}.{key}"), out);
        }
    }
}

#[test]
fn crd_schemas_are_structural() {
    for (file, yaml) in crd_documents() {
        let crd: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let mut problems = Vec::new();
        for v in crd["spec"]["versions"].as_sequence().unwrap() {
            unstructural(&v["schema"]["openAPIV3Schema"], "", &mut problems);
        }
        assert!(problems.is_empty(), "{file}: {problems:?}");
    }
}

#[test]
fn crd_preserves_unknown_fields_only_for_envoy_config_and_metric_overrides() {
    for (file, yaml) in crd_documents() {
        let count = yaml.matches("x-kubernetes-preserve-unknown-fields").count();
        // Once per served version. Telemetry's metrics overrides are kept
        // as written (not applied).
        let expected = if file.starts_with("envoyfilters.") || file.starts_with("telemetries.") {
            2
        } else {
            0
        };
        assert_eq!(count, expected, "{file}");
    }
}
