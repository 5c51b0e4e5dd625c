use std::sync::Arc;

use sluice_api::config as pb;

use super::TagPlans;
use crate::metrics::{Metrics, ServiceLabels, TagFacts};
use crate::model::{Text, WorkloadMeta};

fn bits(list: &[i32]) -> Result<u16, String> {
    Ok(list.iter().fold(0u16, |b, m| b | 1 << m))
}

const COUNT: i32 = pb::StandardMetric::RequestCount as i32;
const DURATION: i32 = pb::StandardMetric::RequestDuration as i32;
const TCP_OPENED: i32 = pb::StandardMetric::TcpOpenedConnections as i32;

fn tag(name: &str, value: &str, client: &[i32], server: &[i32]) -> pb::MetricTag {
    pb::MetricTag {
        name: name.into(),
        remove: value.is_empty(),
        value: value.into(),
        client_metrics: client.to_vec(),
        server_metrics: server.to_vec(),
    }
}

fn meta(workload: &str, app: &str, version: &str) -> WorkloadMeta {
    WorkloadMeta {
        workload: workload.into(),
        namespace: "bookinfo".into(),
        app: app.into(),
        version: version.into(),
        principal: Text::default(),
        cluster: "Kubernetes".into(),
    }
}

fn metrics_with(tags: &[pb::MetricTag]) -> Metrics {
    let m = Metrics::new();
    let plans = TagPlans::new(tags, bits).expect("valid tags");
    m.set_tags(plans.map(Arc::new));
    m
}

fn request(m: &Metrics, reporter: &Text, code: u16) -> crate::metrics::RequestLabels {
    let service = ServiceLabels {
        service: "reviews.bookinfo.svc.cluster.local".into(),
        name: "reviews".into(),
        namespace: "bookinfo".into(),
    };
    let mut l = m.request_labels(
        reporter,
        &meta("productpage-v1", "productpage", "v1"),
        &meta("reviews-v2", "reviews", "v2"),
        &service,
        &m.words.http,
        &m.words.no_flags,
        &m.words.unknown,
        None,
    );
    l.response_code = code;
    l
}

fn facts(host: &str, port: u16) -> TagFacts {
    let req = http::Request::get(format!("http://{host}/reviews/1?x=1"))
        .header("x-tier", "gold")
        .body(())
        .expect("request");
    let (parts, ()) = req.into_parts();
    let mut f = TagFacts::of(&parts, &["x-tier".to_owned()]);
    f.destination = Some(std::net::SocketAddr::from(([10, 0, 0, 7], port)));
    f
}

