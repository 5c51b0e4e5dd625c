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
        0,
        &m.words.unknown,
        &m.words.no_flags,
        &m.words.unknown,
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
    m.record_request(&a, 3.0, 10, 1000);
    m.record_request(&a.clone(), 7.0, 20, 2000);
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
    m.record_request(&labels(&m, "b.ns", 200), 1.0, 0, 0);
    m.record_request(&labels(&m, "b.ns", 503), 1.0, 0, 0);
    m.record_request(&labels(&m, "b.ns", 503), 1.0, 0, 0);
    let text = m.encode();
    let ok = line_value(&text, "istio_requests_total", "response_code=\"200\"");
    let bad = line_value(&text, "istio_requests_total", "response_code=\"503\"");
    assert_eq!(ok.as_deref(), Some("1"));
    assert_eq!(bad.as_deref(), Some("2"));
}
