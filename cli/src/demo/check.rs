//! `demo --check`: plays each behaviour the example YAML asks for once and
//! compares what happened with what the YAML says.

use super::table::{Expectation, Stats, render};
use super::traces::{Collector, render as waterfall};
use super::{CLASSES, call, client, counters};
use sluice_conformance::client::{self, Call, Outcome};
use sluice_conformance::mesh::LocalMesh;

/// Sends `n` copies of `call`, `concurrency` at a time; outcomes come back
/// in request order (request `i` goes out roughly `i / concurrency` rounds in).
async fn send_many(call: &Call, n: usize, concurrency: usize) -> Vec<Outcome> {
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in (worker..n).step_by(concurrency) {
                out.push((i, client::send(&call).await));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(mut part) = t.await {
            all.append(&mut part);
        }
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, o)| o).collect()
}

fn verdict(ok: &mut bool, name: &str, result: Result<String, String>) {
    match result {
        Ok(detail) => println!("PASS {name}: {detail}"),
        Err(why) => {
            *ok = false;
            println!("FAIL {name}: {why}");
        }
    }
}

fn status_count(outcomes: &[Outcome], status: u16) -> usize {
    outcomes.iter().filter(|o| o.status == Some(status)).count()
}

/// Runs every check; `Ok(true)` when all passed.
pub async fn run(mesh: &LocalMesh, collector: &Collector) -> anyhow::Result<bool> {
    let (outbound, admin) = client(mesh)?;
    let mut ok = true;

    // 1. Routing: shares per request class.
    let mut stats = Vec::new();
    for class in CLASSES.iter().filter(|c| c.url == super::REVIEWS) {
        let mut s = Stats::new(class.name);
        for o in send_many(&call(outbound, class), class.weight as usize * 60, 4).await {
            s.record(&o);
        }
        stats.push((class, s));
    }
    let table: Vec<Stats> = stats.iter().map(|(_, s)| s.clone()).collect();
    println!("{}", render(&table, None));
    for (class, s) in &stats {
        let expect = Expectation {
            shares: class.expect,
            tolerance: 0.05,
        };
        verdict(
            &mut ok,
            &format!("routing: {}", class.name),
            s.check(&expect)
                .map(|()| "shares as the VirtualService says".into()),
        );
    }

    // 2. Mutual TLS: every reviews answer was served to productpage's
    //    identity, proven by its certificate; a caller without a sidecar
    //    (plaintext, straight to a reviews inbound) is refused under STRICT.
    let without_peer: u64 = table.iter().map(|s| s.without_peer(super::FRONTEND)).sum();
    let answered: usize = stats.iter().map(|(c, _)| c.weight as usize * 60).sum();
    let reviews_inbound = mesh
        .instances()
        .iter()
        .find(|i| i.service == "reviews")
        .map(|i| i.inbound_addr())
        .ok_or_else(|| anyhow::anyhow!("reviews instance missing"))?;
    let plaintext = client::send(&Call {
        via: sluice_conformance::client::Via::Inbound(reviews_inbound),
        ..call(outbound, &CLASSES[2])
    })
    .await;
    verdict(
        &mut ok,
        "mTLS: reviews sees productpage as spiffe://cluster.local/ns/default/sa/frontend; plaintext refused",
        if without_peer == 0 && plaintext.status.is_none() {
            Ok(format!(
                "{answered} answers over mutual TLS; a plaintext request got no response ({})",
                plaintext.error.as_deref().unwrap_or("closed")
            ))
        } else {
            Err(format!(
                "{without_peer} answers without that peer identity (want 0); plaintext request status {:?} (want none)",
                plaintext.status
            ))
        },
    );

    // 3. Outlier detection: reviews-v1-0 starts failing with 503; after 5
    //    consecutive gateway errors (the seed's consecutiveErrors) it is
    //    ejected. Istio's default retry policy does not retry 503 (since
    //    1.24), so callers see those few answers, then none.
    let before = counters::read(mesh).await;
    let failing = mesh.select("reviews", Some("v1"), Some(&[0]));
    for &n in &failing {
        mesh.behave(n, Some(503), 0).await?;
    }
    let everyone = &CLASSES[2];
    let outcomes = send_many(&call(outbound, everyone), 240, 2).await;
    let after = counters::read(mesh).await;
    let errors = status_count(&outcomes, 503);
    let late_errors = outcomes
        .iter()
        .skip(outcomes.len() / 2)
        .filter(|o| o.status != Some(200))
        .count();
    let ejections = after.ejections - before.ejections;
    verdict(
        &mut ok,
        "outlier detection: a failing reviews v1 instance is ejected",
        if (1..=12).contains(&errors) && late_errors == 0 && ejections >= 1.0 {
            Ok(format!(
                "{errors} answers of 503 before ejection, then none; {ejections:.0} ejection(s)"
            ))
        } else {
            Err(format!(
                "503 answers {errors} (want 1..=12), non-200 in the second half {late_errors} (want 0), ejections {ejections:.0} (want >= 1)"
            ))
        },
    );
    for &n in &failing {
        mesh.behave(n, None, 0).await?;
    }

    // 4. Retries: orders-v1-0 answers 503; the orders VirtualService retries
    //    5xx on another instance, so callers see only 200s.
    let orders = &CLASSES[3];
    let failing = mesh.select("orders", Some("v1"), Some(&[0]));
    for &n in &failing {
        mesh.behave(n, Some(503), 0).await?;
    }
    let before = counters::read(mesh).await;
    let outcomes = send_many(&call(outbound, orders), 40, 2).await;
    let after = counters::read(mesh).await;
    let retries = after.retries - before.retries;
    let ok200 = status_count(&outcomes, 200);
    verdict(
        &mut ok,
        "retries: 5xx from one orders instance are retried on the other",
        if ok200 == outcomes.len() && retries >= 1.0 {
            Ok(format!(
                "{ok200}/{} answered 200 after {retries:.0} retries",
                outcomes.len()
            ))
        } else {
            Err(format!(
                "{ok200}/{} answered 200 (want all), retries {retries:.0} (want >= 1)",
                outcomes.len()
            ))
        },
    );
    for &n in &failing {
        mesh.behave(n, None, 0).await?;
    }

    // 5. Authorization: the seed's policy refuses an orders call without
    //    x-api-key with 403 before it reaches the app (after the token
    //    bucket, which the seed inserts at the front of the chain).
    let denied_class = &CLASSES[4];
    let outcomes = send_many(&call(outbound, denied_class), 10, 2).await;
    let denied = outcomes
        .iter()
        .filter(|o| o.status == Some(403))
        .filter(|o| o.version().is_none())
        .filter(|o| o.body.starts_with(b"RBAC: access denied"))
        .count();
    verdict(
        &mut ok,
        "authorization: orders without x-api-key gets 403 RBAC: access denied",
        if denied == outcomes.len() {
            Ok(format!(
                "{denied}/{} denied by default/orders-policy",
                outcomes.len()
            ))
        } else {
            Err(format!(
                "{denied}/{} answered 403 `RBAC: access denied` without reaching orders",
                outcomes.len()
            ))
        },
    );

    // 6. Token bucket: a burst well over 2 x 100 tokens meets 429s.
    let before = counters::read(mesh).await;
    let started = std::time::Instant::now();
    let outcomes = send_many(&call(outbound, orders), 400, 8).await;
    let elapsed = started.elapsed().as_secs_f64();
    let after = counters::read(mesh).await;
    // Two sidecars, each a bucket of 100 refilled with 10 per second.
    let most = 200.0 + 20.0 * (elapsed + 1.0);
    let limited = status_count(&outcomes, 429);
    let admitted = status_count(&outcomes, 200);
    let other = outcomes.len() - limited - admitted;
    // Envoy marks each refusal; the seed's filter asks for no x-ratelimit-* headers.
    let with_headers = outcomes
        .iter()
        .filter(|o| o.status == Some(429))
        .filter(|o| {
            o.headers
                .get("x-envoy-ratelimited")
                .is_some_and(|v| v == "true")
        })
        .count();
    verdict(
        &mut ok,
        "rate limit: the EnvoyFilter token bucket answers 429 past its burst",
        if limited >= 40
            && admitted >= 50
            && (admitted as f64) <= most
            && other == 0
            && with_headers == limited
            && after.rate_limited - before.rate_limited >= limited as f64
        {
            Ok(format!(
                "{admitted} admitted (at most {most:.0} possible), {limited} refused with 429 and x-envoy-ratelimited: true"
            ))
        } else {
            Err(format!(
                "{admitted} admitted (want 50..={most:.0}), {limited} got 429 (want >= 40, all with x-envoy-ratelimited: {with_headers}), {other} other answers (want 0), limited metric +{:.0}",
                after.rate_limited - before.rate_limited
            ))
        },
    );

    // 7. Tracing: a request that arrives with a sampled W3C traceparent keeps
    //    its trace id through both sidecars; productpage's sidecar reports a
    //    CLIENT span and reviews' sidecar a SERVER span whose parent it is.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut traced = call(outbound, &CLASSES[2]);
    traced.headers.push((
        "traceparent".into(),
        format!("00-{trace_id}-00f067aa0ba902b7-01"),
    ));
    let answer = client::send(&traced).await;
    let trace_bytes: Vec<u8> = (0..trace_id.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&trace_id[i..i + 2], 16).ok())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut trace = None;
    while std::time::Instant::now() < deadline {
        trace = collector.trace_through(&trace_bytes, "productpage.default", "reviews.default");
        if trace.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    verdict(
        &mut ok,
        "tracing: one request, one trace through both sidecars (OTLP)",
        match &trace {
            Some(spans) if answer.status == Some(200) => {
                println!("\n{}", waterfall(spans));
                Ok(format!(
                    "trace {trace_id} kept; CLIENT span from productpage's sidecar is the parent of reviews' SERVER span ({} spans)",
                    spans.len()
                ))
            }
            _ => Err(format!(
                "no trace {trace_id} with a productpage CLIENT span parenting a reviews SERVER span within 10 s (answer {:?}; the collector holds {:?} traces/spans)",
                answer.status,
                collector.received()
            )),
        },
    );

    let why = client::http_get(
        admin,
        "/debug/route?host=reviews:9080&path=/reviews/1&header=cookie:beta%3Dtrue",
    )
    .await;
    if let Ok(plain) = why {
        println!("\nWhy a beta request goes to v2 (productpage sidecar /debug/route):");
        println!("{}", String::from_utf8_lossy(&plain.body));
    }
    Ok(ok)
}
