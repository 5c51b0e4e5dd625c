use crate::metrics::{Metrics, ServiceLabels};
use crate::model::{Text, WorkloadMeta};

fn labels(m: &Metrics, service: &str, code: u16) -> crate::metrics::RequestLabels {
    let service = ServiceLabels {
        service: Text::from(service),
        name: Text::from("svc"),
        namespace: Text::from("ns"),
    };
    let mut l = m.request_labels(
        &m.words.source,
        &WorkloadMeta::default(),
        &WorkloadMeta::default(),
        &service,
        &m.words.http,
        &m.words.no_flags,
        &m.words.unknown,
        None,
    );
    l.response_code = code;
    l
}

fn line_value(text: &str, metric: &str, needle: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(metric) && l.contains(needle))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned)
}

#[test]
fn record_request_same_labels_accumulates_in_registered_families() {
    let m = Metrics::new();
    let a = labels(&m, "a.ns.svc.cluster.local", 200);
    m.record_request(&a, None, 3.0, 10, 1000);
    m.record_request(&a.clone(), None, 7.0, 20, 2000);
    let text = m.encode();
    let needle = "destination_service=\"a.ns.svc.cluster.local\"";
    assert_eq!(
        line_value(&text, "istio_requests_total", needle).as_deref(),
        Some("2")
    );
    assert_eq!(
        line_value(&text, "istio_request_duration_milliseconds_sum", needle).as_deref(),
        Some("10.0")
    );
    assert_eq!(
        line_value(&text, "istio_response_bytes_sum", needle).as_deref(),
        Some("3000.0")
    );
}

#[test]
fn record_request_different_code_keeps_separate_series() {
    let m = Metrics::new();
    m.record_request(&labels(&m, "b.ns", 200), None, 1.0, 0, 0);
    m.record_request(&labels(&m, "b.ns", 503), None, 1.0, 0, 0);
    m.record_request(&labels(&m, "b.ns", 503), None, 1.0, 0, 0);
    let text = m.encode();
    let ok = line_value(&text, "istio_requests_total", "response_code=\"200\"");
    let bad = line_value(&text, "istio_requests_total", "response_code=\"503\"");
    assert_eq!(ok.as_deref(), Some("1"));
    assert_eq!(bad.as_deref(), Some("2"));
}

#[test]
fn record_request_skips_metrics_a_telemetry_disabled_for_that_side_only() {
    use crate::metrics::{DisabledMetrics, standard};
    let m = Metrics::new();
    m.set_disabled(DisabledMetrics {
        client: standard::REQUEST_COUNT | standard::RESPONSE_SIZE,
        server: 0,
    });
    let client = labels(&m, "c.ns", 200);
    let mut server = labels(&m, "c.ns", 200);
    server.reporter = m.words.destination.clone();
    m.record_request(&client, None, 2.0, 5, 50);
    m.record_request(&server, None, 2.0, 5, 50);
    let text = m.encode();
    assert!(
        text.contains(
            "sluice_standard_metric_disabled{reporter=\"source\",metric=\"RESPONSE_SIZE\"} 1"
        ),
        "{text}"
    );
    let source = "reporter=\"source\"";
    let destination = "reporter=\"destination\"";
    // No series at all for what is off, not a zero.
    assert_eq!(line_value(&text, "istio_requests_total", source), None);
    assert_eq!(
        line_value(&text, "istio_response_bytes_count", source),
        None
    );
    assert_eq!(
        line_value(&text, "istio_request_duration_milliseconds_count", source).as_deref(),
        Some("1")
    );
    assert_eq!(
        line_value(&text, "istio_requests_total", destination).as_deref(),
        Some("1")
    );
    // On again: recorded through the cached series.
    m.set_disabled(DisabledMetrics::default());
    m.record_request(&client, None, 2.0, 5, 50);
    let text = m.encode();
    assert!(!text.contains("sluice_standard_metric_disabled{"), "{text}");
    assert_eq!(
        line_value(&text, "istio_requests_total", source).as_deref(),
        Some("1")
    );
    assert_eq!(
        line_value(&text, "istio_request_duration_milliseconds_count", source).as_deref(),
        Some("2")
    );
}
