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

fn warning_lines(yaml: &str) -> Vec<String> {
    parse_documents(yaml, "default")
        .into_iter()
        .map(|r| r.expect("parses"))
        .flat_map(|r| {
            let key = r.key();
            warnings(&r)
                .into_iter()
                .map(move |w| Problem(&key, &w).to_string())
        })
        .collect()
}

#[test]
fn warnings_fault_without_percentage_and_deprecated_fields() {
    let lines = warning_lines(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r}
spec:
  hosts: [r]
  http:
  - fault: {delay: {fixedDelay: 1s}, abort: {httpStatus: 500, percent: 10}}
    mirror: {host: r}
    mirrorPercent: 5
    route: [{destination: {host: r}}]
"#,
    );
    assert_eq!(
        lines,
        [
            "VirtualService default/r: spec.http[0].mirrorPercent: deprecated: use mirrorPercentage",
            "VirtualService default/r: spec.http[0].fault.delay: no percentage set: no request will be delayed",
            "VirtualService default/r: spec.http[0].fault.abort.percent: ignored: not a field of Istio's Abort (removed from the API; istiod never reads it), so only `percentage` decides which requests are aborted; use percentage",
            "VirtualService default/r: spec.http[0].fault.abort: no percentage set: no request will be aborted",
        ]
    );
}

#[test]
fn warnings_service_entry_partial_wildcard_host() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se}
spec:
  hosts: ["*-api.example.com", "*.example.org", api.example.net]
  ports: [{number: 80, name: http, protocol: HTTP}]
"#;
    assert!(problems(yaml).is_empty(), "{:?}", problems(yaml));
    assert_eq!(
        warning_lines(yaml),
        [
            "ServiceEntry default/se: spec.hosts[0]: partial wildcard `*-api.example.com`: matches every host ending in `-api.example.com`"
        ]
    );
}

#[test]
fn warnings_none_for_current_fields() {
    let lines = warning_lines(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r}
spec:
  host: r
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3}, loadBalancer: {simple: LEAST_REQUEST}}
"#,
    );
    assert!(lines.is_empty(), "{lines:?}");
}

#[test]
fn retry_budget_annotations_bad_values_name_the_annotation() {
    let lines = problems(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: r
  annotations: {retry.sluice.io/budget-percent: "150", retry.sluice.io/budget-min-retries-per-second: "lots"}
spec:
  hosts: [r]
  http:
  - route: [{destination: {host: r}}]
"#,
    );
    assert_eq!(
        lines,
        [
            "VirtualService default/r: metadata.annotations[retry.sluice.io/budget-percent]: `150` must be a number from 0 to 100",
            "VirtualService default/r: metadata.annotations[retry.sluice.io/budget-min-retries-per-second]: `lots` must be a whole number of retries per second",
        ]
    );
}

#[test]
fn warnings_locality_and_warmup_are_not_applied() {
    let lines = warning_lines(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: d
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true}
      warmupDurationSecs: 10s
"#,
    );
    assert_eq!(
        lines,
        [
            "DestinationRule default/d: spec.trafficPolicy.loadBalancer.localityLbSetting: not applied: Sluice balances over every endpoint alike, whatever its locality",
            "DestinationRule default/d: spec.trafficPolicy.loadBalancer.warmupDurationSecs: not applied: a new endpoint takes its full share at once",
        ]
    );
}