/// The `istio_requests_total` lines of the exposition.
fn lines(m: &Metrics, name: &str) -> Vec<String> {
    m.encode()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn standard_labels_include_istios_canonical_service_and_revision() {
    let m = Metrics::new();
    let l = request(&m, &m.words.source, 200);
    m.record_request(&l, None, 1.0, 10, 10);
    let line = &lines(&m, "istio_requests_total")[0];
    for label in [
        "source_canonical_service=\"productpage\"",
        "source_canonical_revision=\"v1\"",
        "destination_canonical_service=\"reviews\"",
        "destination_canonical_revision=\"v2\"",
        "response_code=\"200\"",
    ] {
        assert!(line.contains(label), "{label} missing in {line}");
    }
    // A peer without metadata: canonical revision "latest", as Istio.
    let mut l = request(&m, &m.words.destination, 200);
    l.source_canonical_revision = m.words.latest.clone();
    let plain = m.request_labels(
        &m.words.destination,
        &WorkloadMeta::default(),
        &meta("reviews-v2", "reviews", "v2"),
        &ServiceLabels::default(),
        &m.words.http,
        &m.words.no_flags,
        &m.words.unknown,
        None,
    );
    assert_eq!(plain.source_canonical_service.as_str(), "unknown");
    assert_eq!(plain.source_canonical_revision.as_str(), "latest");
}

#[test]
fn istio_doc_request_host_and_destination_port_on_request_count_only() {
    // The "Customizing Istio Metrics" task.
    let m = metrics_with(&[
        tag(
            "destination_port",
            "string(destination.port)",
            &[COUNT],
            &[COUNT],
        ),
        tag("request_host", "request.host", &[COUNT], &[COUNT]),
    ]);
    let l = request(&m, &m.words.source, 200);
    let f = facts("reviews:9080", 9080);
    m.record_request(&l, Some(&f), 3.0, 10, 20);
    let count = lines(&m, "istio_requests_total");
    assert_eq!(count.len(), 1, "{count:?}");
    assert!(
        count[0].contains("destination_port=\"9080\""),
        "{}",
        count[0]
    );
    assert!(
        count[0].contains("request_host=\"reviews:9080\""),
        "{}",
        count[0]
    );
    assert!(count[0].contains("reporter=\"source\""), "{}", count[0]);
    // The other metrics keep the standard labels only.
    let duration = lines(&m, "istio_request_duration_milliseconds_count");
    assert_eq!(duration.len(), 1, "{duration:?}");
    assert!(!duration[0].contains("request_host"), "{}", duration[0]);
}

#[test]
fn remove_drops_the_label_and_merges_series() {
    let m = metrics_with(&[tag("response_code", "", &[COUNT, DURATION], &[])]);
    for code in [200, 503, 200] {
        let l = request(&m, &m.words.source, code);
        m.record_request(&l, None, 1.0, 0, 0);
    }
    let count = lines(&m, "istio_requests_total");
    assert_eq!(count.len(), 1, "{count:?}");
    assert!(!count[0].contains("response_code"), "{}", count[0]);
    assert!(count[0].ends_with(" 3"), "{}", count[0]);
    // Only the client side was changed.
    let l = request(&m, &m.words.destination, 503);
    m.record_request(&l, None, 1.0, 0, 0);
    let count = lines(&m, "istio_requests_total");
    assert_eq!(count.len(), 2, "{count:?}");
    assert!(
        count
            .iter()
            .any(|c| c.contains("reporter=\"destination\"") && c.contains("response_code=\"503\"")),
        "{count:?}"
    );
}

#[test]
fn upsert_of_a_standard_label_replaces_its_value() {
    let m = metrics_with(&[tag("request_protocol", "request.method", &[], &[COUNT])]);
    let l = request(&m, &m.words.destination, 200);
    m.record_request(&l, Some(&facts("reviews:9080", 9080)), 1.0, 0, 0);
    let count = &lines(&m, "istio_requests_total")[0];
    assert_eq!(count.matches("request_protocol=").count(), 1, "{count}");
    assert!(count.contains("request_protocol=\"GET\""), "{count}");
}

#[test]
fn failed_evaluation_gives_unknown_and_peers_come_from_labels() {
    let m = metrics_with(&[
        tag("tier", "request.headers['x-missing']", &[COUNT], &[]),
        tag(
            "destination_x",
            "filter_state.upstream_peer.app",
            &[COUNT],
            &[],
        ),
        tag(
            "source_x",
            "filter_state.downstream_peer.app",
            &[COUNT],
            &[],
        ),
        tag(
            "code_class",
            "response.code >= 500 ? 'error' : 'ok'",
            &[COUNT],
            &[],
        ),
    ]);
    let l = request(&m, &m.words.source, 503);
    m.record_request(&l, Some(&facts("reviews:9080", 9080)), 1.0, 0, 0);
    let count = &lines(&m, "istio_requests_total")[0];
    assert!(count.contains("tier=\"unknown\""), "{count}");
    assert!(count.contains("destination_x=\"reviews\""), "{count}");
    // The client side has no downstream peer.
    assert!(count.contains("source_x=\"unknown\""), "{count}");
    assert!(count.contains("code_class=\"error\""), "{count}");
    let text = m.encode();
    // Two of the four could not be evaluated.
    assert!(
        text.contains("sluice_metric_label_values_unknown_total 2"),
        "{text}"
    );
    assert!(
        text.contains("sluice_metric_label_changes{reporter=\"source\"} 4"),
        "{text}"
    );
}

#[test]
fn tcp_metrics_get_their_own_changes() {
    let m = metrics_with(&[
        tag(
            "source_x",
            "filter_state.downstream_peer.workload",
            &[],
            &[TCP_OPENED],
        ),
        tag("source_principal", "", &[], &[TCP_OPENED]),
    ]);
    let l = m.tcp_labels(
        &m.words.destination,
        &meta("productpage-v1", "productpage", "v1"),
        &meta("reviews-v2", "reviews", "v2"),
        &ServiceLabels::default(),
        &m.words.mutual_tls,
        None,
    );
    // One label added and one removed, on one metric.
    assert!(
        m.encode()
            .contains("sluice_metric_label_changes{reporter=\"destination\"} 2")
    );
    let tagged = m.tcp_tagged(&l).expect("changed");
    m.tcp_opened.get_or_create(&tagged[0]).inc();
    m.tcp_closed.get_or_create(&tagged[1]).inc();
    let opened = &lines(&m, "istio_tcp_connections_opened_total")[0];
    assert!(opened.contains("source_x=\"productpage-v1\""), "{opened}");
    assert!(!opened.contains("source_principal"), "{opened}");
    let closed = &lines(&m, "istio_tcp_connections_closed_total")[0];
    assert!(!closed.contains("source_x"), "{closed}");
    assert!(closed.contains("source_principal"), "{closed}");
}

#[test]
fn bad_names_and_values_are_refused_naming_the_tag() {
    let e = TagPlans::new(&[tag("bad-name", "request.host", &[COUNT], &[])], bits)
        .expect_err("refused");
    assert!(e.contains("bad-name"), "{e}");
    let e = TagPlans::new(&[tag("host", "request.hostname", &[COUNT], &[])], bits)
        .expect_err("refused");
    assert!(e.contains("host") && e.contains("request.hostname"), "{e}");
    assert!(TagPlans::new(&[], bits).expect("empty").is_none());
}

#[test]
fn no_plans_no_facts() {
    let m = metrics_with(&[tag("response_code", "", &[COUNT], &[])]);
    // A removal reads nothing of the request.
    assert!(m.wants_tag_facts(&m.words.source).is_none());
    let m = metrics_with(&[tag("request_host", "request.host", &[], &[COUNT])]);
    assert!(m.wants_tag_facts(&m.words.source).is_none());
    assert!(m.wants_tag_facts(&m.words.destination).is_some());
    m.set_tags(None);
    assert!(m.tag_plans().is_none());
}

#[test]
fn tags_on_grpc_message_metrics_change_only_their_series() {
    let req_msgs = pb::StandardMetric::GrpcRequestMessages as i32;
    // Removed from the request messages on the server side, added to both
    // message counters there; the request count keeps its labels.
    let m = metrics_with(&[
        tag("source_app", "", &[], &[req_msgs]),
        tag(
            "rpc",
            "'x'",
            &[],
            &[req_msgs, pb::StandardMetric::GrpcResponseMessages as i32],
        ),
    ]);
    let l = request(&m, &m.words.destination, 200);
    m.record_request(&l, None, 1.0, 0, 0);
    m.record_messages(&l, None, (0, 0), (3, 2));
    let text = m.encode();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let req = line("istio_request_messages_total");
    assert!(!req.contains("source_app="), "{req}");
    assert!(req.contains("rpc=\"x\"") && req.ends_with(" 3"), "{req}");
    let resp = line("istio_response_messages_total");
    assert!(resp.contains("source_app=\"productpage\""), "{resp}");
    assert!(resp.contains("rpc=\"x\"") && resp.ends_with(" 2"), "{resp}");
    assert!(!line("istio_requests_total").contains("rpc="));
    assert_eq!(m.tag_plans().map(|p| p.changes(1)), Some(3));
}
