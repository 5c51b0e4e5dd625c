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
    assert!(Arc::ptr_eq(&a.outbound, &b.outbound));
    assert_ne!(a.inbound, b.inbound, "127.0.9.1 serves reviews, .8 nothing");
    let names: Vec<_> = a.outbound.virtual_hosts.iter().map(|v| &v.name).collect();
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
    let da = sharing.delta(&a1, &a2, "1");
    let db = sharing.delta(&b1, &b2, "1");
    assert_eq!(da.base_version, "1");
    // reviews' two clusters (one per port) gained an endpoint; nothing else is sent.
    assert_eq!(da.clusters.len(), 2, "{da:?}");
    assert!(da.virtual_hosts.is_empty() && da.inbound.is_none() && da.self_.is_none());
    assert_eq!(da.clusters, db.clusters);
    let key = (
        Arc::as_ptr(&a1.outbound) as usize,
        Arc::as_ptr(&a2.outbound) as usize,
    );
    assert_eq!(sharing.cached_deltas(), vec![key], "one pair, one delta");
    assert_eq!(delta::apply(&a1.complete(), &da).unwrap(), a2.complete());
}
