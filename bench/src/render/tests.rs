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
        md.contains("| per sidecar at 1,000 rps ≤ 0.05 vCPU | 0.0400 vCPU | met |"),
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
