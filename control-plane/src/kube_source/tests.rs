use super::catalog::{
    PodIndex, istio_document, port_protocol, service_entry, slices_by_service, workload_name,
};
use super::status::{Reconciled, Verdict};
use super::watch::istio_resources;
use crate::index::{Intake, Rejection};
use crate::metrics::ControllerMetrics;
use crate::resource::kind_info;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::DynamicObject;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

fn service() -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {
            "clusterIP": "10.96.0.20",
            "clusterIPs": ["10.96.0.20"],
            "selector": {"app": "reviews"},
            "ports": [
                {"name": "http-web", "port": 9080, "targetPort": 8080, "protocol": "TCP"},
                {"name": "api", "port": 9090, "targetPort": "grpc-port", "appProtocol": "grpc"},
                {"name": "metrics", "port": 9100, "targetPort": 9100},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]
        }
    }))
    .unwrap()
}

fn slice(ready: Option<bool>, address: &str, pod: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("reviews-{pod}"), "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "reviews"}},
        "addressType": "IPv4",
        "ports": [
            {"name": "http-web", "port": 8080, "protocol": "TCP"},
            {"name": "api", "port": 7070, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"}
        ],
        "endpoints": [{
            "addresses": [address],
            "conditions": {"ready": ready},
            "targetRef": {"kind": "Pod", "namespace": "shop", "name": pod}
        }]
    }))
    .unwrap()
}

fn pod(name: &str, sidecar: bool) -> Pod {
    let mut containers = vec![json!({"name": "app"})];
    if sidecar {
        containers.push(json!({"name": "sluice-proxy"}));
    }
    serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "shop",
            "labels": {"app": "reviews", "version": "v2", "pod-template-hash": "5d8f9c"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "reviews-v2-5d8f9c", "uid": "u", "controller": true}]
        },
        "spec": {"serviceAccountName": "bookinfo-reviews", "containers": containers}
    }))
    .unwrap()
}

fn render(slices: &[EndpointSlice], pods: &[Pod]) -> serde_json::Value {
    let index: PodIndex<'_> = pods
        .iter()
        .map(|p| {
            let m = &p.metadata;
            (
                (m.namespace.as_deref().unwrap(), m.name.as_deref().unwrap()),
                p,
            )
        })
        .collect();
    let refs: Vec<&EndpointSlice> = slices.iter().collect();
    service_entry(&service(), &refs, &index).expect("rendered")
}

#[test]
fn service_entry_service_with_ready_pod_has_host_ports_and_endpoint() {
    let se = render(&[slice(Some(true), "10.0.0.7", "p1")], &[pod("p1", true)]);
    assert_eq!(se["kind"], "ServiceEntry");
    assert_eq!(
        se["metadata"],
        json!({
            "name": "reviews.svc",
            "namespace": "shop",
            "annotations": {"sluice.io/kubernetes-service": "true"},
        })
    );
    let spec = &se["spec"];
    assert_eq!(spec["hosts"], json!(["reviews.shop.svc.cluster.local"]));
    assert_eq!(spec["addresses"], json!(["10.96.0.20"]));
    assert_eq!(spec["resolution"], "STATIC");
    assert_eq!(spec["location"], "MESH_INTERNAL");
    assert_eq!(
        spec["ports"],
        json!([
            {"number": 9080, "name": "http-web", "protocol": "HTTP", "targetPort": 8080},
            {"number": 9090, "name": "api", "protocol": "GRPC"},
            {"number": 9100, "name": "metrics", "targetPort": 9100}
        ])
    );
    let ep = &spec["endpoints"][0];
    assert_eq!(ep["address"], "10.0.0.7");
    assert_eq!(ep["ports"], json!({"api": 7070, "http-web": 8080}));
    assert_eq!(ep["serviceAccount"], "bookinfo-reviews");
    assert_eq!(ep["labels"]["version"], "v2");
    assert_eq!(ep["labels"]["security.istio.io/tlsMode"], "istio");
    assert_eq!(ep["labels"]["service.istio.io/workload-name"], "reviews-v2");
}

