use super::*;
use http::StatusCode;

fn text_reply(status: StatusCode, message: &str) -> Response<Body> {
    crate::http_util::local_reply(status, message)
}

#[test]
fn grpc_local_maps_status_and_keeps_the_message_and_headers() {
    let mut denied = text_reply(StatusCode::FORBIDDEN, "RBAC: access denied");
    denied.headers_mut().insert(
        "x-envoy-ratelimited",
        http::HeaderValue::from_static("true"),
    );
    let g = grpc_local(denied);
    assert_eq!(g.status(), StatusCode::OK);
    assert_eq!(g.headers()["content-type"], "application/grpc");
    assert_eq!(g.headers()["grpc-status"], "7");
    assert_eq!(g.headers()["grpc-message"], "RBAC: access denied");
    assert_eq!(g.headers()["x-envoy-ratelimited"], "true");
    assert_eq!(g.body().size_hint().exact(), Some(0));
    for (status, code) in [
        (StatusCode::BAD_REQUEST, "13"),
        (StatusCode::UNAUTHORIZED, "16"),
        (StatusCode::NOT_FOUND, "12"),
        (StatusCode::TOO_MANY_REQUESTS, "14"),
        (StatusCode::BAD_GATEWAY, "14"),
        (StatusCode::SERVICE_UNAVAILABLE, "14"),
        (StatusCode::GATEWAY_TIMEOUT, "14"),
        (StatusCode::INTERNAL_SERVER_ERROR, "2"),
    ] {
        let g = grpc_local(text_reply(status, "x"));
        assert_eq!(g.headers()["grpc-status"], code, "{status}");
    }
}

#[test]
fn grpc_local_leaves_successes_and_grpc_answers_alone_and_escapes_messages() {
    let ok = grpc_local(text_reply(StatusCode::OK, "fine"));
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(!ok.headers().contains_key("grpc-status"));
    let mut already = text_reply(StatusCode::SERVICE_UNAVAILABLE, "x");
    already
        .headers_mut()
        .insert("grpc-status", http::HeaderValue::from_static("4"));
    assert_eq!(grpc_local(already).headers()["grpc-status"], "4");
    // Without a kept message, the status's reason; `%` and non-ASCII escaped.
    let mut bare = Response::new(body::empty());
    *bare.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(
        grpc_local(bare).headers()["grpc-message"],
        "Service Unavailable"
    );
    let g = grpc_local(text_reply(StatusCode::FORBIDDEN, "100% é"));
    assert_eq!(g.headers()["grpc-message"], "100%25 %C3%A9");
}

mod recording {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
    use http_body_util::BodyExt;

    use crate::body::{self, Body};
    use crate::metrics::{Metrics, ServiceLabels};
    use crate::model::{Text, WorkloadMeta};
    use crate::report::Report;

    fn report(m: &Arc<Metrics>, protocol: &Text, caller: Version, bytes: u64) -> Report {
        let labels = m.request_labels(
            &m.words.destination,
            &WorkloadMeta::default(),
            &WorkloadMeta::default(),
            &ServiceLabels::default(),
            protocol,
            &m.words.no_flags,
            &m.words.none,
            None,
        );
        let start = Instant::now() - Duration::from_millis(30);
        let request_bytes = Arc::new(AtomicU64::new(bytes));
        Report::new(Arc::clone(m), labels, start, request_bytes, caller)
    }

    /// The `istio_*` lines of the exposition.
    fn lines(m: &Metrics) -> Vec<String> {
        m.encode()
            .lines()
            .filter(|l| l.starts_with("istio_"))
            .map(str::to_owned)
            .collect()
    }

    /// The value of the one line of `metric` carrying every label of `with`.
    fn value(m: &Metrics, metric: &str, with: &[&str]) -> Option<String> {
        let found: Vec<String> = lines(m)
            .into_iter()
            .filter(|l| l.starts_with(&format!("{metric}{{")))
            .filter(|l| with.iter().all(|w| l.contains(w)))
            .collect();
        assert!(found.len() <= 1, "{found:?}");
        found
            .first()
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    }

    fn streamed(status: StatusCode, grpc_header: Option<&'static str>) -> Response<Body> {
        let mut resp = Response::new(body::full("four"));
        *resp.status_mut() = status;
        if let Some(v) = grpc_header {
            resp.headers_mut()
                .insert("grpc-status", HeaderValue::from_static(v));
        }
        resp
    }

