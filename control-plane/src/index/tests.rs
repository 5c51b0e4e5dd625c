use super::*;

const SERVICE: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-0, namespace: default}
spec: {address: 127.0.9.1, labels: {app: reviews}}
"#;

fn vs(timeout: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: reviews, namespace: default}}\nspec:\n  \
         hosts: [reviews.default.svc.cluster.local]\n  http:\n  - timeout: {timeout}s\n    \
         route:\n    - destination: {{host: reviews.default.svc.cluster.local}}\n"
    )
}

fn files(entries: &[(&str, &str)]) -> BTreeMap<String, Result<String, String>> {
    entries
        .iter()
        .map(|(name, text)| (name.to_string(), Ok(text.to_string())))
        .collect()
}

fn ingest(intake: &mut Intake, entries: &[(&str, &str)]) -> MeshIndex {
    intake.ingest(files(entries), Instant::now(), &ControllerMetrics::new())
}

#[test]
fn intake_virtual_service_change_keeps_own_generation_and_endpoint_change_moves_it() {
    let mut intake = Intake::new();
    let first = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &vs(1))]);
    let routed = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &vs(2))]);
    assert_eq!(routed.revision, first.revision + 1);
    assert_eq!(routed.own_generation, first.own_generation);
    let moved = SERVICE.replace("127.0.9.1", "127.0.9.2");
    let endpoint = ingest(&mut intake, &[("svc.yaml", &moved), ("vs.yaml", &vs(2))]);
    assert_eq!(endpoint.revision, routed.revision + 1);
    assert_ne!(endpoint.own_generation, routed.own_generation);
    // Nothing changed: same revision, same generation.
    let again = ingest(&mut intake, &[("svc.yaml", &moved), ("vs.yaml", &vs(2))]);
    assert_eq!(
        (again.revision, again.own_generation),
        (endpoint.revision, endpoint.own_generation)
    );
    // Another intake's indexes never share a generation with this one's.
    let other = ingest(
        &mut Intake::new(),
        &[("svc.yaml", &moved), ("vs.yaml", &vs(2))],
    );
    assert_ne!(other.own_generation, again.own_generation);
}

#[test]
fn intake_unchanged_file_is_not_parsed_again_and_a_changed_one_is() {
    let mut intake = Intake::new();
    let first = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &vs(1))]);
    let second = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &vs(2))]);
    let key = |kind, name: &str| ResourceKey {
        kind,
        namespace: "default".into(),
        name: name.into(),
    };
    let se = key(crate::resource::kind::SERVICE_ENTRY, "reviews");
    let vsk = key(crate::resource::kind::VIRTUAL_SERVICE, "reviews");
    assert!(Arc::ptr_eq(&first.resources[&se], &second.resources[&se]));
    assert!(!Arc::ptr_eq(
        &first.resources[&vsk],
        &second.resources[&vsk]
    ));
    assert_ne!(first.resources[&vsk], second.resources[&vsk]);
}

#[test]
fn intake_cached_invalid_file_is_rejected_again_and_keeps_last_good_version() {
    let mut intake = Intake::new();
    let good = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &vs(1))]);
    assert!(good.rejected.is_empty(), "{:?}", good.rejected);
    let broken = vs(1).replace("timeout: 1s", "timeout: -1s");
    for _ in 0..2 {
        // The second time the broken file comes from the cache.
        let index = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &broken)]);
        assert_eq!(index.rejected.len(), 1, "{:?}", index.rejected);
        assert_eq!(index.rejected[0].file, "vs.yaml");
        assert_eq!(
            index.resources.len(),
            good.resources.len(),
            "last good VS kept"
        );
        assert_eq!(index.revision, good.revision);
    }
}

#[test]
fn intake_catalog_is_shared_on_route_change_and_rebuilt_on_endpoint_change() {
    let mut intake = Intake::new();
    let first = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &vs(1))]);
    let routed = ingest(&mut intake, &[("svc.yaml", SERVICE), ("vs.yaml", &vs(2))]);
    assert!(Arc::ptr_eq(&first.catalog, &routed.catalog));
    let moved = SERVICE.replace("127.0.9.1", "127.0.9.2");
    let endpoint = ingest(&mut intake, &[("svc.yaml", &moved), ("vs.yaml", &vs(2))]);
    assert!(!Arc::ptr_eq(&routed.catalog, &endpoint.catalog));
    let at = |index: &MeshIndex, ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        index.catalog.endpoints_at(&ip).count()
    };
    assert_eq!((at(&routed, "127.0.9.1"), at(&routed, "127.0.9.2")), (1, 0));
    assert_eq!(
        (at(&endpoint, "127.0.9.1"), at(&endpoint, "127.0.9.2")),
        (0, 1)
    );
}

