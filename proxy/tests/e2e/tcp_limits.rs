//! DestinationRule `connectionPool.tcp` limits on relayed TCP connections (the
//! controller puts them on TCP routes, as Istio puts them on `tcp_proxy`):
//! `idleTimeout` closes a connection nothing crossed for that long, and
//! `maxConnectionDuration` closes one however busy it is.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_api::config as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// A TCP service whose one route carries `limits` (its DestinationRule's
/// `connectionPool.tcp`, as the controller sends it).
fn tcp_service(
    name: &str,
    port: u32,
    backend: SocketAddr,
    limits: pb::TcpRoute,
) -> (pb::Cluster, pb::TcpService) {
    let workload = format!("{name}-v1");
    let mut c = cluster(name, port, "", vec![endpoint(backend, &workload, "v1")]);
    c.protocol = pb::Protocol::Tcp as i32;
    let fqdn = format!("{name}.default.svc.cluster.local");
    let svc = pb::TcpService {
        name: format!("{fqdn}:{port}"),
        port,
        routes: vec![pb::TcpRoute {
            forward: Some(pb::WeightedClusters {
                clusters: vec![pb::WeightedCluster {
                    cluster: cname(name, port, ""),
                    weight: 1,
                    ..Default::default()
                }],
            }),
            ..limits
        }],
        service: fqdn.clone(),
        domains: vec![name.to_owned(), fqdn],
        ..Default::default()
    };
    (c, svc)
}

/// A sidecar on `127.0.<net>.1` whose TCP service `name` reaches a TCP echo
/// server (greeting `<name>-app`) through a route carrying `limits`.
async fn sidecar_to_echo(
    net: u8,
    (name, greeting): (&str, &'static str),
    port: u16,
    limits: pb::TcpRoute,
) -> (Controller, Proxy) {
    let backend: SocketAddr = format!("127.0.{net}.11:{port}").parse().unwrap();
    tcp_echo(backend, greeting).await;
    let (c, svc) = tcp_service(name, u32::from(port), backend, limits);
    let config = pb::ProxyConfig {
        clusters: vec![c],
        tcp_services: vec![svc],
        ..Default::default()
    };
    mesh_of_one(net, config).await
}

/// Opens a `CONNECT` tunnel through the sidecar and reads the echo server's greeting.
async fn tunnel(proxy: &Proxy, host: &str, greeting: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy.outbound()).await.unwrap();
    let head = format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let mut seen = String::new();
    while !seen.contains(greeting) {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("tunnel answers")
            .unwrap();
        assert!(n > 0, "tunnel closed early: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen:?}");
    s
}

async fn echo(s: &mut TcpStream, what: &[u8]) {
    s.write_all(what).await.unwrap();
    let mut got = vec![0u8; what.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("echo in time")
        .expect("echo");
    assert_eq!(got, what);
}

/// Waits for the sidecar to close the tunnel; returns how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(limit, s.read(&mut buf)).await {
        Err(_) => panic!("the connection was not closed within {limit:?}"),
        Ok(Ok(0) | Err(_)) => start.elapsed(),
        Ok(Ok(n)) => panic!("unexpected bytes after going quiet: {:?}", &buf[..n]),
    }
}

#[tokio::test]
async fn tcp_idle_timeout_closes_quiet_connections_and_spares_busy_ones() {
    let limits = pb::TcpRoute {
        idle_timeout_ms: Some(1_000),
        ..Default::default()
    };
    let (_ctl, proxy) = sidecar_to_echo(145, ("mysql", "mysql-app"), 3306, limits).await;

    // Bytes every 100 ms keep the connection open well past the timeout.
    let mut busy = tunnel(&proxy, "mysql:3306", "mysql-app\n").await;
    for _ in 0..25 {
        echo(&mut busy, b"tick").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    echo(&mut busy, b"still here").await;

    // Quiet, it is closed once the timeout has passed since the last byte.
    let quiet_for = closed_within(&mut busy, Duration::from_secs(10)).await;
    assert!(
        quiet_for >= Duration::from_millis(800),
        "closed {quiet_for:?} after the last byte, before the 1 s timeout"
    );
    let timeouts = [("reporter", "source"), ("kind", "idle")];
    proxy
        .metric_reaches("sluice_tcp_timeouts_total", &timeouts, 1.0)
        .await;
    // A connection cut by its timeout still reports what it carried:
    // 4 × 25 + 10 bytes received from the client, the greeting and the same echoed.
    let service = [("destination_service_name", "mysql")];
    proxy
        .metric_reaches("istio_tcp_connections_closed_total", &service, 1.0)
        .await;
    proxy
        .metric_reaches("istio_tcp_received_bytes_total", &service, 110.0)
        .await;
    proxy
        .metric_reaches("istio_tcp_sent_bytes_total", &service, 120.0)
        .await;
}

#[tokio::test]
async fn tcp_max_connection_duration_closes_busy_connections_and_zero_idle_never_times_out() {
    let limits = pb::TcpRoute {
        // `idleTimeout: 0s`: never idle out; the duration limit still holds.
        idle_timeout_ms: Some(0),
        max_connection_duration_ms: 3_000,
        ..Default::default()
    };
    let (_ctl, proxy) = sidecar_to_echo(146, ("redis", "redis-app"), 6379, limits).await;

    let opened = Instant::now();
    let mut s = tunnel(&proxy, "redis:6379", "redis-app\n").await;
    // `0s` means never, not at once: quiet for a while, still open.
    tokio::time::sleep(Duration::from_millis(600)).await;
    echo(&mut s, b"after a pause").await;
    // Busy or not, it ends at its maximum duration.
    let mut closed = false;
    while opened.elapsed() < Duration::from_secs(10) {
        s.write_all(b"x").await.ok();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after 10 s");
    let lived = opened.elapsed();
    assert!(
        lived >= Duration::from_millis(2_900),
        "closed after {lived:?}, before its 3 s maximum"
    );
    let timeouts = [("reporter", "source"), ("kind", "max_duration")];
    proxy
        .metric_reaches("sluice_tcp_timeouts_total", &timeouts, 1.0)
        .await;
    let idle = [("reporter", "source"), ("kind", "idle")];
    assert_eq!(proxy.metric("sluice_tcp_timeouts_total", &idle).await, 0.0);
}
