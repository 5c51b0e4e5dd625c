use super::*;
use serde_json::json;

const SCRAPE: &str = r#"# HELP istio_requests Requests handled.
# TYPE istio_requests counter
istio_requests_total{reporter="destination",response_code="200",destination_service="a\"b,c"} 3
# TYPE istio_request_duration_milliseconds histogram
istio_request_duration_milliseconds_bucket{reporter="destination",le="0.5"} 1
istio_request_duration_milliseconds_sum{reporter="destination"} 0.2
istio_request_duration_milliseconds_count{reporter="destination"} 1
# TYPE sluice_quiet counter
# TYPE sluice_up gauge
sluice_up 1
# EOF
"#;

fn exported() -> Exported {
    let mut e = Exported::default();
    e.add(SCRAPE);
    e
}

fn dashboard(expr: &str, variable: &str) -> Value {
    json!({
        "title": "Sluice / Test",
        "panels": [
            {"type": "row", "title": "collapsed", "panels": [
                {"title": "Inner", "targets": [{"refId": "A", "expr": expr}]}
            ]},
            {"title": "Up", "targets": [{"refId": "B", "expr": "sum(sluice_up{pod=~\"$w-.*\"})"}]}
        ],
        "templating": {"list": [
            {"type": "datasource", "name": "datasource", "query": "prometheus"},
            {"type": "query", "name": "svc", "query": {"query": variable}}
        ]}
    })
}

#[test]
fn exported_sample_names_and_labels_are_collected() {
    let e = exported();
    assert!(e.has("istio_requests_total"));
    assert!(e.has("istio_request_duration_milliseconds_bucket"));
    assert!(!e.has("istio_request_duration_milliseconds"));
    let labels = &e.samples["istio_requests_total"];
    assert_eq!(
        labels.iter().collect::<Vec<_>>(),
        ["destination_service", "reporter", "response_code"]
    );
    assert!(e.samples["istio_request_duration_milliseconds_bucket"].contains("le"));
}

#[test]
fn exported_family_without_samples_counts_by_its_type() {
    let e = exported();
    assert!(e.has("sluice_quiet_total"));
    assert!(!e.has("sluice_quiet_bucket"));
    assert!(!e.has("sluice_missing_total"));
}

#[test]
fn queries_found_in_collapsed_rows_and_variables() {
    let q = queries(&dashboard("x", "label_values(y, l)"));
    let places: Vec<&str> = q.iter().map(|q| q.place.as_str()).collect();
    assert_eq!(
        places,
        [
            "panel \"Up\" target B",
            "panel \"Inner\" target A",
            "variable svc"
        ]
    );
    assert!(q[2].variable);
}

#[test]
fn problems_none_when_every_metric_and_label_is_exported() {
    let d = dashboard(
        "histogram_quantile(0.5, sum by (le) (rate(istio_request_duration_milliseconds_bucket{reporter=\"destination\"}[1m])))",
        "label_values(istio_requests_total{reporter=\"destination\"}, destination_service)",
    );
    assert_eq!(problems(&queries(&d), &exported()), Vec::<String>::new());
}

#[test]
fn problems_name_the_dashboard_panel_and_missing_metric() {
    let d = dashboard(
        "sum(rate(istio_requests_total[1m])) / sum(rate(istio_request_duration_milliseconds[1m]))",
        "label_values(istio_tcp_sent_bytes_total, destination_service)",
    );
    assert_eq!(
        problems(&queries(&d), &exported()),
        [
            "Sluice / Test / panel \"Inner\" target A: metric istio_request_duration_milliseconds is not exported",
            "Sluice / Test / variable svc: metric istio_tcp_sent_bytes_total is not exported",
        ]
    );
}

#[test]
fn problems_name_a_missing_label_and_an_unverifiable_one() {
    let d = dashboard(
        "sum by (source_workload) (rate(istio_requests_total{reporter=\"destination\"}[1m])) + sum by (kind) (sluice_quiet_total)",
        "label_values(sluice_up, version)",
    );
    let p = problems(&queries(&d), &exported());
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].starts_with(
        "Sluice / Test / panel \"Inner\" target A: metric istio_requests_total has no label source_workload"
    ));
    assert!(p[1].contains("sluice_quiet_total has no samples, so label kind cannot be checked"));
    assert!(p[2].contains("variable svc: metric sluice_up has no label version"));
}

#[test]
fn problems_unreadable_or_metricless_query_is_reported() {
    let d = dashboard("sum(rate(x[1m])", "label_values(namespace)");
    let p = problems(&queries(&d), &exported());
    assert!(p[0].contains("target A: cannot read query"), "{p:#?}");
    assert!(p[1].contains("variable svc: cannot read query"), "{p:#?}");
    let d = dashboard("time()", "label_values(sluice_up, pod)");
    let p = problems(&queries(&d), &exported());
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].contains("target A: reads no metric"));
}
