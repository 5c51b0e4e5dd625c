use super::*;

const TEXT: &str = r#"# HELP istio_requests_total Requests.
# TYPE istio_requests_total counter
istio_requests_total{reporter="destination",response_code="200",source_workload="productpage-v1"} 7
istio_requests_total{reporter="destination",response_code="503"} 2
istio_requests_total{reporter="source",response_code="200"} 5 1700000000000
istio_request_duration_milliseconds_bucket{le="+Inf",reporter="source"} 5
istio_request_duration_milliseconds_count{reporter="source"} 5
istio_request_duration_milliseconds_sum{reporter="source"} 12.5
weird{path="a\"b,c=d"} 1
sluice_outlier_ejections_total 0
"#;

#[test]
fn parse_text_reads_labels_values_and_escapes() {
    let s = parse_text(TEXT);
    assert_eq!(s.len(), 8);
    assert_eq!(s[0].labels["source_workload"], "productpage-v1");
    assert_eq!(s[2].value, 5.0);
    assert_eq!(s[3].labels["le"], "+Inf");
    assert_eq!(s[6].labels["path"], "a\"b,c=d");
    assert_eq!(s[7].name, "sluice_outlier_ejections_total");
}

#[test]
fn evaluate_sums_matching_series() {
    let s = parse_text(TEXT);
    let e = |x: &str| evaluate(&[x.to_string()], &s);
    assert!(e(r#"istio_requests_total{reporter="destination"} == 9"#).is_ok());
    assert!(e(r#"istio_requests_total{response_code="200"} == 12"#).is_ok());
    assert!(e("istio_requests_total >= 14").is_ok());
    assert!(e("istio_request_duration_milliseconds_count == 5").is_ok());
    assert!(e("istio_request_duration_milliseconds_sum > 12").is_ok());
    assert!(e("sluice_outlier_ejections_total == 0").is_ok());
    assert!(e("missing_metric == 0").is_ok());
    assert!(e("istio_requests_total != 14").is_err());
}

#[test]
fn evaluate_false_expression_reports_value() {
    let s = parse_text(TEXT);
    let err = evaluate(
        &[r#"istio_requests_total{reporter="source"} < 5"#.into()],
        &s,
    )
    .unwrap_err();
    assert!(err.contains("value 5"), "{err}");
}

#[test]
fn parse_expectation_rejects_bad_operator() {
    assert!(parse_expectation("a ~ 1").is_err());
    assert!(parse_expectation("a{b=\"c\"} == x").is_err());
    let e = parse_expectation(r#"a{b="c", d="e"}<=3"#).unwrap();
    assert_eq!(e.op, Op::Le);
    assert_eq!(e.labels.len(), 2);
    assert_eq!(e.value, 3.0);
}
