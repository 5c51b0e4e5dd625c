use super::*;

fn vh(name: &str, port: u32) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.into(),
        port,
        ..Default::default()
    }
}

fn cluster(name: &str, endpoints: usize) -> pb::Cluster {
    pb::Cluster {
        name: name.into(),
        endpoints: (0..endpoints)
            .map(|i| pb::Endpoint {
                address: format!("10.0.0.{i}"),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn tcp(name: &str) -> pb::TcpService {
    pb::TcpService {
        name: name.into(),
        ..Default::default()
    }
}

fn meta(workload: &str) -> pb::WorkloadMeta {
    pb::WorkloadMeta {
        workload: workload.into(),
        ..Default::default()
    }
}

fn config(vhs: &[(&str, u32)], clusters: &[(&str, usize)], tcps: &[&str]) -> pb::ProxyConfig {
    let mut c = pb::ProxyConfig {
        virtual_hosts: vhs.iter().map(|(n, p)| vh(n, *p)).collect(),
        clusters: clusters.iter().map(|(n, e)| cluster(n, *e)).collect(),
        tcp_services: tcps.iter().map(|n| tcp(n)).collect(),
        inbound: Some(pb::Inbound::default()),
        self_: Some(meta("web")),
        telemetry: None,
        outbound: None,
    };
    order_by_name(&mut c);
    c
}

#[test]
fn diff_then_apply_reproduces_the_new_config_with_changes_additions_and_removals() {
    let a = config(
        &[("b:80", 80), ("a:80", 80)],
        &[("c1", 1), ("c2", 2), ("c3", 3)],
        &["t1", "t2"],
    );
    let mut b = config(
        &[("a:80", 81), ("z:80", 80)],
        &[("c0", 1), ("c2", 5), ("c3", 3)],
        &["t2"],
    );
    b.self_ = Some(meta("web-v2"));
    b.outbound = Some(pb::Outbound {
        traffic_policy: pb::OutboundTrafficPolicy::RegistryOnly as i32,
        path_normalization: pb::PathNormalization::MergeSlashes as i32,
    });
    let d = diff(&a, &b);
    assert_eq!(
        d.virtual_hosts
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["a:80", "z:80"]
    );
    assert_eq!(d.removed_virtual_hosts, ["b:80"]);
    assert_eq!(
        d.clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["c0", "c2"],
        "c3 is unchanged and not sent"
    );
    assert_eq!(d.removed_clusters, ["c1"]);
    assert_eq!(d.removed_tcp_services, ["t1"]);
    assert!(d.tcp_services.is_empty());
    assert!(d.inbound.is_none(), "unchanged inbound is not sent");
    assert_eq!(d.self_, Some(meta("web-v2")));
    assert_eq!(d.outbound, b.outbound);
    assert_eq!(apply(&a, &d).unwrap(), b);
}

#[test]
fn diff_of_reordered_equal_lists_is_empty_and_apply_orders_by_name() {
    let a = config(&[("a:80", 80), ("b:80", 80)], &[("c1", 1), ("c2", 1)], &[]);
    let mut shuffled = a.clone();
    shuffled.virtual_hosts.reverse();
    shuffled.clusters.reverse();
    let d = diff(&a, &shuffled);
    assert!(is_empty(&d), "{d:?}");
    // Applied to an unordered base, the result is in name order again.
    assert_eq!(apply(&shuffled, &d).unwrap(), a);
}

#[test]
fn diff_of_identical_configs_is_empty() {
    let a = config(&[("a:80", 80)], &[("c1", 3)], &["t"]);
    assert!(is_empty(&diff(&a, &a.clone())));
    assert_eq!(apply(&a, &diff(&a, &a)).unwrap(), a);
}

#[test]
fn diff_to_empty_removes_everything() {
    let a = config(&[("a:80", 80)], &[("c1", 3)], &["t"]);
    let b = config(&[], &[], &[]);
    let d = diff(&a, &b);
    assert_eq!(d.removed_virtual_hosts, ["a:80"]);
    assert_eq!(d.removed_clusters, ["c1"]);
    assert_eq!(d.removed_tcp_services, ["t"]);
    assert_eq!(apply(&a, &d).unwrap(), b);
}

#[test]
fn apply_removal_unknown_to_the_base_is_refused() {
    let a = config(&[], &[("c1", 1)], &[]);
    let d = pb::ConfigDelta {
        removed_clusters: vec!["nope".into()],
        ..Default::default()
    };
    assert_eq!(
        apply(&a, &d),
        Err(InvalidDelta::UnknownRemoval {
            kind: "cluster",
            name: "nope".into()
        })
    );
}

#[test]
fn apply_in_place_with_a_bad_removal_leaves_the_config_unchanged() {
    let mut a = config(&[("a:80", 80)], &[("c1", 1)], &[]);
    let before = a.clone();
    let d = pb::ConfigDelta {
        virtual_hosts: vec![vh("b:80", 80)],
        clusters: vec![cluster("c2", 1)],
        removed_clusters: vec!["nope".into()],
        ..Default::default()
    };
    assert!(apply_in_place(&mut a, &d).is_err());
    assert_eq!(a, before);
}