    #[test]
    fn report_dropped_unanswered_counts_code_0_dc_with_its_duration_and_request_bytes() {
        let m = Arc::new(Metrics::new());
        // Dropped during a fault delay: the delay's flag stays.
        drop(report(&m, &m.words.http, Version::HTTP_11, 12).with_flags(&m.words.di));
        let dc = [
            "response_code=\"0\"",
            "response_flags=\"DI,DC\"",
            "grpc_response_status=\"\"",
        ];
        assert_eq!(value(&m, "istio_requests_total", &dc).as_deref(), Some("1"));
        // Every histogram has its sample, as Envoy's stats for a reset stream.
        let count = |metric| value(&m, metric, &dc);
        assert_eq!(
            count("istio_request_duration_milliseconds_count").as_deref(),
            Some("1")
        );
        let millis: f64 = value(&m, "istio_request_duration_milliseconds_sum", &dc)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        assert!(millis >= 30.0, "{millis}");
        assert_eq!(
            value(&m, "istio_request_bytes_sum", &dc).as_deref(),
            Some("12.0")
        );
        assert_eq!(
            value(&m, "istio_response_bytes_sum", &dc).as_deref(),
            Some("0.0")
        );
    }

    #[test]
    fn report_dropped_unanswered_on_an_h2_stream_is_dr() {
        let m = Arc::new(Metrics::new());
        drop(report(&m, &m.words.grpc, Version::HTTP_2, 0));
        let dr = [
            "response_code=\"0\"",
            "response_flags=\"DR\"",
            "request_protocol=\"grpc\"",
            "grpc_response_status=\"\"",
        ];
        assert_eq!(value(&m, "istio_requests_total", &dr).as_deref(), Some("1"));
    }

    #[test]
    fn report_local_is_recorded_once() {
        let m = Arc::new(Metrics::new());
        let r = report(&m, &m.words.http, Version::HTTP_11, 0);
        let resp = r.local(streamed(StatusCode::FORBIDDEN, None), &m.words.no_flags);
        drop(resp);
        let total: Vec<String> = lines(&m)
            .into_iter()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .collect();
        assert_eq!(total.len(), 1, "{total:?}");
        assert!(total[0].contains("response_code=\"403\""), "{total:?}");
        assert!(total[0].ends_with(" 1"), "{total:?}");
    }

    #[tokio::test]
    async fn report_streamed_http_has_an_empty_grpc_status_whatever_the_headers() {
        let m = Arc::new(Metrics::new());
        let r = report(&m, &m.words.http, Version::HTTP_11, 0);
        let resp = r.streamed(streamed(StatusCode::OK, Some("0")), ());
        let _ = resp.into_body().collect().await;
        let ok = ["response_code=\"200\"", "grpc_response_status=\"\""];
        assert_eq!(value(&m, "istio_requests_total", &ok).as_deref(), Some("1"));
        assert_eq!(
            value(&m, "istio_response_bytes_sum", &ok).as_deref(),
            Some("4.0")
        );
    }

