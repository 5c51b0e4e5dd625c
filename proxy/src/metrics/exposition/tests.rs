use super::*;
use crate::metrics::{DURATION_BUCKETS, SIZE_BUCKETS};

#[test]
fn envoy_bucket_bounds_writes_bounds_in_shortest_form() {
    let text = "# TYPE h histogram\n\
                h_sum{a=\"x\"} 1.5\n\
                h_count{a=\"x\"} 1\n\
                h_bucket{le=\"0.5\",a=\"x\"} 0\n\
                h_bucket{le=\"2500.0\",a=\"x\"} 1\n\
                h_bucket{le=\"100000000.0\"} 1\n\
                h_bucket{le=\"+Inf\",a=\"x\"} 1\n\
                # EOF\n";
    let got = envoy_bucket_bounds(text.to_owned());
    assert_eq!(
        got,
        "# TYPE h histogram\n\
         h_sum{a=\"x\"} 1.5\n\
         h_count{a=\"x\"} 1\n\
         h_bucket{le=\"0.5\",a=\"x\"} 0\n\
         h_bucket{le=\"2500\",a=\"x\"} 1\n\
         h_bucket{le=\"100000000\"} 1\n\
         h_bucket{le=\"+Inf\",a=\"x\"} 1\n\
         # EOF\n"
    );
}

#[test]
fn envoy_bucket_bounds_leaves_other_series_and_look_alike_labels_alone() {
    let text = "istio_requests_total{style=\"1.0\"} 3\n\
                other_bucket_total{le=\"1.0\"} 1\n\
                h_bucket{tile=\"2.0\",le=\"1.0\"} 1\n\
                h_bucket{le=\"1.0\",tile=\"2.0\"} 1\n";
    let got = envoy_bucket_bounds(text.to_owned());
    assert_eq!(
        got,
        "istio_requests_total{style=\"1.0\"} 3\n\
         other_bucket_total{le=\"1.0\"} 1\n\
         h_bucket{tile=\"2.0\",le=\"1.0\"} 1\n\
         h_bucket{le=\"1\",tile=\"2.0\"} 1\n"
    );
}

#[test]
fn envoy_bucket_bounds_prints_every_istio_bound_as_envoy_does() {
    // Envoy prints each bound with "{:.32g}": no trailing ".0", no exponent.
    for bound in DURATION_BUCKETS.iter().chain(SIZE_BUCKETS.iter()) {
        let printed = bound.to_string();
        assert!(
            !printed.contains(['e', 'E']) && !printed.ends_with(".0"),
            "{printed}"
        );
        assert_eq!(printed.parse::<f64>().ok(), Some(*bound));
    }
}

#[test]
fn encode_writes_istio_histogram_buckets_as_envoy() {
    let m = crate::metrics::Metrics::new();
    let labels = m.request_labels(
        &m.words.source,
        &crate::model::WorkloadMeta::default(),
        &crate::model::WorkloadMeta::default(),
        &crate::metrics::ServiceLabels::default(),
        &m.words.http,
        &m.words.no_flags,
        &m.words.unknown,
        None,
    );
    m.record_request(&labels, None, 1200.0, 10, 10);
    let text = m.encode();
    let bucket = |le: &str| {
        let needle = format!("{{le=\"{le}\",");
        text.lines()
            .find(|l| {
                l.starts_with("istio_request_duration_milliseconds_bucket{") && l.contains(&needle)
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(bucket("1000").as_deref(), Some("0"), "{text}");
    assert_eq!(bucket("2500").as_deref(), Some("1"), "{text}");
    assert_eq!(bucket("0.5").as_deref(), Some("0"), "{text}");
    assert_eq!(bucket("+Inf").as_deref(), Some("1"), "{text}");
    assert!(!text.contains(".0\","), "{text}");
}
