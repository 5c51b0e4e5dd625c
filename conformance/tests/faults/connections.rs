//! One sidecar holding many concurrent client connections (2,000 in CI; set
//! `SLUICE_FAULTS_CONNECTIONS=10000` for the full form). Each connection makes one request
//! and stays open (keep-alive); once all are open and have been idle a while
//! (`SLUICE_FAULTS_IDLE_S`, default 3), each makes one more request and closes. Reports the
//! sidecar's memory per idle connection and checks the descriptors come back.
use super::{SERIAL, metric, outbound_of, start_mesh};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sluice_conformance::mesh::faults::ProcStats;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Connections opened or used at the same time.
const PARALLEL: usize = 200;
/// How long every connection stays idle before its second request, at least.
fn idle_time() -> Duration {
    let s = std::env::var("SLUICE_FAULTS_IDLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(s)
}

/// Raises this process's open-file soft limit to the hard limit (the sidecars it starts
/// inherit it) and returns the new soft limit.
fn raise_nofile() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    setrlimit(Resource::Nofile, lim).unwrap();
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

type Conn = SendRequest<Empty<Bytes>>;

/// One GET on `conn`; the status, or why there is none.
async fn request(conn: &mut Conn, close: bool) -> Result<u16, String> {
    let mut req = http::Request::get("http://reviews:9080/get").header("host", "reviews:9080");
    if close {
        req = req.header("connection", "close");
    }
    let exchange = async {
        conn.ready().await.map_err(|e| e.to_string())?;
        let resp = conn
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(status)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Opens a connection and makes its first request, keeping the connection.
async fn open(addr: SocketAddr) -> (Conn, Result<u16, String>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut conn, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(driver);
    let first = request(&mut conn, false).await;
    (conn, first)
}

fn not_200<'a>(answers: impl Iterator<Item = &'a Result<u16, String>>) -> Vec<String> {
    answers
        .filter(|a| **a != Ok(200))
        .map(|a| format!("{a:?}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_holds_thousands_of_idle_keepalive_connections_and_answers_each() {
    let n: usize = std::env::var("SLUICE_FAULTS_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let _turn = SERIAL.lock().await;
    let limit = raise_nofile();
    assert!(
        limit >= n as u64 + 1000,
        "open-file hard limit {limit} too low for {n} connections (raise `ulimit -Hn`)"
    );
    let (_work, mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080}]",
        "",
        &[],
    )
    .await;
    let sleep = outbound_of(&mesh, "sleep");
    let sleep_n = mesh.select("sleep", None, None)[0];
    let stats = mesh.instances()[sleep_n].stats_addr();
    let pid = mesh.sidecar_pid(sleep_n).unwrap();
    let before = ProcStats::read(pid).unwrap();

    let started = Instant::now();
    let opened: Vec<(Conn, Result<u16, String>)> = futures::stream::iter(0..n)
        .map(|_| open(sleep))
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let opened_in = started.elapsed();
    let first_bad = not_200(opened.iter().map(|(_, a)| a));
    let active = metric(
        stats,
        "sluice_connections_active",
        &[("listener", "outbound")],
    )
    .await;
    tokio::time::sleep(idle_time()).await;
    let idle = ProcStats::read(pid).unwrap();
    let still_active = metric(
        stats,
        "sluice_connections_active",
        &[("listener", "outbound")],
    )
    .await;

    let second: Vec<Result<u16, String>> = futures::stream::iter(opened)
        .map(|(mut conn, _)| async move { request(&mut conn, true).await })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let second_bad = not_200(second.iter());

    // The sidecar lets go of them all. Its upstream pool may keep one idle
    // keep-alive connection per request that was in flight at once (Envoy
    // keeps them until the idle timeout too): at most PARALLEL, far fewer
    // than the connections that were held.
    let released = before.fds + PARALLEL as u64 + 50;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = ProcStats::read(pid).unwrap();
    while after.fds > released && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = ProcStats::read(pid).unwrap();
    }
    let per_conn = (idle.rss_kib.saturating_sub(before.rss_kib) as f64) * 1024.0 / n as f64;
    eprintln!(
        "connections: {n} opened and answered in {opened_in:?} ({active} active), idle {:?} more ({still_active} active); sidecar RSS {} KiB before -> {} KiB holding them idle ({per_conn:.0} bytes per idle connection), fds {} -> {} -> {}",
        idle_time(),
        before.rss_kib,
        idle.rss_kib,
        before.fds,
        idle.fds,
        after.fds
    );
    assert!(
        first_bad.is_empty(),
        "{} first requests failed: {:?}",
        first_bad.len(),
        &first_bad[..first_bad.len().min(5)]
    );
    assert_eq!(
        active, n as f64,
        "connections open after the first requests"
    );
    assert!(
        second_bad.is_empty(),
        "{} requests on idle connections failed: {:?}",
        second_bad.len(),
        &second_bad[..second_bad.len().min(5)]
    );
    assert!(idle.fds >= before.fds + n as u64, "held {} fds", idle.fds);
    assert!(
        after.fds <= released,
        "fds not released: {} before, {} after (at most {released})",
        before.fds,
        after.fds
    );
    assert!(
        per_conn < 64.0 * 1024.0,
        "{per_conn:.0} bytes per idle connection"
    );
    mesh.shutdown().await;
}

/// A keep-alive connection left idle longer than the sidecar's request-head timeout is
/// still usable: clients pool connections for minutes (Envoy closes idle downstream
/// connections after 1 h). The request-head limit starts with a request's first byte, not
/// when the connection turns idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connection_outlives_the_request_head_timeout() {
    let _turn = SERIAL.lock().await;
    let (_work, mesh) = start_mesh(
        "[{service: sleep}, {service: reviews, port: 9080}]",
        "",
        &[],
    )
    .await;
    let (mut conn, first) = open(outbound_of(&mesh, "sleep")).await;
    assert_eq!(first, Ok(200));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(request(&mut conn, true).await, Ok(200), "after 15 s idle");
    mesh.shutdown().await;
}