    #[tokio::test]
    async fn report_streamed_grpc_status_from_trailers_then_headers_then_http_status() {
        let m = Arc::new(Metrics::new());
        // Trailers win over headers.
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("5"));
        let frames = futures::stream::iter([
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(b"x"))),
            Ok(http_body::Frame::trailers(trailers)),
        ]);
        let mut resp = Response::new(body::boxed(http_body_util::StreamBody::new(frames)));
        resp.headers_mut()
            .insert("grpc-status", HeaderValue::from_static("3"));
        let r = report(&m, &m.words.grpc, Version::HTTP_2, 0);
        let _ = r.streamed(resp, ()).into_body().collect().await;
        // Without trailers: the header, else inferred from the HTTP status.
        let r = report(&m, &m.words.grpc, Version::HTTP_2, 0);
        let _ = r
            .streamed(streamed(StatusCode::OK, Some("7")), ())
            .into_body()
            .collect()
            .await;
        let r = report(&m, &m.words.grpc, Version::HTTP_2, 0);
        let _ = r
            .streamed(streamed(StatusCode::SERVICE_UNAVAILABLE, None), ())
            .into_body()
            .collect()
            .await;
        for (status, code) in [("5", "200"), ("7", "200"), ("14", "503")] {
            let with = [
                format!("grpc_response_status=\"{status}\""),
                format!("response_code=\"{code}\""),
            ];
            let with: Vec<&str> = with.iter().map(String::as_str).collect();
            assert_eq!(
                value(&m, "istio_requests_total", &with).as_deref(),
                Some("1"),
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn report_streamed_response_dropped_mid_body_counts_once_with_its_code() {
        let m = Arc::new(Metrics::new());
        let r = report(&m, &m.words.http, Version::HTTP_11, 0);
        // The answer's headers went out; its body is dropped unread.
        drop(r.streamed(streamed(StatusCode::OK, None), ()));
        let total: Vec<String> = lines(&m)
            .into_iter()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .collect();
        assert_eq!(total.len(), 1, "{total:?}");
        assert!(total[0].contains("response_code=\"200\""), "{total:?}");
        assert!(total[0].ends_with(" 1"), "{total:?}");
    }

    /// A gRPC message: flag 0, big-endian length, payload.
    fn message(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn with_messages(r: Report, request: u64) -> Report {
        let messages = Arc::new(crate::body::GrpcMessages::default());
        messages
            .request
            .store(request, std::sync::atomic::Ordering::Relaxed);
        r.with_messages(Some(messages))
    }

    #[tokio::test]
    async fn report_streamed_grpc_counts_messages_with_istio_labels_at_the_end() {
        let m = Arc::new(Metrics::new());
        let r = with_messages(report(&m, &m.words.grpc, Version::HTTP_2, 5), 1);
        let mut data = message(b"");
        data.extend(message(b"two"));
        let resp = r.streamed(Response::new(body::full(data)), ());
        // Nothing before the call ends, as Istio's stats filter adds the
        // counts when the stream completes.
        assert_eq!(value(&m, "istio_request_messages_total", &[]), None);
        let _ = resp.into_body().collect().await;
        assert_eq!(
            value(
                &m,
                "istio_request_messages_total",
                &["reporter=\"destination\""]
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            value(&m, "istio_response_messages_total", &[]).as_deref(),
            Some("2")
        );
        // The labels Istio has when it adds them: no protocol, code, gRPC
        // status, flags or security policy.
        for l in lines(&m)
            .iter()
            .filter(|l| l.starts_with("istio_re") && l.contains("_messages_total{"))
        {
            for absent in [
                "request_protocol=",
                "response_code=",
                "grpc_response_status=",
                "response_flags=",
                "connection_security_policy=",
            ] {
                assert!(!l.contains(absent), "{l}");
            }
            assert!(l.contains("destination_cluster="), "{l}");
        }
    }

    #[test]
    fn report_dropped_grpc_call_counts_the_messages_so_far() {
        let m = Arc::new(Metrics::new());
        drop(with_messages(
            report(&m, &m.words.grpc, Version::HTTP_2, 0),
            2,
        ));
        assert_eq!(
            value(&m, "istio_request_messages_total", &[]).as_deref(),
            Some("2")
        );
        assert_eq!(
            value(&m, "istio_response_messages_total", &[]).as_deref(),
            Some("0")
        );
    }

    #[tokio::test]
    async fn report_http_request_has_no_message_series() {
        let m = Arc::new(Metrics::new());
        let r = report(&m, &m.words.http, Version::HTTP_11, 0);
        let _ = r
            .streamed(Response::new(body::full(message(b"x"))), ())
            .into_body()
            .collect()
            .await;
        assert!(lines(&m).iter().all(|l| !l.contains("_messages_total")));
    }

    #[test]
    fn report_grpc_messages_disabled_per_metric_and_side() {
        let m = Arc::new(Metrics::new());
        m.set_disabled(crate::metrics::DisabledMetrics {
            client: 0,
            server: crate::metrics::standard::GRPC_REQUEST_MESSAGES,
        });
        drop(with_messages(
            report(&m, &m.words.grpc, Version::HTTP_2, 0),
            1,
        ));
        assert_eq!(value(&m, "istio_request_messages_total", &[]), None);
        assert_eq!(
            value(&m, "istio_response_messages_total", &[]).as_deref(),
            Some("0")
        );
        assert!(m.encode().contains(
            "sluice_standard_metric_disabled{reporter=\"destination\",metric=\"GRPC_REQUEST_MESSAGES\"} 1"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn report_streamed_grpc_adds_messages_every_interval_while_it_lasts() {
        let m = Arc::new(Metrics::new());
        let messages = Arc::new(crate::body::GrpcMessages::default());
        let r = report(&m, &m.words.grpc, Version::HTTP_2, 0)
            .with_messages(Some(Arc::clone(&messages)));
        let (tx, rx) = futures::channel::mpsc::unbounded::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >();
        let resp = r.streamed(
            Response::new(body::boxed(http_body_util::StreamBody::new(rx))),
            (),
        );
        let reader = tokio::spawn(resp.into_body().collect());
        let send = |payload: &[u8]| {
            let _ = tx.unbounded_send(Ok(http_body::Frame::data(Bytes::from(message(payload)))));
        };
        messages
            .request
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        send(b"a");
        tokio::time::sleep(crate::report::MESSAGES_INTERVAL + Duration::from_millis(10)).await;
        let req = || value(&m, "istio_request_messages_total", &[]);
        let resp = || value(&m, "istio_response_messages_total", &[]);
        assert_eq!(
            (req().as_deref(), resp().as_deref()),
            (Some("2"), Some("1"))
        );
        send(b"b");
        send(b"c");
        drop(tx);
        let _ = reader.await;
        // The rest when the call ends, each message once.
        assert_eq!(
            (req().as_deref(), resp().as_deref()),
            (Some("2"), Some("3"))
        );
        tokio::time::sleep(crate::report::MESSAGES_INTERVAL * 2).await;
        assert_eq!(
            (req().as_deref(), resp().as_deref()),
            (Some("2"), Some("3"))
        );
    }
}
