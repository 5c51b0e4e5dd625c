//! Workload certificate rotation under steady load: sidecars ask for 4-second certificates,
//! so each renews (new key, new certificate) about every 2 s, at half-life. Every request
//! between them is answered and no TLS handshake fails.
use super::load::Load;
use super::{SERIAL, get, metric, outbound_of, start_mesh};
use std::time::Duration;

/// Every request on a new connection between the sidecars, so each one is a fresh mutual
/// TLS handshake with whatever certificates and roots the two hold at that moment.
const FRESH_CONNECTIONS: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {http: {maxRequestsPerConnection: 1}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotating_every_2s_under_load_no_errors() {
    let _turn = SERIAL.lock().await;
    let (_work, mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080, versions: {v1: 2}}]",
        FRESH_CONNECTIONS,
        &["--cert-ttl-s", "4"],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let stats: Vec<_> = mesh.instances().iter().map(|i| i.stats_addr()).collect();
    let issued = |outcome: &'static str| {
        let stats = stats.clone();
        async move {
            let mut v = Vec::new();
            for s in stats {
                v.push(
                    metric(
                        s,
                        "sluice_certificate_requests_total",
                        &[("outcome", outcome)],
                    )
                    .await,
                );
            }
            v
        }
    };
    let before = issued("success").await;
    let mut expiries = Vec::new();

    let load = Load::start(2, Duration::from_millis(10), move || {
        get(sleep, "http://reviews:9080/get", Duration::from_secs(5))
    });
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        expiries.push(
            metric(
                stats[0],
                "sluice_certificate_expiration_timestamp_seconds",
                &[],
            )
            .await,
        );
    }
    let report = load.finish_after(500).await;
    let after = issued("success").await;
    let failed = issued("failure").await;
    let mut handshake_failures = 0.0;
    for s in &stats {
        handshake_failures +=
            metric(*s, "sluice_tls_handshakes_total", &[("outcome", "failure")]).await;
    }
    expiries.dedup();

    eprintln!(
        "certificate rotation: {} requests, certificates per sidecar {:?} -> {:?}, failed requests to the CA {failed:?}, TLS handshake failures {handshake_failures}, distinct expiries seen on one sidecar {}",
        report.records.len(),
        before,
        after,
        expiries.len()
    );
    report.assert_all_ok(500);
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a - b >= 4.0,
            "sidecar {n} renewed only {} times in 12 s",
            a - b
        );
    }
    assert!(
        failed.iter().all(|f| *f == 0.0),
        "CA requests failed: {failed:?}"
    );
    assert_eq!(handshake_failures, 0.0);
    assert!(
        expiries.len() >= 4,
        "expiry changed only {} times",
        expiries.len()
    );
    mesh.shutdown().await;
}
