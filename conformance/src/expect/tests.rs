use super::*;
use std::time::Duration;

fn outcome(status: Option<u16>, version: Option<&str>, instance: &str, ms: u64) -> Outcome {
    let mut headers = http::HeaderMap::new();
    if let Some(v) = version {
        headers.insert("x-echo-service", "reviews".parse().unwrap());
        headers.insert("x-echo-version", v.parse().unwrap());
        headers.insert("x-echo-instance", instance.parse().unwrap());
    }
    Outcome {
        status,
        headers,
        body: bytes::Bytes::from_static(b"{\"x-route\": 1}"),
        latency: Duration::from_millis(ms),
        error: status.is_none().then(|| "refused".to_string()),
    }
}

fn split(v1: usize, v2: usize) -> Vec<Outcome> {
    let mut o: Vec<Outcome> = (0..v1)
        .map(|_| outcome(Some(200), Some("v1"), "0", 5))
        .collect();
    o.extend((0..v2).map(|_| outcome(Some(200), Some("v2"), "0", 5)));
    o
}

fn expect(yaml: &str) -> Expect {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn check_shares_within_tolerance_pass() {
    let e = expect("{status: {200: 1.0}, version: {v1: 0.8, v2: 0.2}}");
    assert!(check(&e, &split(83, 17)).is_ok());
}

#[test]
fn check_share_outside_tolerance_names_key_and_counts() {
    let e = expect("{version: {v1: 0.9, v2: 0.1}}");
    let err = check(&e, &split(138, 62)).unwrap_err();
    assert!(
        err.starts_with("version v1 share 0.69, expected 0.90 ± 0.05 (n=200"),
        "{err}"
    );
}

#[test]
fn check_unexpected_key_counts_as_zero_share() {
    let mut o = split(90, 0);
    o.extend((0..10).map(|_| outcome(None, None, "", 1)));
    let err = check(&expect("{status: {200: 1.0}}"), &o).unwrap_err();
    assert!(err.contains("status 200 share 0.90"), "{err}");
    let ok = check(
        &expect("{status: {200: 0.9, error: 0.1}, version: {v1: 0.9, none: 0.1}}"),
        &o,
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn check_instances_headers_body_latency() {
    let o = split(3, 0);
    assert!(check(&expect("{instances: 1}"), &o).is_ok());
    assert!(check(&expect("{instances: 2}"), &o).is_err());
    assert!(check(&expect("{headers: {x-echo-version: v1}}"), &o).is_ok());
    let err = check(&expect("{headers: {x-echo-version: v2}}"), &o).unwrap_err();
    assert!(err.contains("header x-echo-version is \"v1\""), "{err}");
    assert!(check(&expect("{bodyContains: x-route}"), &o).is_ok());
    assert!(check(&expect("{bodyContains: nope}"), &o).is_err());
    assert!(check(&expect("{maxLatencyMs: 10, minLatencyMs: 1}"), &o).is_ok());
    assert!(check(&expect("{minLatencyMs: 100}"), &o).is_err());
}

#[test]
fn check_status_headers_only_responses_with_that_status() {
    let mut o = split(3, 0);
    let mut overflow = outcome(Some(503), None, "", 1);
    overflow
        .headers
        .insert("x-envoy-overloaded", "true".parse().unwrap());
    o.push(overflow);
    let e = expect("{statusHeaders: {503: {x-envoy-overloaded: 'true'}}}");
    assert!(check(&e, &o).is_ok());
    o.push(outcome(Some(503), None, "", 1));
    let err = check(&e, &o).unwrap_err();
    assert!(
        err.starts_with("response 4 (status 503): header x-envoy-overloaded is missing"),
        "{err}"
    );
    let err = check(&e, &split(3, 0)).unwrap_err();
    assert!(err.starts_with("no response with status 503"), "{err}");
}
