use super::*;
use crate::resource::parse_documents;
use crate::translate::translate;

const MESH: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 10000, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1-0, namespace: default}
spec: {address: 127.0.9.1, labels: {app: reviews, version: v1}}
"#;

fn index(revision: u64, extra: &str) -> MeshIndex {
    let text = format!("{MESH}\n---\n{extra}");
    let resources = parse_documents(&text, "default")
        .into_iter()
        .map(|r| r.expect("test YAML parses"));
    MeshIndex::from_resources(revision, resources)
}

fn proxy(id: &str, ip: &str) -> ProxyIdentity {
    ProxyIdentity {
        id: id.into(),
        workload: id.into(),
        namespace: "default".into(),
        service_account: "default".into(),
        labels: [("app".to_string(), id.to_string())].into_iter().collect(),
        ips: vec![ip.parse().expect("ip")],
        trust_domain: "cluster.local".into(),
    }
}

const WE_V2: &str = r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2-0, namespace: default}
spec: {address: 127.0.9.2, labels: {app: reviews, version: v2}}
"#;

#[test]
fn sharing_alike_proxies_hold_one_outbound_half_in_name_order() {
    let sharing = Sharing::default();
    let idx = index(1, "");
    let a = sharing.view(&idx, &proxy("a", "127.0.9.1"));
    let b = sharing.view(&idx, &proxy("b", "127.0.9.8"));
    assert!(Arc::ptr_eq(&a.half, &b.half));
    assert_ne!(
        a.own.inbound, b.own.inbound,
        "127.0.9.1 serves reviews, .8 nothing"
    );
    let half = a.half.decode();
    let names: Vec<_> = half.virtual_hosts.iter().map(|v| &v.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Together the parts are exactly translation's config, reordered.
    let mut expected = translate(&idx, &proxy("a", "127.0.9.1"));
    delta::order_by_name(&mut expected);
    assert_eq!(a.complete(), expected);
}

#[test]
fn sharing_delta_is_computed_once_per_pair_and_applies_to_the_base() {
    let sharing = Sharing::default();
    let (old, new) = (index(1, ""), index(2, WE_V2));
    let (pa, pb_) = (proxy("a", "127.0.9.1"), proxy("b", "127.0.9.8"));
    let (a1, b1) = (sharing.view(&old, &pa), sharing.view(&old, &pb_));
    let (a2, b2) = (sharing.view(&new, &pa), sharing.view(&new, &pb_));
    let da = sharing.delta(&a1.base(), &a2, "1").expect("a delta");
    let db = sharing.delta(&b1.base(), &b2, "1").expect("a delta");
    assert_eq!(da.base_version, "1");
    // reviews' two clusters (one per port) gained an endpoint; nothing else is sent.
    assert_eq!(da.clusters.len(), 2, "{da:?}");
    assert!(da.virtual_hosts.is_empty() && da.inbound.is_none() && da.self_.is_none());
    assert_eq!(da.clusters, db.clusters);
    let key = (
        Arc::as_ptr(&a1.half.digest) as usize,
        Arc::as_ptr(&a2.half.digest) as usize,
    );
    assert_eq!(sharing.cached_deltas(), vec![key], "one pair, one delta");
    assert_eq!(delta::apply(&a1.complete(), &da).unwrap(), a2.complete());
}

/// Splits a gRPC message into its prefix's length and the message bytes.
fn unframe(message: &[u8]) -> (usize, &[u8]) {
    assert_eq!(message[0], 0, "uncompressed");
    let len = u32::from_be_bytes(message[1..5].try_into().unwrap()) as usize;
    (len, &message[5..])
}

#[test]
fn complete_frame_with_and_without_inbound_ports_equals_translated_snapshot_bytes() {
    use prost::Message;
    let sharing = Sharing::default();
    let idx = index(7, "");
    // 127.0.9.1 serves reviews (inbound ports); .8 serves nothing.
    for (who, has_ports) in [
        (proxy("a", "127.0.9.1"), true),
        (proxy("b", "127.0.9.8"), false),
    ] {
        let view = sharing.view(&idx, &who);
        let sent = frame::complete(
            "7",
            &view.half.bytes,
            view.own.inbound.as_ref(),
            view.own.self_.as_ref(),
            view.own.telemetry.as_ref(),
            view.own.outbound.as_ref(),
        )
        .unwrap();
        let mut config = translate(&idx, &who);
        delta::order_by_name(&mut config);
        let inbound = config.inbound.as_ref().expect("translation sets inbound");
        assert_eq!(!inbound.ports.is_empty(), has_ports, "{inbound:?}");
        let expected = sluice_api::config::Snapshot {
            version: "7".into(),
            config: Some(config),
            delta: None,
        };
        let bytes = sent.to_vec();
        let (len, message) = unframe(&bytes);
        assert_eq!(len, message.len());
        assert_eq!(len, sent.message_len());
        assert_eq!(message, expected.encode_to_vec().as_slice(), "{}", who.id);
        assert_eq!(
            sluice_api::config::Snapshot::decode(message).unwrap(),
            expected
        );
    }
}

#[test]
fn complete_frame_alike_proxies_share_one_outbound_buffer() {
    let sharing = Sharing::default();
    let idx = index(1, "");
    let a = sharing.view(&idx, &proxy("a", "127.0.9.1"));
    let b = sharing.view(&idx, &proxy("b", "127.0.9.8"));
    let chunks = |v: &ProxyView| {
        frame::complete(
            "1",
            &v.half.bytes,
            v.own.inbound.as_ref(),
            v.own.self_.as_ref(),
            v.own.telemetry.as_ref(),
            v.own.outbound.as_ref(),
        )
        .unwrap()
        .into_chunks()
    };
    let (ca, cb) = (chunks(&a), chunks(&b));
    // [prefix and version, outbound half, own fields]
    assert!(!ca[1].is_empty());
    assert_eq!(
        ca[1].as_ptr(),
        cb[1].as_ptr(),
        "the same memory, not a copy"
    );
    assert_eq!(ca[1].as_ptr(), a.half.bytes.as_ptr());
}

fn hello(id: &str, ip: &str) -> sluice_api::config::ProxyMessage {
    let node = sluice_api::config::Node {
        id: id.into(),
        namespace: "default".into(),
        labels: [("app".to_string(), id.to_string())].into_iter().collect(),
        ips: vec![ip.into()],
        ..sluice_api::config::Node::default()
    };
    sluice_api::config::ProxyMessage {
        kind: Some(proxy_message::Kind::Hello(node)),
    }
}

#[tokio::test]
async fn stream_over_a_socket_sends_translated_config_then_delta_and_refuses_no_hello() {
    use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
    use sluice_api::config::{Ack, ProxyMessage, Snapshot};
    use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
    let (index_tx, index_rx) = watch::channel(Arc::new(index(3, "")));
    let metrics = Arc::new(crate::metrics::ControllerMetrics::new());
    let server = ConfigServer::new(index_rx, Arc::new(SyncRegistry::default()), metrics);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = ConfigDiscoveryClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // Refused before any snapshot: a trailers-only response with the status.
    let (tx, rx) = mpsc::channel(4);
    let ack = |version: &str| ProxyMessage {
        kind: Some(proxy_message::Kind::Ack(Ack {
            version: version.into(),
        })),
    };
    tx.send(ack("1")).await.unwrap();
    let refused = client.stream(ReceiverStream::new(rx)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let (tx, rx) = mpsc::channel(4);
    tx.send(hello("a", "127.0.9.1")).await.unwrap();
    let mut snapshots = client
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = snapshots.message().await.unwrap().unwrap();
    let mut config = translate(&index(3, ""), &proxy("a", "127.0.9.1"));
    delta::order_by_name(&mut config);
    let expected = Snapshot {
        version: "3".into(),
        config: Some(config.clone()),
        delta: None,
    };
    assert_eq!(first, expected);

    tx.send(ack("3")).await.unwrap();
    index_tx.send(Arc::new(index(4, WE_V2))).unwrap();
    let second = snapshots.message().await.unwrap().unwrap();
    let d = second.delta.expect("a delta after the ACK");
    assert_eq!(
        (second.version.as_str(), d.base_version.as_str()),
        ("4", "3")
    );
    let mut next = translate(&index(4, WE_V2), &proxy("a", "127.0.9.1"));
    delta::order_by_name(&mut next);
    assert_eq!(delta::apply(&config, &d).unwrap(), next);

    // The proxy hangs up: the server ends the stream with OK.
    drop(tx);
    assert!(snapshots.message().await.unwrap().is_none());
}

fn vs(timeout: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: reviews, namespace: default}}\nspec:\n  \
         hosts: [reviews.default.svc.cluster.local]\n  http:\n  - timeout: {timeout}s\n    \
         route:\n    - destination: {{host: reviews.default.svc.cluster.local}}\n"
    )
}

