use sluice_api::config as pb;

use super::*;

fn cluster(name: &str, port: u32) -> pb::Cluster {
    pb::Cluster {
        name: name.to_owned(),
        port,
        ..Default::default()
    }
}

fn base() -> pb::ProxyConfig {
    pb::ProxyConfig {
        clusters: vec![cluster("a", 1), cluster("b", 2), cluster("c", 3)],
        inbound: Some(pb::Inbound::default()),
        ..Default::default()
    }
}

#[test]
fn apply_replaces_adds_and_removes_by_name_keeping_name_order() {
    let delta = pb::ConfigDelta {
        base_version: "7".to_owned(),
        clusters: vec![cluster("aa", 9), cluster("c", 30)],
        removed_clusters: vec!["b".to_owned()],
        ..Default::default()
    };
    let got = apply("7", &base(), &delta).unwrap();
    assert_eq!(
        got.clusters,
        vec![cluster("a", 1), cluster("aa", 9), cluster("c", 30)]
    );
    assert_eq!(got.inbound, Some(pb::Inbound::default()), "kept when unset");
}

#[test]
fn apply_wrong_base_is_refused_naming_both_versions() {
    let delta = pb::ConfigDelta {
        base_version: "6".to_owned(),
        ..Default::default()
    };
    let err = apply("7", &base(), &delta).unwrap_err();
    assert_eq!(err.to_string(), "delta base 6 but applied 7");
}

#[test]
fn apply_removal_of_unknown_entry_is_refused() {
    let delta = pb::ConfigDelta {
        base_version: "7".to_owned(),
        removed_clusters: vec!["zz".to_owned()],
        ..Default::default()
    };
    let err = apply("7", &base(), &delta).unwrap_err();
    assert_eq!(
        err.to_string(),
        "delta removes cluster \"zz\", which version 7 does not have"
    );
}
