use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use sluice_api::config as pb;

use super::*;
use crate::model::ProxyConfig;

fn config(mode: pb::upstream_tls::Mode, sans: &[&str], ep: pb::Endpoint) -> ProxyConfig {
    let c = pb::ProxyConfig {
        clusters: vec![pb::Cluster {
            name: "c".to_owned(),
            service: "reviews.default.svc.cluster.local".to_owned(),
            port: 9080,
            endpoints: vec![ep],
            tls: Some(pb::UpstreamTls {
                mode: mode as i32,
                subject_alt_names: sans.iter().map(|s| (*s).to_owned()).collect(),
                ca_certificates: "/etc/ca.pem".to_owned(),
                client_certificate: "/etc/cert.pem".to_owned(),
                private_key: "/etc/key.pem".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    ProxyConfig::try_from(&c).unwrap()
}

fn sidecar() -> pb::Endpoint {
    pb::Endpoint {
        address: "10.0.0.7".to_owned(),
        port: 9080,
        sidecar: true,
        inbound_port: 15006,
        ..Default::default()
    }
}

fn target(mode: pb::upstream_tls::Mode, ep: pb::Endpoint, creds: bool, alpn: Alpn) -> Target {
    let cfg = config(mode, &["cluster.local/ns/default/sa/reviews"], ep);
    let cluster = &cfg.clusters[0];
    Target::endpoint(cluster, &cluster.endpoints[0], creds, alpn)
}

fn is_mesh(t: &Target) -> bool {
    matches!(t.security, Security::Mesh { .. })
}

#[test]
fn endpoint_auto_uses_mtls_only_to_sidecars_with_credentials() {
    use pb::upstream_tls::Mode;
    let t = target(Mode::Auto, sidecar(), true, Alpn::H2);
    assert_eq!(t.connect, "10.0.0.7:15006".parse().unwrap());
    assert_eq!(t.announce, Some("10.0.0.7:9080".parse().unwrap()));
    match &t.security {
        Security::Mesh { sans, alpn, sni } => {
            assert_eq!(&sans[..], ["cluster.local/ns/default/sa/reviews"]);
            assert_eq!(*alpn, Alpn::H2);
            let sni = sni.as_deref().unwrap_or_default();
            assert!(sni.starts_with("outbound_.9080_._."), "{sni}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!is_mesh(&target(Mode::Auto, sidecar(), false, Alpn::H2)));
    let plain_ep = pb::Endpoint {
        sidecar: false,
        ..sidecar()
    };
    let t = target(Mode::Auto, plain_ep, true, Alpn::H2);
    assert_eq!(
        (t.connect, t.announce),
        ("10.0.0.7:9080".parse().unwrap(), None)
    );
    assert_eq!(t.security, Security::Plain);
    let disabled = pb::Endpoint {
        mtls_disabled: true,
        ..sidecar()
    };
    assert_eq!(
        target(Mode::Auto, disabled, true, Alpn::H2).security,
        Security::Plain
    );
}

#[test]
fn endpoint_explicit_modes_override_auto() {
    use pb::upstream_tls::Mode;
    assert_eq!(
        target(Mode::Disable, sidecar(), true, Alpn::Tcp).security,
        Security::Plain
    );
    // ISTIO_MUTUAL insists on mTLS even without credentials (the connect then fails).
    assert!(is_mesh(&target(
        Mode::IstioMutual,
        sidecar(),
        false,
        Alpn::Tcp
    )));
    let t = target(Mode::Mutual, sidecar(), true, Alpn::H2);
    match &t.security {
        Security::Originate(o) => {
            assert_eq!(o.sni, "reviews.default.svc.cluster.local");
            assert_eq!(o.client_certificate, "/etc/cert.pem");
        }
        other => panic!("{other:?}"),
    }
    assert!(t.forces_h1());
}

#[test]
fn endpoint_pool_key_differs_by_security() {
    use pb::upstream_tls::Mode;
    let hash = |t: &Target| {
        let mut h = DefaultHasher::new();
        t.hash(&mut h);
        h.finish()
    };
    let mtls = target(Mode::Auto, sidecar(), true, Alpn::H2);
    let plain = target(Mode::Disable, sidecar(), true, Alpn::H2);
    let tcp = target(Mode::Auto, sidecar(), true, Alpn::Tcp);
    assert_ne!(mtls, plain);
    assert_ne!(mtls, tcp);
    assert_ne!(hash(&mtls), hash(&plain));
    assert_eq!(mtls, target(Mode::Auto, sidecar(), true, Alpn::H2));
}
