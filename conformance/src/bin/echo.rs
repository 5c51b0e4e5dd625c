//! `sluice-echo`: the conformance suite's echo workload (see `CONFORMANCE.md`).
#![forbid(unsafe_code)]

use clap::Parser;
use sluice_conformance::echo::{BoundEcho, EchoConfig};
use sluice_conformance::scenario::Protocol;
use std::net::SocketAddr;

#[derive(Parser)]
#[command(
    name = "sluice-echo",
    about = "Echo workload for Sluice conformance scenarios"
)]
struct Args {
    /// Application listener.
    #[arg(long)]
    addr: SocketAddr,
    /// Service name reported in x-echo-service.
    #[arg(long)]
    service: String,
    /// Version reported in x-echo-version.
    #[arg(long, default_value = "v1")]
    version: String,
    /// Instance reported in x-echo-instance.
    #[arg(long, default_value = "0")]
    instance: String,
    /// Namespace reported in x-echo-namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// http | http2 | grpc | tcp.
    #[arg(long, default_value = "http", value_parser = parse_protocol)]
    protocol: Protocol,
    /// Control listener for `POST /behave`.
    #[arg(long)]
    control_addr: Option<SocketAddr>,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "http" => Ok(Protocol::Http),
        "http2" => Ok(Protocol::Http2),
        "grpc" => Ok(Protocol::Grpc),
        "tcp" => Ok(Protocol::Tcp),
        other => Err(format!(
            "unknown protocol {other}: http, http2, grpc or tcp"
        )),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let echo = BoundEcho::bind(EchoConfig {
        addr: args.addr,
        service: args.service,
        version: args.version,
        instance: args.instance,
        namespace: args.namespace,
        protocol: args.protocol,
        control_addr: args.control_addr,
    })
    .await?;
    echo.serve().await;
    Ok(())
}
