use super::*;

const GOOD: &str = r#"
name: shift
source: https://istio.io/latest/docs/tasks/traffic-management/traffic-shifting/
workloads:
  - service: productpage
  - service: reviews
    port: 9080
    protocol: http2
    versions: {v1: 2, v2: 1}
config: |
  apiVersion: networking.istio.io/v1
  kind: VirtualService
steps:
  - request: {from: productpage, url: "http://reviews:9080/", count: 200, headers: {x-n: 5}}
    expect:
      status: {200: 1.0}
      version: {v1: 0.5, v2: 0.5}
      tolerance: 0.1
  - behave: {service: reviews, status: 503}
  - sleepMs: 10
"#;

#[test]
fn parse_full_scenario_fills_defaults() {
    let s = parse(GOOD, Path::new("x.yaml")).unwrap();
    assert!(s.mtls);
    assert_eq!(s.workloads[0].port, 8080);
    assert_eq!(s.workloads[0].namespace, "default");
    assert_eq!(s.workloads[0].service_account(), "productpage");
    assert_eq!(s.workloads[0].versions, BTreeMap::from([("v1".into(), 1)]));
    assert_eq!(s.workloads[1].protocol, Protocol::Http2);
    let steps = s.resolved_steps().unwrap();
    let Step::Request(call) = &steps[0] else {
        panic!("not a request: {:?}", steps[0]);
    };
    let (req, exp) = &**call;
    assert_eq!(req.method, "GET");
    assert_eq!(req.count, 200);
    assert_eq!(req.headers["x-n"], "5");
    assert_eq!(exp.status.as_ref().unwrap()["200"], 1.0);
    assert_eq!(exp.version.as_ref().unwrap()["v2"], 0.5);
    assert!(matches!(
        steps[1],
        Step::Behave(Behave {
            status: Some(503),
            ..
        })
    ));
    assert!(matches!(steps[2], Step::SleepMs(10)));
}

#[test]
fn parse_unknown_field_names_file_and_field() {
    let bad = GOOD.replace("tolerance: 0.1", "tolerence: 0.1");
    let err = parse(&bad, Path::new("typo.yaml")).unwrap_err().to_string();
    assert!(err.contains("typo.yaml"), "{err}");
    assert!(err.contains("steps[0].expect"), "{err}");
    assert!(err.contains("tolerence"), "{err}");
}

#[test]
fn parse_step_with_two_actions_is_rejected() {
    let bad = GOOD.replace("  - sleepMs: 10", "  - sleepMs: 10\n    apply: x");
    let err = parse(&bad, Path::new("two.yaml")).unwrap_err().to_string();
    assert!(
        err.contains("steps[2]") && err.contains("2 actions"),
        "{err}"
    );
}

#[test]
fn parse_expect_without_request_is_rejected() {
    let bad = GOOD.replace(
        "  - sleepMs: 10",
        "  - sleepMs: 10\n    expect: {instances: 1}",
    );
    let err = parse(&bad, Path::new("e.yaml")).unwrap_err().to_string();
    assert!(err.contains("needs a `request`"), "{err}");
}

#[test]
fn parse_source_not_url_or_bad_request_url_is_rejected() {
    let bad = GOOD.replace("source: https://", "source: ");
    let err = parse(&bad, Path::new("s.yaml")).unwrap_err().to_string();
    assert!(err.contains("source must be the URL"), "{err}");
    let bad = GOOD.replace("url: \"http://reviews", "url: \"reviews");
    let err = parse(&bad, Path::new("u.yaml")).unwrap_err().to_string();
    assert!(err.contains("steps[0].request.url"), "{err}");
}

#[test]
fn parse_no_workloads_is_rejected() {
    let err = parse(
        "name: a\nsource: https://b\nworkloads: []\n",
        Path::new("w.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no workloads"), "{err}");
}

#[test]
fn parse_status_headers_and_grpc_behave() {
    let text = GOOD
        .replace(
            "      tolerance: 0.1",
            "      tolerance: 0.1\n      statusHeaders: {503: {x-envoy-overloaded: \"true\"}}",
        )
        .replace("status: 503}", "grpcStatus: 14}");
    let s = parse(&text, Path::new("x.yaml")).unwrap();
    let steps = s.resolved_steps().unwrap();
    let Step::Request(call) = &steps[0] else {
        panic!("not a request: {:?}", steps[0]);
    };
    assert_eq!(call.1.status_headers["503"]["x-envoy-overloaded"], "true");
    assert!(matches!(
        steps[1],
        Step::Behave(Behave {
            status: None,
            grpc_status: Some(14),
            ..
        })
    ));
    let bad = text.replace("statusHeaders: {503: {", "statusHeaders: {503: [{");
    let bad = bad.replace("\"true\"}}", "\"true\"}]}");
    assert!(parse(&bad, Path::new("b.yaml")).is_err());
}