/// `delta_frame` from `base` (at `old`) to `next` (at `new`): the snapshot
/// decoded, and the buffers it is sent as.
fn sent_delta(
    sharing: &Sharing,
    (old, base): (&MeshIndex, &ProxyView),
    (new, next): (&MeshIndex, &ProxyView),
) -> (sluice_api::config::Snapshot, Vec<bytes::Bytes>) {
    use prost::Message;
    let sent = sharing
        .delta_frame((old.revision, &base.base()), (new.revision, next))
        .unwrap()
        .expect("a delta");
    let bytes = sent.to_vec();
    let (_, message) = unframe(&bytes);
    let snapshot = sluice_api::config::Snapshot::decode(message).unwrap();
    (snapshot, sent.into_chunks())
}

/// An index as the config-dir intake builds it (with own generations).
fn ingested(intake: &mut crate::index::Intake, mesh: &str, extra: &str) -> MeshIndex {
    let files = [("mesh.yaml", mesh), ("extra.yaml", extra)]
        .into_iter()
        .map(|(n, t)| (n.to_string(), Ok(t.to_string())))
        .collect();
    let metrics = crate::metrics::ControllerMetrics::new();
    intake.ingest(files, std::time::Instant::now(), &metrics)
}

fn translated(index: &MeshIndex, who: &ProxyIdentity) -> sluice_api::config::ProxyConfig {
    let mut config = translate(index, who);
    delta::order_by_name(&mut config);
    config
}