#[test]
fn service_entry_pod_without_sidecar_has_no_tls_mode_label() {
    let se = render(&[slice(None, "10.0.0.8", "p2")], &[pod("p2", false)]);
    let labels = &se["spec"]["endpoints"][0]["labels"];
    assert_eq!(labels["app"], "reviews");
    assert!(
        labels.get("security.istio.io/tlsMode").is_none(),
        "{labels}"
    );
}

#[test]
fn service_entry_unready_endpoint_is_left_out() {
    let se = render(
        &[
            slice(Some(false), "10.0.0.9", "p3"),
            slice(Some(true), "10.0.0.7", "p1"),
        ],
        &[pod("p1", true), pod("p3", true)],
    );
    let endpoints = se["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["address"], "10.0.0.7");
}

#[test]
fn service_entry_external_name_is_not_rendered() {
    let mut svc = service();
    svc.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
    assert!(service_entry(&svc, &[], &BTreeMap::new()).is_none());
}

#[test]
fn service_entry_headless_has_no_addresses_and_unnamed_port_gets_a_name() {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
    }))
    .unwrap();
    let se = service_entry(&svc, &[], &BTreeMap::new()).unwrap();
    assert!(se["spec"].get("addresses").is_none());
    assert!(se["spec"].get("endpoints").is_none());
    assert_eq!(
        se["spec"]["ports"],
        json!([{"number": 5432, "name": "port-5432"}])
    );
}

#[test]
fn port_protocol_app_protocol_wins_over_name() {
    assert_eq!(
        port_protocol(Some("kubernetes.io/h2c"), "tcp-x"),
        Some("HTTP2")
    );
    assert_eq!(port_protocol(Some("grpc"), "http"), Some("GRPC"));
    assert_eq!(port_protocol(Some("custom"), "http2-x"), Some("HTTP2"));
    assert_eq!(port_protocol(None, "redis"), Some("REDIS"));
    assert_eq!(port_protocol(None, "httpx"), None);
    assert_eq!(port_protocol(None, "web"), None);
}

#[test]
fn workload_name_without_owner_is_the_pod_name() {
    let mut p = pod("solo", false);
    p.metadata.owner_references = None;
    assert_eq!(workload_name(&p.metadata).as_deref(), Some("solo"));
}

#[test]
fn service_entry_rendered_document_feeds_the_catalog() {
    let slices = vec![Arc::new(slice(Some(true), "10.0.0.7", "p1"))];
    let by_service = slices_by_service(&slices);
    let refs = &by_service[&("shop".to_string(), "reviews".to_string())];
    let pods = [pod("p1", true)];
    let index: PodIndex<'_> = [(("shop", "p1"), &pods[0])].into_iter().collect();
    let se = service_entry(&service(), refs, &index).unwrap();
    let files = BTreeMap::from([(
        "k8s/Service/shop/reviews".to_string(),
        Ok(serde_yaml::to_string(&se).unwrap()),
    )]);
    let mesh = Intake::new().ingest(files, Instant::now(), &ControllerMetrics::new());
    assert!(mesh.rejected.is_empty(), "{:?}", mesh.rejected);
    let svc = &mesh.catalog.services["reviews.shop.svc.cluster.local"];
    assert_eq!(svc.short_name, "reviews");
    assert!(svc.kubernetes, "marked as a Kubernetes Service");
    let ep = &svc.endpoints[0];
    assert!(ep.has_sidecar());
    assert_eq!(ep.service_account, "bookinfo-reviews");
    assert_eq!(ep.workload, "reviews-v2");
    assert_eq!(ep.target_port(svc.port(9080).unwrap()), 8080);
    assert_eq!(ep.target_port(svc.port(9090).unwrap()), 7070);
}

fn dynamic(spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "reviews", "namespace": "shop", "generation": 3, "uid": "abc",
            "resourceVersion": "42",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "a"}
        },
        "spec": spec,
        "status": {"conditions": []}
    }))
    .unwrap()
}

