use http::HeaderValue;

use super::Principals;
use crate::metrics::{Metrics, ServiceLabels};
use crate::model::{Text, WorkloadMeta};

fn meta(workload: &str, version: &str, principal: &str) -> WorkloadMeta {
    WorkloadMeta {
        workload: workload.into(),
        namespace: "default".into(),
        app: "reviews".into(),
        version: version.into(),
        principal: principal.into(),
        cluster: "Kubernetes".into(),
    }
}

#[test]
fn request_labels_without_mtls_report_unknown_principals_whatever_the_metadata() {
    let m = Metrics::new();
    let me = meta(
        "sleep-v1",
        "v1",
        "spiffe://cluster.local/ns/default/sa/sleep",
    );
    let them = meta(
        "reviews-v2",
        "v2",
        "spiffe://cluster.local/ns/default/sa/reviews",
    );
    let l = m.request_labels(
        &m.words.source,
        &me,
        &them,
        &ServiceLabels::default(),
        &m.words.http,
        &m.words.no_flags,
        &m.words.unknown,
        None,
    );
    assert_eq!(l.source_principal.as_str(), "unknown");
    assert_eq!(l.destination_principal.as_str(), "unknown");
    assert_eq!(l.destination_workload.as_str(), "reviews-v2");
    assert_eq!(l.response_code, 0);
    assert_eq!(l.grpc_response_status.as_str(), "");
}

#[test]
fn request_labels_with_mtls_report_the_certificates_ids() {
    let m = Metrics::new();
    let client = Text::from("spiffe://cluster.local/ns/default/sa/sleep");
    let server = Text::from("spiffe://cluster.local/ns/default/sa/reviews");
    let principals = Principals {
        source: &client,
        destination: &server,
    };
    let l = m.tcp_labels(
        &m.words.destination,
        &WorkloadMeta::default(),
        &meta("reviews-v2", "v2", ""),
        &ServiceLabels::default(),
        &m.words.mutual_tls,
        Some(principals),
    );
    assert_eq!(l.source_principal, client);
    assert_eq!(l.destination_principal, server);
    // A caller without metadata still has an unknown workload.
    assert_eq!(l.source_workload.as_str(), "unknown");
}

#[test]
fn endpoint_metadata_only_leaves_out_app_and_version() {
    let m = Metrics::new();
    let me = meta("sleep-v1", "v1", "");
    let them = meta("reviews-v2", "v2", "");
    let mut l = m.request_labels(
        &m.words.source,
        &me,
        &them,
        &ServiceLabels::default(),
        &m.words.http,
        &m.words.no_flags,
        &m.words.unknown,
        None,
    );
    assert_eq!(l.destination_app.as_str(), "reviews");
    assert_eq!(l.destination_version.as_str(), "v2");
    m.endpoint_metadata_only(&mut l);
    assert_eq!(l.destination_app.as_str(), "unknown");
    assert_eq!(l.destination_version.as_str(), "unknown");
    // What Istio's endpoint metadata has stays.
    assert_eq!(l.destination_workload.as_str(), "reviews-v2");
    assert_eq!(l.destination_workload_namespace.as_str(), "default");
    assert_eq!(l.destination_canonical_service.as_str(), "reviews");
    assert_eq!(l.destination_canonical_revision.as_str(), "v2");
    assert_eq!(l.destination_cluster.as_str(), "Kubernetes");
    // The caller's own labels are untouched.
    assert_eq!(l.source_app.as_str(), "reviews");
    assert_eq!(l.source_version.as_str(), "v1");
}

#[test]
fn grpc_status_label_reads_codes_as_envoy() {
    let m = Metrics::new();
    let label = |v: &'static str| m.grpc_status_label(&HeaderValue::from_static(v));
    assert_eq!(label("0").as_str(), "0");
    assert_eq!(label("14").as_str(), "14");
    assert_eq!(label("16").as_str(), "16");
    // Outside 0-16 or not a number: Envoy's InvalidCode.
    assert_eq!(label("17").as_str(), "-1");
    assert_eq!(label("ok").as_str(), "-1");
    assert_eq!(label("").as_str(), "-1");
}

#[test]
fn grpc_status_of_http_maps_as_envoy_and_is_empty_without_a_response() {
    let m = Metrics::new();
    let of = |code| m.grpc_status_of_http(code).as_str().to_owned();
    assert_eq!(of(200), "2");
    assert_eq!(of(403), "7");
    assert_eq!(of(503), "14");
    assert_eq!(of(404), "12");
    assert_eq!(of(0), "");
}