#[test]
fn delta_frame_route_change_reuses_own_parts_and_shares_one_encoding() {
    let mut intake = crate::index::Intake::new();
    let (old, new) = (
        ingested(&mut intake, MESH, &vs(1)),
        ingested(&mut intake, MESH, &vs(2)),
    );
    let sharing = Sharing::default();
    let proxies = [proxy("a", "127.0.9.1"), proxy("b", "127.0.9.8")];
    // Every proxy has its view of the old revision before the new one comes.
    let bases: Vec<_> = proxies.iter().map(|p| sharing.view(&old, p)).collect();
    let mut frames = Vec::new();
    for (who, base) in proxies.iter().zip(&bases) {
        let next = sharing.view_after(&new, who, Some(&base.base()));
        assert!(
            Arc::ptr_eq(&base.own, &next.own),
            "a route change keeps own parts"
        );
        let (snapshot, chunks) = sent_delta(&sharing, (&old, base), (&new, &next));
        assert_eq!(snapshot.version, new.revision.to_string());
        let d = snapshot.delta.expect("a delta");
        assert_eq!(d.base_version, old.revision.to_string());
        assert!(d.inbound.is_none() && d.self_.is_none() && d.telemetry.is_none());
        assert_eq!(d.virtual_hosts.len(), 1, "{d:?}");
        let applied = delta::apply(&translated(&old, who), &d).unwrap();
        assert_eq!(applied, translated(&new, who), "{}", who.id);
        frames.push(chunks);
    }
    assert_eq!(frames[0][0].as_ptr(), frames[1][0].as_ptr(), "one encoding");
}