#[test]
fn istio_document_keeps_spec_and_identity_and_drops_status() {
    let text = istio_document(&dynamic(json!({"hosts": ["reviews"]}))).unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["spec"], json!({"hosts": ["reviews"]}));
    assert_eq!(doc["metadata"]["generation"], 3);
    assert_eq!(doc["metadata"]["annotations"], json!({"team": "a"}));
    assert!(doc.get("status").is_none());
    assert!(doc["metadata"].get("resourceVersion").is_none());
}

#[test]
fn istio_document_invalid_weight_is_rejected_with_field_path() {
    let spec = json!({"hosts": ["reviews"], "http": [{"route": [
        {"destination": {"host": "reviews"}, "weight": -1}]}]});
    let text = istio_document(&dynamic(spec)).unwrap();
    let key = "k8s/VirtualService/shop/reviews".to_string();
    let files = BTreeMap::from([(key.clone(), Ok(text))]);
    let mesh = Intake::new().ingest(files, Instant::now(), &ControllerMetrics::new());
    let verdict = Verdict::from_rejections(mesh.rejected.iter().filter(|r| r.file == key), Some(3));
    assert!(!verdict.accepted);
    let message = verdict.message.unwrap();
    assert!(
        message.contains("spec.http[0].route[0].weight"),
        "{message}"
    );
}

#[test]
fn verdict_patch_keeps_transition_time_until_status_flips() {
    let ar = &istio_resources()[0];
    let ok = Verdict::from_rejections(std::iter::empty(), Some(2));
    let patch = ok.patch(ar, "reviews", None, "2026-01-01T00:00:00Z");
    assert_eq!(patch["apiVersion"], "networking.istio.io/v1");
    assert_eq!(patch["kind"], "VirtualService");
    let status = patch["status"].clone();
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["conditions"][0]["reason"], "Accepted");
    assert!(ok.is_current(Some(&status)));

    let again = ok.patch(ar, "reviews", Some(&status), "2026-02-02T00:00:00Z");
    assert_eq!(
        again["status"]["conditions"][0]["lastTransitionTime"],
        "2026-01-01T00:00:00Z"
    );
    let bad = Verdict::from_rejections(
        [Rejection {
            file: "f".into(),
            object: None,
            message: "spec.hosts: required".into(),
        }]
        .iter(),
        Some(2),
    );
    assert!(!bad.is_current(Some(&status)));
    let flipped = bad.patch(ar, "reviews", Some(&status), "2026-02-02T00:00:00Z");
    let cond = &flipped["status"]["conditions"][0];
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "Invalid");
    assert_eq!(cond["message"], "spec.hosts: required");
    assert_eq!(cond["lastTransitionTime"], "2026-02-02T00:00:00Z");
}

#[test]
fn istio_resources_are_watched_at_the_storage_version() {
    for ar in istio_resources() {
        let info = kind_info(&ar.kind).expect("known kind");
        assert_eq!(ar.group, info.group);
        assert_eq!(ar.version, info.versions[0], "{}", ar.kind);
    }
}

#[test]
fn verdict_older_generation_is_not_current() {
    let ar = &istio_resources()[0];
    let v2 = Verdict::from_rejections(std::iter::empty(), Some(2));
    let status = v2.patch(ar, "reviews", None, "2026-01-01T00:00:00Z")["status"].clone();
    let v3 = Verdict::from_rejections(std::iter::empty(), Some(3));
    assert!(!v3.is_current(Some(&status)));
    assert!(!v3.is_current(None));
}

fn registry_with(ids: &[&str]) -> (crate::sync::SyncRegistry, Vec<u64>) {
    let registry = crate::sync::SyncRegistry::default();
    let conns = ids
        .iter()
        .map(|id| {
            let node = sluice_api::config::Node {
                id: (*id).to_owned(),
                workload: "w".into(),
                namespace: "default".into(),
                service_account: "sa".into(),
                ..Default::default()
            };
            let who = crate::translate::ProxyIdentity::try_from(node).expect("identity");
            registry.connect(&who)
        })
        .collect();
    (registry, conns)
}

