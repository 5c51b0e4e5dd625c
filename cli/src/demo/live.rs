//! Live mode: steady traffic, a failing instance of reviews and of orders so
//! ejection and retries show, and a table redrawn every second until Ctrl-C.

use super::table::{Stats, render};
use super::traces::{Collector, render as waterfall};
use super::{CLASSES, call, client, counters};
use sluice_conformance::client;
use sluice_conformance::mesh::LocalMesh;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs until Ctrl-C.
pub async fn run(mesh: &LocalMesh, rate: u32, collector: &Collector) -> anyhow::Result<bool> {
    let (outbound, _) = client(mesh)?;
    // Chaos: one reviews v1 instance and one orders instance answer 503.
    for n in mesh
        .select("reviews", Some("v1"), Some(&[0]))
        .into_iter()
        .chain(mesh.select("orders", Some("v1"), Some(&[0])))
    {
        mesh.behave(n, Some(503), 0).await?;
    }
    let stats: Vec<Stats> = CLASSES.iter().map(|c| Stats::new(c.name)).collect();
    let stats = Arc::new(Mutex::new(stats));
    let total_weight: u32 = CLASSES.iter().map(|c| c.weight).sum();
    let started = Instant::now();
    let driver = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let mut tick = tokio::time::interval(period);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                let slot = u32::try_from(n % u64::from(total_weight)).unwrap_or(0);
                n += 1;
                let mut acc = 0;
                let Some(i) = CLASSES.iter().position(|c| {
                    acc += c.weight;
                    slot < acc
                }) else {
                    continue;
                };
                let call = call(outbound, &CLASSES[i]);
                let stats = stats.clone();
                tokio::spawn(async move {
                    let outcome = client::send(&call).await;
                    if let Ok(mut s) = stats.lock() {
                        s[i].record(&outcome);
                    }
                });
            }
        })
    };
    let mut redraw = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = redraw.tick() => {
                let resilience = counters::read(mesh).await;
                let table = stats.lock().ok().map(|s| render(&s, Some(started.elapsed())));
                if let Some(table) = table {
                    // Clear the screen and home the cursor, then draw.
                    print!("\x1b[2J\x1b[H{table}");
                    println!("\n{resilience}");
                    if let Some(spans) = collector.newest_through("productpage.default", "reviews.default") {
                        println!("\nnewest trace through two sidecars (OTLP from the sidecars to sluicectl):\n{}", waterfall(&spans));
                    }
                    println!(
                        "\nchaos: reviews-v1-0 and orders-v1-0 answer 503 (ejected by outlier detection / retried on the other instance)"
                    );
                    println!("productpage (sa frontend) --(sidecar)== mTLS ==(sidecar)--> reviews, orders  ·  STRICT + orders-policy (x-api-key)  ·  YAML: examples/  ·  Ctrl-C to stop");
                }
            }
        }
    }
    driver.abort();
    Ok(true)
}