#[test]
fn delta_frame_endpoint_change_translates_own_parts_again() {
    let mut intake = crate::index::Intake::new();
    let old = ingested(&mut intake, MESH, &vs(1));
    // reviews-v1-0 moves off 127.0.9.1: proxy a no longer serves reviews.
    let moved = MESH.replace("127.0.9.1", "127.0.9.3");
    let new = ingested(&mut intake, &moved, &vs(1));
    assert_ne!(old.own_generation, new.own_generation);
    let sharing = Sharing::default();
    let who = proxy("a", "127.0.9.1");
    let base = sharing.view(&old, &who);
    let next = sharing.view_after(&new, &who, Some(&base.base()));
    assert!(!Arc::ptr_eq(&base.own, &next.own));
    let d = sent_delta(&sharing, (&old, &base), (&new, &next))
        .0
        .delta
        .expect("a delta");
    let inbound = d.inbound.as_ref().expect("the inbound side changed");
    assert!(inbound.ports.is_empty(), "{inbound:?}");
    let applied = delta::apply(&translated(&old, &who), &d).unwrap();
    assert_eq!(applied, translated(&new, &who));
}

#[test]
fn delta_frame_endpoint_change_elsewhere_keeps_own_parts_and_shares_one_encoding() {
    let mut intake = crate::index::Intake::new();
    let old = ingested(&mut intake, MESH, &vs(1));
    // A second reviews endpoint: an own-part input changes (the index moves
    // its own generation), yet neither proxy below serves reviews.
    let new = ingested(&mut intake, &format!("{MESH}\n---\n{WE_V2}"), &vs(1));
    assert_ne!(old.own_generation, new.own_generation);
    let sharing = Sharing::default();
    let proxies = [proxy("a", "127.0.9.7"), proxy("b", "127.0.9.8")];
    let bases: Vec<_> = proxies.iter().map(|p| sharing.view(&old, p)).collect();
    let mut frames = Vec::new();
    for (who, base) in proxies.iter().zip(&bases) {
        let next = sharing.view_after(&new, who, Some(&base.base()));
        assert!(
            Arc::ptr_eq(&base.own, &next.own),
            "{}: same own parts",
            who.id
        );
        // Found current at the new generation: the next revision that does
        // not touch own-part inputs reuses them without translating.
        assert_eq!(next.own_generation, new.own_generation);
        let (snapshot, chunks) = sent_delta(&sharing, (&old, base), (&new, &next));
        let d = snapshot.delta.expect("a delta");
        assert!(d.inbound.is_none() && d.self_.is_none() && d.telemetry.is_none());
        assert!(
            !d.clusters.is_empty(),
            "the reviews cluster gained an endpoint"
        );
        let applied = delta::apply(&translated(&old, who), &d).unwrap();
        assert_eq!(applied, translated(&new, who), "{}", who.id);
        frames.push(chunks);
    }
    assert_eq!(frames[0][0].as_ptr(), frames[1][0].as_ptr(), "one encoding");
}

