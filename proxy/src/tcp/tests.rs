use super::*;
use crate::model::WorkloadMeta;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

#[test]
fn relay_limits_follow_envoys_tcp_proxy_defaults() {
    let pool = |idle: Option<u64>, max: u64| {
        RelayLimits::of(&TcpRoute {
            virtual_service: String::new(),
            rule_index: 0,
            forward: Vec::new(),
            idle_timeout_ms: idle,
            max_connection_duration_ms: max,
        })
    };
    // Unset: Envoy's 1 h; `0s`: never; otherwise the value.
    assert_eq!(pool(None, 0).idle, Some(Duration::from_secs(3600)));
    assert_eq!(pool(Some(0), 0).idle, None);
    assert_eq!(pool(Some(250), 0).idle, Some(Duration::from_millis(250)));
    assert_eq!(pool(None, 0).max_duration, None);
    assert_eq!(pool(None, 90).max_duration, Some(Duration::from_millis(90)));
    assert_eq!(RelayLimits::INBOUND, pool(None, 0));
}

#[tokio::test(start_paused = true)]
async fn relay_limits_count_the_maximum_duration_from_the_connection() {
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let limits = RelayLimits {
        idle: None,
        max_duration: Some(Duration::from_secs(5)),
    };
    assert_eq!(
        limits.since(began).max_duration,
        Some(Duration::from_secs(3))
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(limits.since(began).max_duration, Some(Duration::ZERO));
    assert_eq!(RelayLimits::NONE.since(began), RelayLimits::NONE);
}

fn labels(metrics: &Metrics) -> TcpLabels {
    let w = &metrics.words;
    let nobody = WorkloadMeta::default();
    metrics.tcp_labels(
        &w.source,
        &nobody,
        &nobody,
        &ServiceLabels::default(),
        &w.none,
        None,
    )
}

/// Runs a relay between `client` and `upstream` in a task of its own.
fn spawn_relay(
    metrics: &Arc<Metrics>,
    client: DuplexStream,
    upstream: DuplexStream,
    limits: RelayLimits,
) -> tokio::task::JoinHandle<()> {
    let m = Arc::clone(metrics);
    tokio::spawn(async move {
        let labels = labels(&m);
        relay(&m, &labels, client, upstream, limits).await;
    })
}

/// The value of the one series of `name` in an exposition.
fn value<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
}

#[tokio::test(start_paused = true)]
async fn relay_is_cut_after_idle_time_since_the_last_byte_and_counts_what_it_carried() {
    let metrics = Arc::new(Metrics::new());
    let (mut app, client) = duplex(1024);
    let (upstream, mut server) = duplex(1024);
    let limits = RelayLimits {
        idle: Some(Duration::from_secs(10)),
        max_duration: None,
    };
    let task = spawn_relay(&metrics, client, upstream, limits);
    let start = Instant::now();
    let mut buf = [0u8; 16];
    // Traffic every 6 s keeps it open past 10 s.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        app.write_all(b"ping").await.unwrap();
        server.read_exact(&mut buf[..4]).await.unwrap();
        server.write_all(b"pong!").await.unwrap();
        app.read_exact(&mut buf[..5]).await.unwrap();
    }
    let last = Instant::now();
    // Then nothing: the app side sees the close 10 s after the last byte.
    assert_eq!(app.read(&mut buf).await.unwrap(), 0);
    assert_eq!(server.read(&mut buf).await.unwrap(), 0);
    let quiet = last.elapsed();
    assert!(
        quiet >= Duration::from_secs(10) && quiet < Duration::from_secs(11),
        "{quiet:?}"
    );
    assert!(start.elapsed() >= Duration::from_secs(28));
    task.await.unwrap();
    let text = metrics.encode();
    assert!(
        text.contains(r#"sluice_tcp_timeouts_total{reporter="source",kind="idle"} 1"#),
        "{text}"
    );
    // Bytes read from the client and from the upstream, counted though cut.
    assert_eq!(value(&text, "istio_tcp_received_bytes_total"), Some("12"));
    assert_eq!(value(&text, "istio_tcp_sent_bytes_total"), Some("15"));
}

