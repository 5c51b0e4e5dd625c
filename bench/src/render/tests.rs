use super::*;
use crate::point::Point;

fn point(target: &str, p99: f64, cpu: Option<f64>) -> Point {
    Point {
        target: target.into(),
        label: format!("{target} pair"),
        protocol: "http1".into(),
        connections: 4,
        qps_asked: 1000.0,
        qps_got: 999.0,
        p50_ms: p99 / 4.0,
        p90_ms: p99 / 2.0,
        p99_ms: p99,
        p999_ms: p99 * 2.0,
        cpu_s_per_1k_req: cpu,
        rss_mb: cpu.map(|_| 8.0),
        rss_peak_mb: cpu.map(|_| 9.0),
        errors: 0,
        requests: 10_000,
        repetitions: 1,
        seconds: 10,
        p99_ms_spread: (p99, p99),
        qps_spread: (999.0, 999.0),
        skipped: None,
        proxies: Vec::new(),
    }
}

#[test]
fn markdown_ratio_uses_latency_added_over_direct() {
    let run = RunFile {
        points: vec![
            point("direct", 1.0, None),
            point("sluice", 2.0, Some(0.04)),
            point("haproxy", 3.0, Some(0.02)),
        ],
        ..Default::default()
    };
    let md = markdown(&run, "x.json", &[]);
    // Added p99: sluice 1.0, haproxy 2.0 → 0.50×; CPU 0.04 / 0.02 → 2.00×.
    assert!(
        md.contains("Sluice ÷ haproxy: added p50 0.50×, added p99 0.50×, CPU/1k req 2.00×"),
        "{md}"
    );
    assert!(
        md.contains(
            "| per sidecar at 1,000 rps ≤ 0.05 vCPU (HTTP/1.1, 4 conns; the busier sidecar) | 0.0400 vCPU | met |"
        ),
        "{md}"
    );
    assert!(md.contains("| 1.000 ms vs 2.000 ms | met |"), "{md}");
}

#[test]
fn markdown_skipped_point_says_why() {
    let mut p = point("nginx", 0.0, None);
    p.skipped = Some("fortio failed | exit 1".into());
    let run = RunFile {
        points: vec![p],
        ..Default::default()
    };
    let md = markdown(&run, "x.json", &[]);
    assert!(md.contains("not measured: fortio failed / exit 1"), "{md}");
}

#[test]
fn added_ratio_with_negative_or_tiny_added_latency_is_dash() {
    assert_eq!(added_ratio(Some(1.0), Some(-0.5)), "–");
    assert_eq!(added_ratio(Some(-1.0), Some(0.5)), "–");
    assert_eq!(added_ratio(Some(1.0), Some(0.09)), "–");
    assert_eq!(added_ratio(Some(1.0), Some(0.5)), "2.00×");
}

#[test]
fn ratio_without_denominator_is_dash() {
    assert_eq!(ratio(Some(1.0), None), "–");
    assert_eq!(ratio(Some(1.0), Some(0.0)), "–");
    assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
}

#[test]
fn plots_write_pngs_for_each_scenario_and_convergence() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunFile {
        points: vec![point("direct", 1.0, None), point("sluice", 2.0, Some(0.04))],
        scale: Some(crate::scale::ScaleResult {
            change_ms: vec![10.0, 20.0, 30.0],
            proxies_connected: 3,
            ..Default::default()
        }),
        ..Default::default()
    };
    let pngs = plots(&run, dir.path()).unwrap();
    assert_eq!(pngs.len(), 2);
    for name in ["latency-http1-c4-1000.png", "convergence.png"] {
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(&bytes[1..4], b"PNG", "{name}");
    }
}

#[test]
fn each_side_is_shown_and_the_busier_sidecar_is_judged() {
    use crate::point::ProxyUse;
    let side = |side: &str, cpu: f64, rss: f64| ProxyUse {
        side: side.into(),
        cpu_s_per_1k_req: Some(cpu),
        kernel_share: (side == "server").then_some(0.375),
        rss_mb: rss,
        rss_peak_mb: rss + 0.5,
    };
    let mut sl = point("sluice", 2.0, Some(0.045));
    sl.proxies = vec![side("client", 0.06, 9.0), side("server", 0.03, 8.0)];
    sl.rss_mb = Some(9.0);
    sl.rss_peak_mb = Some(9.5);
    let mut wide = point("sluice", 3.0, Some(0.04));
    wide.connections = 64;
    wide.rss_mb = Some(12.0);
    let run = RunFile {
        points: vec![point("direct", 1.0, None), sl, wide],
        ..Default::default()
    };
    let md = markdown(&run, "x.json", &[]);
    // The pair's mean (0.045) is under 0.05, the client side is not.
    assert!(
        md.contains("the busier sidecar) | 0.0600 vCPU | **missed** |"),
        "{md}"
    );
    assert!(
        md.contains("0.0450 (client 0.0600, server 0.0300, 38 % kernel)"),
        "{md}"
    );
    assert!(md.contains("client 9.0 / 9.5, server 8.0 / 8.5"), "{md}");
    assert!(
        md.contains("(HTTP/1.1, 4 conns; the larger sidecar) | 9.0 MB (peak 9.5) | met |"),
        "{md}"
    );
    assert!(
        md.contains("(HTTP/1.1, 64 conns; the larger sidecar) | 12.0 MB (peak 9.0) | **missed** |"),
        "{md}"
    );
}

#[test]
fn scale_rows_split_samples_per_change() {
    let sc = crate::scale::ScaleResult {
        // Two changes of three proxies each, in the order the bench records them.
        change_ms: vec![30.0, 10.0, 20.0, 60.0, 40.0, 50.0],
        proxies_connected: 3,
        ..Default::default()
    };
    assert_eq!(per_change(&sc), "10 / 20 / 30; 40 / 50 / 60 ms");
    let short = crate::scale::ScaleResult {
        changes_incomplete: 1,
        ..sc
    };
    assert!(per_change(&short).starts_with("–"));
}
