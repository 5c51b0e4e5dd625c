use prost::Message as _;

use super::*;
use crate::model::Text;
use crate::telemetry::FinishedSpan;
use crate::telemetry::export::export_request;

fn span(name: &str, trace: u128) -> Span {
    Span {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: 42u64.to_be_bytes().to_vec(),
        trace_state: "k=v".to_owned(),
        parent_span_id: 7u64.to_be_bytes().to_vec(),
        name: name.to_owned(),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: vec![
            KeyValue::string("http.status_code", "503"),
            KeyValue::int("n", -3),
        ],
        status: Some(Status {
            message: String::new(),
            code: STATUS_ERROR,
        }),
    }
}

#[test]
fn export_request_roundtrips_through_the_wire_format() {
    let batch = vec![
        FinishedSpan {
            service_name: Text::from("b.default"),
            span: span("x:1/*", 1),
        },
        FinishedSpan {
            service_name: Text::from("a.default"),
            span: span("y:2/*", 2),
        },
        FinishedSpan {
            service_name: Text::from("b.default"),
            span: span("z:3/*", 3),
        },
    ];
    let req = export_request(batch);
    let bytes = req.encode_to_vec();
    let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(back, req);
    // One resource per service name, spans grouped under it.
    assert_eq!(back.resource_spans.len(), 2);
    let names: Vec<_> = back
        .resource_spans
        .iter()
        .map(|r| r.resource.as_ref().unwrap().attributes[0].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.default", "b.default"]);
    assert_eq!(back.resource_spans[1].scope_spans[0].spans.len(), 2);
    let s = &back.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(s.attribute("http.status_code"), Some("503"));
    assert_eq!(s.status.as_ref().unwrap().code, STATUS_ERROR);
}

#[test]
fn span_fields_use_the_otlp_field_numbers() {
    // Hand-decoded tags: field << 3 | wire type.
    let s = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "n".to_owned(),
        kind: 2,
        start_time_unix_nano: 5,
        ..Default::default()
    };
    let b = s.encode_to_vec();
    assert_eq!(b[0], (1 << 3) | 2); // trace_id, length-delimited
    assert_eq!(b[18], (2 << 3) | 2); // span_id
    assert_eq!(b[28], (5 << 3) | 2); // name
    assert_eq!(b[31], 6 << 3); // kind, varint
    assert_eq!(b[33], (7 << 3) | 1); // start_time_unix_nano, fixed64
    let st = Status {
        message: "m".to_owned(),
        code: 2,
    };
    assert_eq!(st.encode_to_vec(), vec![(2 << 3) | 2, 1, b'm', 3 << 3, 2]);
    let with_status = Span {
        status: Some(Status::default()),
        ..Default::default()
    };
    // Field 15, length-delimited: tag 0x7a, length 0.
    assert_eq!(with_status.encode_to_vec(), vec![0x7a, 0]);
}
