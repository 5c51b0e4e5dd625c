use super::*;
use sluice_conformance::mesh::store::parse_docs;

#[test]
fn percentile_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&v, 50.0), 50.0);
    assert_eq!(percentile(&v, 99.0), 99.0);
    assert_eq!(percentile(&v, 100.0), 100.0);
    assert_eq!(percentile(&[], 99.0), 0.0);
}

#[test]
fn service_yaml_has_one_service_entry_and_its_workload_entries() {
    let docs = parse_docs(&service_yaml(7, 10, None)).unwrap();
    assert_eq!(docs.len(), 11);
    assert_eq!(docs[0].0.kind, "ServiceEntry");
    assert_eq!(docs[0].0.name, "svc-0007");
    assert!(docs[1..].iter().all(|(k, _)| k.kind == "WorkloadEntry"));
}

#[test]
fn service_yaml_moved_endpoint_changes_only_its_address() {
    let base = service_yaml(3, 10, None);
    let moved = service_yaml(3, 10, Some((4, 9)));
    let diff: Vec<(&str, &str)> = base
        .lines()
        .zip(moved.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(diff.len(), 1, "{diff:?}");
    assert!(diff[0].1.contains("address: \"10.10."), "{diff:?}");
}

#[test]
fn churn_writes_always_change_the_file_they_write() {
    // Six rounds at the full size (100 writes/s for 60 s over 1,000
    // services) and at sizes whose round shares factors with the address
    // cycle. An earlier scheme cycled with the 1,000-write round, so after
    // 10 s every write gave a file its old text back and nothing changed.
    for (services, per) in [
        (1000, 10),
        (995, 5),
        (1990, 10),
        (199, 1),
        (100, 10),
        (7919, 2),
    ] {
        let mut files: std::collections::HashMap<String, String> = (0..services)
            .map(|s| (format!("svc-{s:04}.yaml"), service_yaml(s, per, None)))
            .collect();
        for n in 0..6 * services {
            let (file, text) = churn_write(n, services, per);
            let old = files.insert(file.clone(), text.clone());
            assert_ne!(
                old.as_deref(),
                Some(text.as_str()),
                "{services} services x {per}: write {n} to {file}"
            );
        }
    }
}

#[test]
fn vs_yaml_differs_per_generation() {
    let (a, b) = (vs_yaml(1), vs_yaml(2));
    assert_ne!(a, b);
    assert_eq!(parse_docs(&a).unwrap()[0].0.kind, "VirtualService");
}

#[test]
fn sim_resolve_applies_deltas_to_its_own_config_and_refuses_a_wrong_base() {
    use sluice_api::config::{Cluster, ConfigDelta, ProxyConfig, Snapshot};
    let cluster = |name: &str, port| Cluster {
        name: name.into(),
        port,
        ..Default::default()
    };
    let shared = std::sync::Mutex::new(sim::Shared::default());
    let mut applied = None;
    let full = Snapshot {
        version: "1".into(),
        config: Some(ProxyConfig {
            clusters: vec![cluster("a", 1), cluster("b", 2)],
            ..Default::default()
        }),
        delta: None,
    };
    sim::resolve(full, &mut applied, &shared).unwrap();
    let delta = |version: &str, base: &str| Snapshot {
        version: version.into(),
        config: None,
        delta: Some(ConfigDelta {
            base_version: base.into(),
            clusters: vec![cluster("b", 3)],
            removed_clusters: vec!["a".into()],
            ..Default::default()
        }),
    };
    assert_eq!(
        sim::resolve(delta("3", "2"), &mut applied, &shared).unwrap_err(),
        "delta base 2 but applied 1"
    );
    sim::resolve(delta("2", "1"), &mut applied, &shared).unwrap();
    let applied = applied.unwrap();
    assert_eq!(applied.version, "2");
    assert_eq!(applied.config().clusters, vec![cluster("b", 3)]);
}

#[test]
fn sim_resolve_delta_touching_one_list_matches_apply_and_still_refuses_unknown_removals() {
    use sluice_api::config::{Cluster, ConfigDelta, ProxyConfig, Snapshot, VirtualHost};
    let host = |name: &str, port| VirtualHost {
        name: name.into(),
        port,
        ..Default::default()
    };
    let base = ProxyConfig {
        virtual_hosts: vec![host("a", 1), host("b", 2)],
        clusters: vec![
            Cluster {
                name: "c".into(),
                ..Default::default()
            },
            Cluster {
                name: "d".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let shared = std::sync::Mutex::new(sim::Shared::default());
    let mut applied = None;
    let full = Snapshot {
        version: "1".into(),
        config: Some(base.clone()),
        delta: None,
    };
    sim::resolve(full, &mut applied, &shared).unwrap();
    let d = ConfigDelta {
        base_version: "1".into(),
        virtual_hosts: vec![host("b", 3), host("c", 4)],
        ..Default::default()
    };
    let snap = Snapshot {
        version: "2".into(),
        config: None,
        delta: Some(d.clone()),
    };
    sim::resolve(snap, &mut applied, &shared).unwrap();
    let config = applied.as_ref().unwrap().config();
    assert_eq!(
        config,
        sluice_control_plane::server::delta::apply(&base, &d).unwrap()
    );
    let unknown = Snapshot {
        version: "3".into(),
        config: None,
        delta: Some(ConfigDelta {
            base_version: "2".into(),
            removed_clusters: vec!["zz".into()],
            ..Default::default()
        }),
    };
    assert!(sim::resolve(unknown, &mut applied, &shared).is_err());
    assert_eq!(
        applied.unwrap().config(),
        config,
        "a refused delta changes nothing"
    );
}

#[test]
fn sim_proxies_share_one_outbound_half_and_one_result_per_move() {
    use sluice_api::config::{Cluster, ConfigDelta, ProxyConfig, Snapshot, WorkloadMeta};
    let cluster = |name: &str, port| Cluster {
        name: name.into(),
        port,
        ..Default::default()
    };
    let shared = std::sync::Mutex::new(sim::Shared::default());
    let full = |own: &str| Snapshot {
        version: "1".into(),
        config: Some(ProxyConfig {
            clusters: vec![cluster("a", 1), cluster("b", 2)],
            self_: Some(WorkloadMeta {
                workload: own.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        delta: None,
    };
    let (mut p, mut q) = (None, None);
    sim::resolve(full("p"), &mut p, &shared).unwrap();
    sim::resolve(full("q"), &mut q, &shared).unwrap();
    assert!(
        p.as_ref()
            .unwrap()
            .shares_outbound_with(q.as_ref().unwrap())
    );
    assert_ne!(p.as_ref().unwrap().config(), q.as_ref().unwrap().config());
    let step = Snapshot {
        version: "2".into(),
        config: None,
        delta: Some(ConfigDelta {
            base_version: "1".into(),
            clusters: vec![cluster("c", 3)],
            removed_clusters: vec!["a".into()],
            ..Default::default()
        }),
    };
    sim::resolve(step.clone(), &mut p, &shared).unwrap();
    sim::resolve(step, &mut q, &shared).unwrap();
    let (p, q) = (p.unwrap(), q.unwrap());
    assert!(p.shares_outbound_with(&q), "one result per move");
    assert_eq!(p.config().clusters, vec![cluster("b", 2), cluster("c", 3)]);
    assert_eq!(
        q.config().self_.unwrap().workload,
        "q",
        "own parts stay per proxy"
    );
}

#[test]
fn sim_proxies_share_a_half_whose_maps_decode_in_different_orders() {
    // Proto maps decode into HashMaps with their own random order, so two
    // decodes of the same bytes re-encode differently; sharing must not care.
    use prost::Message as _;
    use sluice_api::config::{Cluster, Endpoint, ProxyConfig, Snapshot};
    let endpoint = |i: u32| Endpoint {
        address: format!("10.0.0.{i}"),
        labels: (0..6)
            .map(|k| (format!("key-{k}"), format!("value-{i}-{k}")))
            .collect(),
        ..Default::default()
    };
    let bytes = ProxyConfig {
        clusters: vec![Cluster {
            name: "c".into(),
            endpoints: (1..=8).map(endpoint).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let shared = std::sync::Mutex::new(sim::Shared::default());
    let proxies: Vec<_> = (0..8)
        .map(|_| {
            let mut applied = None;
            let snap = Snapshot {
                version: "1".into(),
                config: Some(ProxyConfig::decode(bytes.as_slice()).unwrap()),
                delta: None,
            };
            sim::resolve(snap, &mut applied, &shared).unwrap();
            applied.unwrap()
        })
        .collect();
    assert!(proxies.iter().all(|p| p.shares_outbound_with(&proxies[0])));
}

#[test]
fn sim_decode_shared_decodes_equal_delta_bytes_once_and_applies_them_per_proxy() {
    use prost::Message;
    use sluice_api::config::{Cluster, ConfigDelta, ProxyConfig, Snapshot, WorkloadMeta};
    let cluster = |name: &str, port| Cluster {
        name: name.into(),
        port,
        ..Default::default()
    };
    let shared = std::sync::Mutex::new(sim::Shared::default());
    let full = |who: &str| Snapshot {
        version: "1".into(),
        config: Some(ProxyConfig {
            clusters: vec![cluster("a", 1)],
            self_: Some(WorkloadMeta {
                workload: who.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        delta: None,
    };
    let (mut p, mut q) = (None, None);
    for (who, applied) in [("p", &mut p), ("q", &mut q)] {
        let raw = bytes::Bytes::from(full(who).encode_to_vec());
        let decoded = sim::decode_shared(&shared, raw).unwrap();
        assert!(
            matches!(decoded, sim::Decoded::Complete { .. }),
            "a complete config: own parts decoded per proxy, the half once"
        );
        decoded.resolve(applied, &shared).unwrap();
    }
    let step = Snapshot {
        version: "2".into(),
        config: None,
        delta: Some(ConfigDelta {
            base_version: "1".into(),
            clusters: vec![cluster("b", 2)],
            ..Default::default()
        }),
    };
    let raw = bytes::Bytes::from(step.encode_to_vec());
    let first = sim::decode_shared(&shared, raw.clone()).unwrap();
    let second = sim::decode_shared(&shared, raw).unwrap();
    match (&first, &second) {
        (sim::Decoded::Shared(a), sim::Decoded::Shared(b)) => assert!(std::sync::Arc::ptr_eq(a, b)),
        _ => panic!("a delta is decoded once and shared"),
    }
    first.resolve(&mut p, &shared).unwrap();
    second.resolve(&mut q, &shared).unwrap();
    let (p, q) = (p.unwrap(), q.unwrap());
    assert_eq!(p.version, "2");
    assert_eq!(p.config().clusters, vec![cluster("a", 1), cluster("b", 2)]);
    // Each keeps its own parts; the outbound half is one copy.
    assert_eq!(q.config().clusters, p.config().clusters);
    assert_eq!(p.config().self_.unwrap().workload, "p");
    assert_eq!(q.config().self_.unwrap().workload, "q");
    assert!(p.shares_outbound_with(&q));
}

#[test]
fn sim_decode_shared_complete_config_matches_a_full_decode() {
    use prost::Message;
    use sluice_api::config::{
        Cluster, Endpoint, Inbound, ProxyConfig, Snapshot, VirtualHost, WorkloadMeta,
    };
    let config = ProxyConfig {
        virtual_hosts: vec![VirtualHost {
            name: "a:80".into(),
            port: 80,
            ..Default::default()
        }],
        clusters: vec![Cluster {
            name: "outbound|80||a".into(),
            endpoints: vec![Endpoint {
                address: "10.0.0.1".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        inbound: Some(Inbound::default()),
        self_: Some(WorkloadMeta {
            workload: "p".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let snap = Snapshot {
        version: "7".into(),
        config: Some(config.clone()),
        delta: None,
    };
    let shared = std::sync::Mutex::new(sim::Shared::default());
    let raw = bytes::Bytes::from(snap.encode_to_vec());
    let mut applied = None;
    sim::decode_shared(&shared, raw)
        .unwrap()
        .resolve(&mut applied, &shared)
        .unwrap();
    let applied = applied.unwrap();
    assert_eq!(applied.version, "7");
    assert_eq!(applied.config(), config);
}