#[tokio::test(start_paused = true)]
async fn relay_is_cut_at_its_maximum_duration_and_ends_normally_when_both_sides_close() {
    let metrics = Arc::new(Metrics::new());
    let labels = labels(&metrics);
    let flags = Arc::new(std::sync::Mutex::new(Vec::new()));
    metrics
        .telemetry
        .install_tcp_log(Box::new(Flags(Arc::clone(&flags))));
    let limits = RelayLimits {
        idle: None,
        max_duration: Some(Duration::from_secs(30)),
    };
    // Busy until the limit.
    let (mut app, client) = duplex(64);
    let (upstream, mut server) = duplex(64);
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while let Ok(n) = server.read(&mut buf).await {
            if n == 0 || server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let cut = async {
        let mut buf = [0u8; 4];
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if app.write_all(b"beat").await.is_err() {
                return;
            }
            match app.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::join!(relay(&metrics, &labels, client, upstream, limits), cut);
    let lived = start.elapsed();
    assert!(
        lived >= Duration::from_secs(30) && lived < Duration::from_secs(32),
        "{lived:?}"
    );
    echo.await.unwrap();

    // Both sides closing ends a relay without any timeout counted again.
    let (app, client) = duplex(64);
    let (upstream, server) = duplex(64);
    drop((app, server));
    relay(&metrics, &labels, client, upstream, limits).await;
    let text = metrics.encode();
    assert!(
        text.contains(r#"sluice_tcp_timeouts_total{reporter="source",kind="max_duration"} 1"#),
        "{text}"
    );
    assert!(!text.contains(r#"kind="idle""#), "{text}");
    assert_eq!(
        value(&text, "istio_tcp_connections_closed_total"),
        Some("2")
    );
    // Envoy's access-log flag for the cut connection only; the metrics keep
    // the flags the connection opened with.
    assert_eq!(*flags.lock().unwrap(), ["DT", "-"]);
    assert!(!text.contains(r#"response_flags="DT""#), "{text}");
}

/// Records the response flags of each TCP access-log line.
struct Flags(Arc<std::sync::Mutex<Vec<String>>>);

impl crate::metrics::TcpLog for Flags {
    fn closed(&self, labels: &TcpLabels, _: std::time::SystemTime, _: Duration, _: u64, _: u64) {
        self.0
            .lock()
            .unwrap()
            .push(labels.response_flags.as_str().to_owned());
    }
}

#[tokio::test(start_paused = true)]
async fn relay_writing_to_a_slow_reader_is_not_idle() {
    let metrics = Arc::new(Metrics::new());
    // The app takes 16 bytes at a time; the upstream sends 160 at once, so the
    // relay reads nothing more and only writes, as the app makes room.
    let (mut app, client) = duplex(16);
    let (upstream, mut server) = duplex(4096);
    let limits = RelayLimits {
        idle: Some(Duration::from_secs(10)),
        max_duration: None,
    };
    let task = spawn_relay(&metrics, client, upstream, limits);
    server.write_all(&[7u8; 160]).await.unwrap();
    let mut buf = [0u8; 16];
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        app.read_exact(&mut buf).await.unwrap();
    }
    assert!(!task.is_finished());
    // All delivered, then quiet: closed 10 s after the last write.
    assert_eq!(app.read(&mut buf).await.unwrap(), 0);
    task.await.unwrap();
    let text = metrics.encode();
    assert!(text.contains(r#"kind="idle"} 1"#), "{text}");
    assert_eq!(value(&text, "istio_tcp_sent_bytes_total"), Some("160"));
}

#[test]
fn service_for_dst_picks_the_most_specific_address_or_range() {
    use sluice_api::config as pb;
    let svc = |name: &str, addresses: &[&str]| pb::TcpService {
        name: name.to_owned(),
        port: 3306,
        addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    };
    let cfg = ProxyConfig::try_from(&pb::ProxyConfig {
        tcp_services: vec![
            svc("wide", &["240.240.0.0/16"]),
            svc("narrow", &["240.240.20.0/24", "10.0.0.9"]),
            svc("any", &[]),
        ],
        ..Default::default()
    })
    .unwrap();
    let pick = |ip: &str| {
        service_for_dst(&cfg, SocketAddr::new(ip.parse().unwrap(), 3306)).map(|s| s.name.as_str())
    };
    assert_eq!(pick("240.240.20.7"), Some("narrow"));
    assert_eq!(pick("240.240.21.7"), Some("wide"));
    assert_eq!(pick("10.0.0.9"), Some("narrow"));
    assert_eq!(pick("10.0.0.10"), Some("any"));
    assert!(
        ProxyConfig::try_from(&pb::ProxyConfig {
            tcp_services: vec![svc("bad", &["240.240.20.0/33"])],
            ..Default::default()
        })
        .is_err(),
        "a prefix past 32 bits is refused"
    );
}
