//! `sluice-proxy`: the Sluice sidecar. Wires flags, the config stream and the
//! listeners together; everything else lives in the `sluice_proxy` library.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use sluice_proxy::admin::Surface;
use sluice_proxy::config::{Flags, Settings};
use sluice_proxy::metrics::Metrics;
use sluice_proxy::runtime::{self, Scheduler};
use sluice_proxy::state::Shared;
use sluice_proxy::{admin, identity, inbound, init, listener, outbound, xds};

/// How long in-flight work may take to finish after shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // `sluice-proxy init ...` programs iptables and exits; everything else is the sidecar.
    if let Some(args) = init::invocation() {
        return Ok(init::run(args)?);
    }
    let flags = Flags::parse();
    let available = runtime::available_cpus();
    let scheduler = Scheduler::for_workers(runtime::workers(flags.concurrency, available));
    if scheduler.workers() > available {
        tracing::warn!(
            workers = scheduler.workers(),
            cpus = available,
            "--concurrency asks for more worker threads than the CPUs this process may use"
        );
    }
    let settings = Settings::from(flags);
    scheduler
        .build()
        .context("starting the async runtime")?
        .block_on(serve(settings, scheduler, available))
}

async fn serve(settings: Settings, scheduler: Scheduler, available: usize) -> anyhow::Result<()> {
    // Every proxied connection costs descriptors; take what the hard limit allows.
    sluice_proxy::rlimit::raise_nofile_or_warn();
    let metrics = Arc::new(Metrics::new());
    metrics
        .worker_threads
        .set(i64::try_from(scheduler.workers()).unwrap_or(i64::MAX));
    let (config_tx, config_rx) = watch::channel(None);
    let (quit_tx, quit_rx) = watch::channel(false);
    let quit_tx = Arc::new(quit_tx);
    let (credentials_tx, credentials_rx) = watch::channel(None);
    let (shared, telemetry) = Shared::new(
        settings.clone(),
        config_rx.clone(),
        credentials_rx,
        Arc::clone(&metrics),
        quit_rx.clone(),
    );
    let shared = Arc::new(shared);
    metrics
        .telemetry
        .install_tcp_log(Box::new(sluice_proxy::telemetry::TcpAccessLog::new(
            Arc::clone(&shared.telemetry),
            config_rx.clone(),
        )));
    telemetry.spawn(config_rx);

    let outbound = bind(settings.outbound, "outbound").await?;
    let inbound = bind(settings.inbound, "inbound").await?;
    let admin = bind(settings.admin, "admin").await?;
    let health = bind(settings.health, "health").await?;
    let stats = bind(settings.stats, "stats").await?;
    tracing::info!(
        id = %settings.identity.id,
        outbound = %settings.outbound,
        inbound = %settings.inbound,
        workers = scheduler.workers(),
        cpus = available,
        "sluice-proxy listening"
    );

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(identity::run(
        settings.clone(),
        credentials_tx,
        Arc::clone(&metrics),
        quit_rx.clone(),
    ));
    tasks.spawn(xds::run(
        settings.clone(),
        config_tx,
        Arc::clone(&metrics),
        quit_rx.clone(),
    ));
    tasks.spawn(outbound::run(Arc::clone(&shared), outbound));
    tasks.spawn(inbound::run(Arc::clone(&shared), inbound));
    tasks.spawn(admin::run(
        Arc::clone(&shared),
        admin,
        Surface::Admin,
        Arc::clone(&quit_tx),
    ));
    tasks.spawn(admin::run(
        Arc::clone(&shared),
        health,
        Surface::Health,
        Arc::clone(&quit_tx),
    ));
    tasks.spawn(admin::run(
        Arc::clone(&shared),
        stats,
        Surface::Stats,
        Arc::clone(&quit_tx),
    ));

    let mut quit_wait = quit_rx.clone();
    tokio::select! {
        _ = terminate_signal() => tracing::info!("SIGTERM/SIGINT received; draining"),
        _ = quit_wait.wait_for(|q| *q) => {}
    }
    quit_tx.send_replace(true);
    // Connections finish their in-flight requests; stop waiting after DRAIN.
    let drained = tokio::time::timeout(DRAIN, async {
        while tasks.join_next().await.is_some() {}
        while listener::open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::info!("drain timeout; exiting with work in flight");
    }
    Ok(())
}

async fn terminate_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = ctrl_c => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