#[test]
fn delta_frame_own_change_shares_the_outbound_changes_bytes() {
    let mut intake = crate::index::Intake::new();
    let old = ingested(&mut intake, MESH, &vs(1));
    // reviews-v1-0 moves from proxy a's address to proxy b's: both proxies'
    // own parts change, and so does the reviews cluster they both route to.
    let moved = MESH.replace("127.0.9.1", "127.0.9.8");
    let new = ingested(&mut intake, &moved, &vs(1));
    let sharing = Sharing::default();
    let proxies = [proxy("a", "127.0.9.1"), proxy("b", "127.0.9.8")];
    let bases: Vec<_> = proxies.iter().map(|p| sharing.view(&old, p)).collect();
    let mut outbound_chunks = Vec::new();
    for (who, base) in proxies.iter().zip(&bases) {
        let next = sharing.view_after(&new, who, Some(&base.base()));
        assert!(!Arc::ptr_eq(&base.own, &next.own), "{}", who.id);
        let (snapshot, chunks) = sent_delta(&sharing, (&old, base), (&new, &next));
        let d = snapshot.delta.clone().expect("a delta");
        assert_eq!(d.base_version, old.revision.to_string());
        assert!(d.inbound.is_some(), "{}: inbound changed", who.id);
        let applied = delta::apply(&translated(&old, who), &d).unwrap();
        assert_eq!(applied, translated(&new, who), "{}", who.id);
        // head, base version, outbound changes, own fields
        assert_eq!(chunks.len(), 4);
        outbound_chunks.push(chunks[2].clone());
    }
    assert!(!outbound_chunks[0].is_empty());
    assert_eq!(
        outbound_chunks[0].as_ptr(),
        outbound_chunks[1].as_ptr(),
        "the outbound changes are encoded once"
    );
}

/// `n` ServiceEntries named `<prefix>-<i>`, each with one endpoint.
fn many_services(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
                 metadata: {{name: {prefix}-{i}, namespace: default}}\nspec:\n  \
                 hosts: [{prefix}-{i}.default.svc.cluster.local]\n  resolution: STATIC\n  \
                 ports: [{{number: 8080, name: http, protocol: HTTP}}]\n  \
                 endpoints: [{{address: 10.1.{}.{}}}]\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect()
}

#[tokio::test]
async fn stream_far_behind_gets_a_complete_config_instead_of_a_larger_delta() {
    use sluice_api::config::config_discovery_client::ConfigDiscoveryClient;
    use sluice_api::config::{Ack, ProxyMessage};
    use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
    let (old, renamed) = (many_services("old", 400), many_services("new", 400));
    let (index_tx, index_rx) = watch::channel(Arc::new(index(1, &old)));
    let metrics = Arc::new(crate::metrics::ControllerMetrics::new());
    let server = ConfigServer::new(index_rx, Arc::new(SyncRegistry::default()), metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = ConfigDiscoveryClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(4);
    tx.send(hello("a", "127.0.9.1")).await.unwrap();
    let mut snapshots = client
        .stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let ack = |version: &str| ProxyMessage {
        kind: Some(proxy_message::Kind::Ack(Ack {
            version: version.into(),
        })),
    };
    let first = snapshots.message().await.unwrap().unwrap();
    let size = first
        .config
        .as_ref()
        .map(prost::Message::encoded_len)
        .unwrap();
    assert!(size > 2 * super::shared::LARGE_DELTA, "{size} bytes");
    tx.send(ack("1")).await.unwrap();

    // One service more: a small delta.
    let one_more = format!("{old}{}", many_services("extra", 1));
    index_tx.send(Arc::new(index(2, &one_more))).unwrap();
    let second = snapshots.message().await.unwrap().unwrap();
    assert!(second.delta.is_some() && second.config.is_none());
    assert_eq!(metrics.large_delta_fallbacks.get(), 0);
    tx.send(ack("2")).await.unwrap();

    // Every service renamed: the delta would carry the whole half and more.
    index_tx.send(Arc::new(index(3, &renamed))).unwrap();
    let third = snapshots.message().await.unwrap().unwrap();
    let mut expected = translate(&index(3, &renamed), &proxy("a", "127.0.9.1"));
    delta::order_by_name(&mut expected);
    assert_eq!(third.version, "3");
    assert!(third.delta.is_none(), "a complete config, not a delta");
    assert_eq!(third.config, Some(expected));
    assert_eq!(metrics.large_delta_fallbacks.get(), 1);
}