#[test]
fn workload_selector_picks_every_label_in_its_own_namespace_in_resource_order() {
    let mesh = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: all, namespace: default}
spec:
  hosts: [all.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a-match, namespace: default}
spec: {address: 127.0.9.1, labels: {app: reviews, version: v1, extra: x}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b-other-version, namespace: default}
spec: {address: 127.0.9.2, labels: {app: reviews, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: c-other-namespace, namespace: prod}
spec: {address: 127.0.9.3, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: d-match, namespace: default}
spec: {address: 127.0.9.4, labels: {version: v1, app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: e-app-only, namespace: default}
spec: {address: 127.0.9.5, labels: {app: reviews}}
"#;
    let index = ingest(&mut Intake::new(), &[("mesh.yaml", mesh)]);
    let addresses = |fqdn: &str| -> Vec<String> {
        index.catalog.services[fqdn]
            .endpoints
            .iter()
            .map(|e| e.address.clone())
            .collect()
    };
    assert_eq!(
        addresses("reviews.default.svc.cluster.local"),
        ["127.0.9.1", "127.0.9.4"]
    );
    // An empty selector selects every workload of its namespace, and only those.
    assert_eq!(
        addresses("all.default.svc.cluster.local"),
        ["127.0.9.1", "127.0.9.2", "127.0.9.4", "127.0.9.5"]
    );
}

const RULE: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}]
"#;

fn client() -> crate::translate::ProxyIdentity {
    crate::translate::ProxyIdentity {
        id: "client-0.default".into(),
        workload: "client-0".into(),
        namespace: "default".into(),
        service_account: "default".into(),
        labels: BTreeMap::from([("app".to_owned(), "client".to_owned())]),
        ips: vec!["127.0.9.50".parse().unwrap()],
        trust_domain: "cluster.local".into(),
    }
}

/// The clusters of `index`'s outbound half for [`client`], and the half's
/// encoding.
fn clusters_of(index: &MeshIndex) -> (Vec<Arc<crate::translate::SharedCluster>>, bytes::Bytes) {
    let outbound = crate::translate::translate_outbound(index, &client());
    let half = crate::server::half::EncodedHalf::encode(&outbound);
    (outbound.clusters.clone(), half.bytes)
}

#[test]
fn clusters_are_reused_after_a_virtual_service_change_and_rebuilt_after_any_other() {
    let mut intake = Intake::new();
    let base = [("svc.yaml", SERVICE), ("dr.yaml", RULE)];
    let first = ingest(&mut intake, &[base[0], base[1], ("vs.yaml", &vs(1))]);
    let (before, _) = clusters_of(&first);
    assert!(!before.is_empty());

    // Only the VirtualService changed: the very same clusters, and a half
    // byte for byte what a fresh intake makes of the same files.
    let routed_files = [base[0], base[1], ("vs.yaml", &vs(2))];
    let routed = ingest(&mut intake, &routed_files);
    let (after, bytes) = clusters_of(&routed);
    assert_eq!(after.len(), before.len());
    assert!(after.iter().zip(&before).all(|(a, b)| Arc::ptr_eq(a, b)));
    let fresh = ingest(&mut Intake::new(), &routed_files);
    assert_eq!(bytes, clusters_of(&fresh).1);

    // Each kind clusters read, changed alone: built again, and right.
    let rule = RULE.replace("version: v1", "version: v2");
    let moved = SERVICE.replace("127.0.9.1", "127.0.9.2");
    let peer = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
                metadata: {name: default, namespace: default}\nspec: {mtls: {mode: DISABLE}}\n";
    for files in [
        vec![base[0], ("dr.yaml", rule.as_str()), ("vs.yaml", &vs(2))],
        vec![("svc.yaml", moved.as_str()), base[1], ("vs.yaml", &vs(2))],
        vec![base[0], base[1], ("pa.yaml", peer), ("vs.yaml", &vs(2))],
    ] {
        let (previous, _) = clusters_of(&ingest(&mut intake, &routed_files));
        let changed = ingest(&mut intake, &files);
        let (rebuilt, bytes) = clusters_of(&changed);
        assert!(
            rebuilt
                .iter()
                .all(|c| !previous.iter().any(|p| Arc::ptr_eq(c, p))),
            "a cluster was reused across a change to what clusters read"
        );
        assert_eq!(bytes, clusters_of(&ingest(&mut Intake::new(), &files)).1);
    }
}

