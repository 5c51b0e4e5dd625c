use super::*;

fn unframed(sent: &EncodedSnapshot) -> Vec<u8> {
    let bytes = sent.to_vec();
    assert_eq!(bytes[0], 0, "uncompressed");
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    assert_eq!(len, bytes.len() - PREFIX);
    assert_eq!(len, sent.message_len());
    bytes[PREFIX..].to_vec()
}

fn outbound() -> pb::ProxyConfig {
    pb::ProxyConfig {
        clusters: vec![pb::Cluster {
            name: "outbound|9080||reviews.default.svc.cluster.local".into(),
            ..pb::Cluster::default()
        }],
        ..pb::ProxyConfig::default()
    }
}

#[test]
fn whole_delta_is_prefixed_prost_encoding() {
    let snapshot = pb::Snapshot {
        version: "12".into(),
        config: None,
        delta: Some(pb::ConfigDelta {
            base_version: "11".into(),
            removed_clusters: vec!["gone".into()],
            ..pb::ConfigDelta::default()
        }),
    };
    let sent = whole(&snapshot).unwrap();
    assert_eq!(unframed(&sent), snapshot.encode_to_vec());
}

#[test]
fn complete_without_own_fields_or_version_matches_prost() {
    let shared = outbound_bytes(&outbound());
    for version in ["", "3"] {
        let sent = complete(version, &shared, None, None, None, None).unwrap();
        let expected = pb::Snapshot {
            version: version.into(),
            config: Some(outbound()),
            delta: None,
        };
        assert_eq!(
            unframed(&sent),
            expected.encode_to_vec(),
            "version {version:?}"
        );
    }
}

#[test]
fn complete_with_empty_outbound_and_own_fields_matches_prost() {
    let inbound = pb::Inbound::default();
    let me = pb::WorkloadMeta {
        workload: "a".into(),
        ..pb::WorkloadMeta::default()
    };
    let empty = outbound_bytes(&pb::ProxyConfig::default());
    let sent = complete("1", &empty, Some(&inbound), Some(&me), None, None).unwrap();
    let expected = pb::Snapshot {
        version: "1".into(),
        config: Some(pb::ProxyConfig {
            inbound: Some(inbound),
            self_: Some(me),
            ..pb::ProxyConfig::default()
        }),
        delta: None,
    };
    assert_eq!(unframed(&sent), expected.encode_to_vec());
}

#[test]
fn delta_from_shared_and_own_parts_matches_prost() {
    let changes = pb::ConfigDelta {
        clusters: outbound().clusters,
        removed_virtual_hosts: vec!["gone:80".into()],
        ..pb::ConfigDelta::default()
    };
    let shared = Bytes::from(changes.encode_to_vec());
    let own = pb::ConfigDelta {
        inbound: Some(pb::Inbound::default()),
        self_: Some(pb::WorkloadMeta {
            workload: "a".into(),
            ..pb::WorkloadMeta::default()
        }),
        ..pb::ConfigDelta::default()
    };
    for (version, base, outbound, own) in [
        ("7", "6", shared.clone(), own.clone()),
        ("7", "6", Bytes::new(), own.clone()),
        ("7", "6", shared.clone(), pb::ConfigDelta::default()),
        ("", "", Bytes::new(), pb::ConfigDelta::default()),
    ] {
        let sent = delta(version, base, &outbound, &own).unwrap();
        let mut expected = if outbound.is_empty() {
            pb::ConfigDelta::default()
        } else {
            changes.clone()
        };
        expected.base_version = base.into();
        (expected.inbound, expected.self_) = (own.inbound.clone(), own.self_.clone());
        let expected = pb::Snapshot {
            version: version.into(),
            config: None,
            delta: Some(expected),
        };
        assert_eq!(
            unframed(&sent),
            expected.encode_to_vec(),
            "{version:?} {base:?}"
        );
    }
}