#[test]
fn reconciled_without_proxies_is_true_and_rejected_objects_never_are() {
    let (registry, _) = registry_with(&[]);
    let view = registry.view(5);
    let r = Reconciled::judge(true, 5, &view);
    assert!(r.done);
    assert_eq!(r.reason, "Reconciled");
    let r = Reconciled::judge(false, 5, &view);
    assert!(!r.done);
    assert_eq!(r.reason, "NotAccepted");
}

#[test]
fn reconciled_waits_for_every_proxy_then_names_a_refusal() {
    let (registry, conns) = registry_with(&["a.default", "b.default"]);
    registry.acked(conns[0], "7");
    registry.acked(conns[1], "6");
    let pending = Reconciled::judge(true, 7, &registry.view(7));
    assert!(!pending.done);
    assert_eq!(pending.reason, "Pending");
    assert!(pending.message.contains("1 of 2"), "{}", pending.message);

    registry.nacked(conns[1], "7", "bad route");
    let refused = Reconciled::judge(true, 7, &registry.view(7));
    assert_eq!(refused.reason, "Rejected");
    assert!(
        refused.message.contains("b.default") && refused.message.contains("bad route"),
        "{}",
        refused.message
    );
    // A refusal of an older revision says nothing about this object.
    assert_eq!(
        Reconciled::judge(true, 8, &registry.view(8)).reason,
        "Pending"
    );

    registry.acked(conns[1], "8");
    let done = Reconciled::judge(true, 7, &registry.view(8));
    assert!(done.done, "{done:?}");
}

fn running(mut p: Pod, ip: &str, ready: &str) -> Pod {
    p.status = Some(
        serde_json::from_value(json!({
            "phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": ready}]
        }))
        .unwrap(),
    );
    p
}

#[test]
fn pods_become_workload_entries_a_service_entry_selector_picks() {
    let ready = running(pod("p1", true), "10.0.0.7", "True");
    let unready = running(pod("p2", true), "10.0.0.8", "False");
    let pending = pod("p3", true);
    assert!(super::catalog::workload_entry(&unready).is_none());
    assert!(super::catalog::workload_entry(&pending).is_none());
    let we = super::catalog::workload_entry(&ready).unwrap();
    let se = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.internal.example]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 9080}]
  workloadSelector: {labels: {app: reviews, version: v2}}
"#;
    let files = BTreeMap::from([
        (
            "k8s/Pod/shop/p1".to_string(),
            Ok(serde_yaml::to_string(&we).unwrap()),
        ),
        ("k8s/ServiceEntry/shop/api".to_string(), Ok(se.to_string())),
    ]);
    let mesh = Intake::new().ingest(files, Instant::now(), &ControllerMetrics::new());
    assert!(mesh.rejected.is_empty(), "{:?}", mesh.rejected);
    let svc = &mesh.catalog.services["api.internal.example"];
    assert_eq!(svc.endpoints.len(), 1);
    let ep = &svc.endpoints[0];
    assert_eq!(ep.address, "10.0.0.7");
    assert!(ep.has_sidecar());
    assert_eq!(ep.service_account, "bookinfo-reviews");
    assert_eq!(ep.workload, "reviews-v2");
    assert_eq!(ep.target_port(svc.port(80).unwrap()), 9080);
}

fn ingest(files: Vec<(String, String)>) -> crate::index::MeshIndex {
    let files: BTreeMap<String, Result<String, String>> =
        files.into_iter().map(|(k, v)| (k, Ok(v))).collect();
    Intake::new().ingest(files, Instant::now(), &ControllerMetrics::new())
}