const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
    metadata: {name: reviews, namespace: default}\nspec: {host: reviews}\n";

const GADGET: &str = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\nspec: {}\n";

fn keys(index: &MeshIndex) -> Vec<String> {
    index.resources.keys().map(ToString::to_string).collect()
}

#[test]
fn intake_foreign_kind_is_refused_but_deletes_in_its_file_still_apply() {
    let mut intake = Intake::new();
    let both = format!("{GADGET}---\n{}---\n{DR}", vs(1));
    let first = ingest(&mut intake, &[("svc.yaml", SERVICE), ("all.yaml", &both)]);
    assert_eq!(first.rejected.len(), 1, "{:?}", first.rejected);
    assert!(
        first.rejected[0]
            .message
            .contains("unsupported kind `Gadget`")
    );
    assert_eq!(first.resources.len(), 4);
    // The VirtualService leaves the file: it is deleted, the Gadget notwithstanding.
    let later = ingest(
        &mut intake,
        &[
            ("svc.yaml", SERVICE),
            ("all.yaml", &format!("{GADGET}---\n{DR}")),
        ],
    );
    assert!(
        !keys(&later).iter().any(|k| k.starts_with("VirtualService")),
        "{:?}",
        keys(&later)
    );
    assert_eq!(later.resources.len(), 3);
}

#[test]
fn intake_unparsable_object_keeps_only_its_own_last_good_version() {
    let mut intake = Intake::new();
    let both = format!("{}---\n{DR}", vs(1));
    let first = ingest(&mut intake, &[("svc.yaml", SERVICE), ("all.yaml", &both)]);
    assert!(first.rejected.is_empty(), "{:?}", first.rejected);
    // The VirtualService gets an unknown field and the DestinationRule is deleted:
    // the last good VirtualService stays, the DestinationRule goes.
    let typo = vs(1).replace("  http:", "  htp: []\n  http:");
    let later = ingest(&mut intake, &[("svc.yaml", SERVICE), ("all.yaml", &typo)]);
    assert_eq!(later.rejected.len(), 1, "{:?}", later.rejected);
    assert_eq!(
        later.rejected[0].object.as_deref(),
        Some("VirtualService default/reviews")
    );
    let k = keys(&later);
    assert!(k.iter().any(|k| k.starts_with("VirtualService")), "{k:?}");
    assert!(!k.iter().any(|k| k.starts_with("DestinationRule")), "{k:?}");
}

#[test]
fn intake_broken_yaml_keeps_everything_its_file_held() {
    let mut intake = Intake::new();
    let both = format!("{}---\n{DR}", vs(1));
    let first = ingest(&mut intake, &[("svc.yaml", SERVICE), ("all.yaml", &both)]);
    let later = ingest(
        &mut intake,
        &[("svc.yaml", SERVICE), ("all.yaml", "kind: [unclosed\n")],
    );
    assert_eq!(later.rejected.len(), 1, "{:?}", later.rejected);
    assert_eq!(later.resources.len(), first.resources.len());
}

#[test]
fn intake_misspelt_kind_of_ours_freezes_its_file() {
    // `Virtualservice` could be the VirtualService that left the file: its
    // file keeps its last good objects, as for any unreadable document.
    let mut intake = Intake::new();
    let both = format!("{}---\n{DR}", vs(1));
    let first = ingest(&mut intake, &[("svc.yaml", SERVICE), ("all.yaml", &both)]);
    let typo = format!(
        "{}---\n{DR}",
        vs(1).replace("kind: VirtualService", "kind: Virtualservice")
    );
    let later = ingest(&mut intake, &[("svc.yaml", SERVICE), ("all.yaml", &typo)]);
    assert_eq!(later.rejected.len(), 1, "{:?}", later.rejected);
    assert_eq!(later.resources.len(), first.resources.len());
    // An Istio kind Sluice does not serve is foreign like any other group's.
    let group =
        "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: g}\nspec: {}\n";
    let later = ingest(
        &mut intake,
        &[
            ("svc.yaml", SERVICE),
            ("all.yaml", &format!("{group}---\n{DR}")),
        ],
    );
    assert!(!keys(&later).iter().any(|k| k.starts_with("VirtualService")));
}
