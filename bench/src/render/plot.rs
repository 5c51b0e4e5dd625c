//! PNG plots (plotters, bitmap backend): latency percentiles per target for each scenario,
//! and the distribution of controller convergence times.
use super::{Key, scenarios, slug, title};
use crate::results::RunFile;
use anyhow::anyhow;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Font used for every label; plotters draws text only with a registered font.
const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONT_PATHS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| {
                format!("no font found at {FONT_PATHS:?} (apt-get install fonts-dejavu-core)")
            })?;
        // plotters keeps fonts for the whole process, so the bytes live as long.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "font not usable".to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

const COLORS: [RGBColor; 6] = [
    BLACK,
    RGBColor(220, 50, 32),
    RGBColor(0, 90, 181),
    RGBColor(26, 133, 0),
    RGBColor(230, 159, 0),
    RGBColor(150, 80, 200),
];

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plot: {e}")
}

/// Draws every plot into `dir`; returns (key, path relative to BENCHMARKS.md) per PNG.
pub fn plots(run: &RunFile, dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    register_font()?;
    let rel = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut out = Vec::new();
    for k in scenarios(&run.points) {
        let name = format!("latency-{}.png", slug(&k));
        if latency(run, &k, &dir.join(&name))? {
            out.push((slug(&k), format!("{rel}/{name}")));
        }
    }
    if let Some(sc) = &run.scale
        && !sc.change_ms.is_empty()
    {
        convergence(
            &sc.change_ms,
            sc.proxies_connected,
            &dir.join("convergence.png"),
        )?;
        out.push(("convergence".into(), format!("{rel}/convergence.png")));
    }
    Ok(out)
}

fn latency(run: &RunFile, k: &Key, path: &Path) -> anyhow::Result<bool> {
    let series: Vec<(&str, [f64; 4])> = run
        .points
        .iter()
        .filter(|p| {
            (p.protocol.as_str(), p.connections, p.qps_asked as u64) == (k.0.as_str(), k.1, k.2)
        })
        .filter(|p| p.skipped.is_none())
        .map(|p| (p.target.as_str(), [p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms]))
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    let ymax = series
        .iter()
        .flat_map(|s| s.1)
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.1;
    let root = BitMapBackend::new(path, (640, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("latency percentiles: {}", title(k)),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.2f64..3.2f64, 0f64..ymax)
        .map_err(err)?;
    let names = ["p50", "p90", "p99", "p99.9"];
    chart
        .configure_mesh()
        .x_labels(4)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.05 && (0.0..4.0).contains(&i) {
                names[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .y_desc("ms")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    for (n, (target, ys)) in series.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let pts: Vec<(f64, f64)> = ys.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(target.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(true)
}

fn convergence(ms: &[f64], proxies: usize, path: &Path) -> anyhow::Result<()> {
    let mut v = ms.to_vec();
    v.sort_by(f64::total_cmp);
    let xmax = v.last().copied().unwrap_or(1.0).max(1.0) * 1.05;
    let root = BitMapBackend::new(path, (640, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("config change → proxy (CDF, {proxies} proxies)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..xmax, 0f64..1.0f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("ms from file write until applied (ACK sent)")
        .y_desc("fraction of (proxy, change) pairs")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let n = v.len() as f64;
    let pts = v.iter().enumerate().map(|(i, x)| (*x, (i + 1) as f64 / n));
    chart
        .draw_series(LineSeries::new(pts, COLORS[2].stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
