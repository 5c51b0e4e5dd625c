use super::*;

const FORTIO: &str = r#"{"RunType":"HTTP","ActualQPS":999.5,"DurationHistogram":{"Count":10000,
"Percentiles":[{"Percentile":50,"Value":0.0005},{"Percentile":90,"Value":0.001},
{"Percentile":99,"Value":0.002},{"Percentile":99.9,"Value":0.004}]},
"RetCodes":{"200":9990,"503":10}}"#;

#[test]
fn parse_fortio_http_counts_non_200_as_errors() {
    let run = parse_fortio(FORTIO).unwrap();
    assert_eq!(run.count, 10000);
    assert_eq!(run.errors, 10);
    assert_eq!(run.p_ms, [0.5, 1.0, 2.0, 4.0]);
    assert!((run.qps - 999.5).abs() < 1e-9);
}

#[test]
fn parse_fortio_grpc_serving_is_success() {
    let text = FORTIO.replace(r#""200":9990,"503":10"#, r#""SERVING":10000"#);
    assert_eq!(parse_fortio(&text).unwrap().errors, 0);
}

#[test]
fn parse_fortio_missing_percentile_is_error() {
    let text = FORTIO.replace(r#",{"Percentile":99.9,"Value":0.004}"#, "");
    assert!(matches!(
        parse_fortio(&text),
        Err(ParseError::MissingPercentile(p)) if (p - 99.9).abs() < 1e-9
    ));
}

#[test]
fn median_even_and_odd_lengths() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(median(&[]), 0.0);
    assert_eq!(spread(&[2.0, 5.0, 1.0]), (1.0, 5.0));
}