#[test]
fn istio_document_drops_the_annotations_of_synthetic_documents() {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {
            "name": "reviews-claim", "namespace": "attacker",
            "annotations": {
                "sluice.io/kubernetes-service": "true",
                "sluice.io/kubernetes-pod": "true",
                "team": "a"
            }
        },
        "spec": {
            "hosts": ["reviews.shop.svc.cluster.local"],
            "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": "10.9.9.9"}]
        }
    }))
    .unwrap();
    let text = istio_document(&object).unwrap();
    let doc: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(doc["metadata"]["annotations"], json!({"team": "a"}));
    let mesh = ingest(vec![(
        "k8s/ServiceEntry/attacker/reviews-claim".into(),
        text,
    )]);
    let svc = &mesh.catalog.services["reviews.shop.svc.cluster.local"];
    assert!(
        !svc.kubernetes,
        "a user's ServiceEntry is no Kubernetes Service"
    );
}

#[test]
fn user_workload_entry_wins_over_a_pods_of_the_same_name() {
    let we = super::catalog::workload_entry(&running(pod("p1", true), "10.0.0.7", "True")).unwrap();
    assert_eq!(we["metadata"]["name"], "pod-p1");
    let user = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
                metadata: {name: pod-p1, namespace: shop}\n\
                spec: {address: 10.1.1.1, labels: {app: mine}}\n";
    let pod_key = super::catalog::pod_file_key("shop", "p1");
    let user_key = super::catalog::file_key("WorkloadEntry", "shop", "pod-p1");
    assert!(pod_key > user_key, "{pod_key} sorts after {user_key}");
    let mesh = ingest(vec![
        (pod_key.clone(), serde_yaml::to_string(&we).unwrap()),
        (user_key, user.into()),
    ]);
    // The second definition is refused: the Pod's, not the user's.
    assert_eq!(mesh.rejected.len(), 1, "{:?}", mesh.rejected);
    assert_eq!(mesh.rejected[0].file, pod_key);
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
              metadata: {name: mine, namespace: shop}\n\
              spec: {hosts: [mine.example], ports: [{number: 80, name: http}],\n\
              resolution: STATIC, workloadSelector: {labels: {app: mine}}}\n";
    let mesh = ingest(vec![
        (pod_key, serde_yaml::to_string(&we).unwrap()),
        (
            super::catalog::file_key("WorkloadEntry", "shop", "pod-p1"),
            user.into(),
        ),
        ("k8s/ServiceEntry/shop/mine".into(), se.into()),
    ]);
    let eps = &mesh.catalog.services["mine.example"].endpoints;
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].address, "10.1.1.1");
}

#[test]
fn pod_whose_workload_entry_name_is_too_long_is_left_out() {
    let longest = "p".repeat(249);
    let p = running(pod(&longest, true), "10.0.0.7", "True");
    assert!(
        super::catalog::workload_entry(&p).is_some(),
        "253 characters"
    );
    let p = running(pod(&"p".repeat(250), true), "10.0.0.7", "True");
    assert!(
        super::catalog::workload_entry(&p).is_none(),
        "254 characters"
    );
}

#[test]
fn workload_name_longer_than_a_label_value_is_not_injected() {
    let deployment = "d".repeat(64);
    let mut p = running(pod("p1", true), "10.0.0.7", "True");
    let owner = &mut p.metadata.owner_references.as_mut().unwrap()[0];
    owner.name = format!("{deployment}-5d8f9c");
    assert_eq!(
        workload_name(&p.metadata).as_deref(),
        Some(deployment.as_str())
    );
    let we = super::catalog::workload_entry(&p).unwrap();
    assert!(
        we["spec"]["labels"]
            .get("service.istio.io/workload-name")
            .is_none(),
        "{we}"
    );
    let se = render(&[slice(Some(true), "10.0.0.7", "p1")], &[p]);
    let ep = &se["spec"]["endpoints"][0];
    assert!(ep["labels"].get("service.istio.io/workload-name").is_none());
    // Both documents stay valid; the workload is named after the entry.
    let mesh = ingest(vec![
        (
            super::catalog::pod_file_key("shop", "p1"),
            serde_yaml::to_string(&we).unwrap(),
        ),
        (
            "k8s/Service/shop/reviews".into(),
            serde_yaml::to_string(&se).unwrap(),
        ),
    ]);
    assert!(mesh.rejected.is_empty(), "{:?}", mesh.rejected);
    let svc = &mesh.catalog.services["reviews.shop.svc.cluster.local"];
    assert_eq!(svc.endpoints[0].workload, "reviews.svc-0");
    // At 63 characters it still is.
    let mut p = running(pod("p1", true), "10.0.0.7", "True");
    let owner = &mut p.metadata.owner_references.as_mut().unwrap()[0];
    owner.name = format!("{}-5d8f9c", "d".repeat(63));
    let we = super::catalog::workload_entry(&p).unwrap();
    assert_eq!(
        we["spec"]["labels"]["service.istio.io/workload-name"],
        "d".repeat(63)
    );
}

