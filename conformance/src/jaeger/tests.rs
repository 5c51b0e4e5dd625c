use super::*;

fn answer() -> Value {
    serde_json::json!({
        "data": [{
            "traceID": "af7651916cd43dd8448eb211c80319c",
            "spans": [
                {
                    "traceID": "af7651916cd43dd8448eb211c80319c",
                    "spanID": "b7ad6b7169203331",
                    "operationName": "reviews:9080/*",
                    "references": [],
                    "tags": [
                        {"key": "span.kind", "type": "string", "value": "client"},
                        {"key": "http.status_code", "type": "int64", "value": 503},
                        {"key": "error", "type": "bool", "value": true}
                    ],
                    "processID": "p1"
                },
                {
                    "traceID": "af7651916cd43dd8448eb211c80319c",
                    "spanID": "b9c7c989f97918e1",
                    "operationName": "reviews.default.svc.cluster.local:9080/*",
                    "references": [
                        {"refType": "FOLLOWS_FROM", "traceID": "af7651916cd43dd8448eb211c80319c", "spanID": "00000000000000aa"},
                        {"refType": "CHILD_OF", "traceID": "af7651916cd43dd8448eb211c80319c", "spanID": "b7ad6b7169203331"}
                    ],
                    "tags": [{"key": "span.kind", "type": "string", "value": "server"}],
                    "processID": "p2"
                }
            ],
            "processes": {
                "p1": {"serviceName": "productpage.default", "tags": []},
                "p2": {"serviceName": "reviews.default", "tags": []}
            }
        }],
        "total": 0, "limit": 0, "offset": 0, "errors": null
    })
}

#[test]
fn parse_traces_jaeger_answer_spans_with_services_parents_and_tags() {
    let traces = parse_traces(&answer()).unwrap();
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    // Jaeger drops the leading zero; the parsed id has all 32 digits.
    assert_eq!(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
    let client: Vec<&Span> = t.spans_of("productpage.default", "client").collect();
    let server: Vec<&Span> = t.spans_of("reviews.default", "server").collect();
    assert_eq!((client.len(), server.len()), (1, 1));
    assert_eq!(client[0].parent_span_id, None);
    assert_eq!(client[0].tag("http.status_code"), Some("503"));
    assert_eq!(client[0].tag("error"), Some("true"));
    assert_eq!(
        server[0].parent_span_id.as_deref(),
        Some("b7ad6b7169203331")
    );
    assert_eq!(server[0].trace_id, t.trace_id);
}

#[test]
fn parse_traces_null_data_is_empty() {
    let v = serde_json::json!({"data": null});
    assert!(parse_traces(&v).unwrap().is_empty());
}

#[test]
fn parse_traces_span_without_id_is_an_error() {
    let v = serde_json::json!({"data": [{"traceID": "1", "spans": [{"traceID": "1"}]}]});
    assert!(parse_traces(&v).unwrap_err().contains("spanID"));
}

#[test]
fn encode_service_name_reserved_characters_escaped() {
    assert_eq!(encode("reviews.default"), "reviews.default");
    assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
}

#[test]
fn config_yaml_ports_given_every_listener_on_them() {
    let a = |p: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p);
    let yaml = config_yaml(a(1001), a(1002), a(1003), a(1004));
    let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let s = |path: &[&str]| {
        path.iter()
            .fold(&v, |v, k| &v[*k])
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        s(&["receivers", "otlp", "protocols", "grpc", "endpoint"]),
        "127.0.0.1:1001"
    );
    assert_eq!(
        s(&["receivers", "otlp", "protocols", "http", "endpoint"]),
        "127.0.0.1:1002"
    );
    assert_eq!(
        s(&["extensions", "jaeger_query", "http", "endpoint"]),
        "127.0.0.1:1003"
    );
    assert_eq!(
        s(&["extensions", "jaeger_query", "grpc", "endpoint"]),
        "127.0.0.1:1004"
    );
}