#[test]
fn rendered_documents_are_rendered_again_only_when_their_version_changes() {
    let mut cache = super::Rendered::<String>::default();
    let renders = std::cell::Cell::new(0);
    let doc = || {
        renders.set(renders.get() + 1);
        Some(json!({"kind": "WorkloadEntry"}))
    };
    let first = cache.get("shop", "p1", Some("1".into()), doc);
    assert!(matches!(first, Some(Ok(ref t)) if t.contains("WorkloadEntry")));
    assert_eq!(cache.get("shop", "p1", Some("1".into()), doc), first);
    assert_eq!(renders.get(), 1, "same resourceVersion: cached");
    cache.get("shop", "p1", Some("2".into()), doc);
    assert_eq!(renders.get(), 2, "changed: rendered again");
    // An object standing for no document is cached too.
    assert_eq!(cache.get("shop", "p2", Some("7".into()), || None), None);
    assert_eq!(cache.get("shop", "p2", Some("7".into()), doc), None);
    assert_eq!(renders.get(), 2);
    // Without a version: always rendered.
    cache.get("shop", "p3", None, doc);
    cache.get("shop", "p3", None, doc);
    assert_eq!(renders.get(), 4);
    assert_eq!(cache.len(), 2);
    cache.retain(&[("shop", "p1")].into_iter().collect());
    assert_eq!(cache.len(), 1, "gone pods are forgotten");
}

#[test]
fn service_entry_versions_change_with_the_service_its_slices_and_their_pods() {
    let versioned = |mut p: Pod, v: &str| {
        p.metadata.resource_version = Some(v.into());
        p
    };
    let mut svc = service();
    svc.metadata.resource_version = Some("10".into());
    let mut s = slice(Some(true), "10.0.0.7", "p1");
    s.metadata.resource_version = Some("20".into());
    let versions = |svc: &Service, s: &EndpointSlice, pods: &[Pod]| {
        let index: PodIndex<'_> = pods.iter().map(|p| (("shop", "p1"), p)).collect();
        super::catalog::service_entry_versions(svc, &[s], &index)
    };
    let base = versions(&svc, &s, &[versioned(pod("p1", true), "30")]);
    assert!(base.is_some());
    assert_eq!(
        versions(&svc, &s, &[versioned(pod("p1", true), "30")]),
        base
    );
    assert_ne!(
        versions(&svc, &s, &[versioned(pod("p1", true), "31")]),
        base,
        "pod changed"
    );
    assert_ne!(versions(&svc, &s, &[]), base, "pod gone");
    let mut s2 = s.clone();
    s2.metadata.resource_version = Some("21".into());
    assert_ne!(
        versions(&svc, &s2, &[versioned(pod("p1", true), "30")]),
        base,
        "slice changed"
    );
    let mut svc2 = svc.clone();
    svc2.metadata.resource_version = Some("11".into());
    assert_ne!(
        versions(&svc2, &s, &[versioned(pod("p1", true), "30")]),
        base,
        "service changed"
    );
    assert_eq!(versions(&svc, &s, &[pod("p1", true)]), None, "no version");
}
