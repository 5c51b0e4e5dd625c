//! `sluicectl proxy-status`: every connected proxy and whether it runs the
//! controller's latest configuration (like `istioctl proxy-status`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The controller's metrics/debug address (its `--metrics-listen`).
    #[arg(long, env = "SLUICE_CONTROLLER", default_value = "127.0.0.1:15014")]
    pub controller: SocketAddr,
    /// Print the controller's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize)]
struct SyncView {
    revision: u64,
    proxies: Vec<ProxySync>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxySync {
    id: String,
    namespace: String,
    version_sent: Option<String>,
    version_acked: Option<String>,
    last_nack: Option<Nack>,
}

#[derive(Deserialize)]
struct Nack {
    version: String,
    error: String,
}

/// Istio's sync states: SYNCED (acked what was sent), STALE (sent, not
/// acked, or refused), NOT SENT (nothing sent yet).
fn state(p: &ProxySync) -> &'static str {
    match (&p.version_sent, &p.version_acked) {
        (None, _) => "NOT SENT",
        (Some(sent), Some(acked)) if sent == acked => "SYNCED",
        _ => "STALE",
    }
}

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("proxy-status: {e}");
            return ExitCode::from(2);
        }
    };
    let body = match runtime.block_on(sluice_conformance::client::http_get(
        args.controller,
        "/debug/syncz",
    )) {
        Ok(resp) if resp.status == 200 => resp.body,
        Ok(resp) => {
            eprintln!(
                "proxy-status: {}/debug/syncz answered {}",
                args.controller, resp.status
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!(
                "proxy-status: cannot reach the controller at {} ({e}); is it running? set --controller",
                args.controller
            );
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return ExitCode::SUCCESS;
    }
    let view: SyncView = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("proxy-status: unexpected answer from the controller: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", render(&view));
    if view.proxies.iter().all(|p| state(p) == "SYNCED") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn render(view: &SyncView) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "controller revision {}", view.revision);
    let _ = writeln!(
        out,
        "{:<40} {:<16} {:<9} {:>6} {:>6}  LAST NACK",
        "NAME", "NAMESPACE", "CONFIG", "SENT", "ACKED"
    );
    for p in &view.proxies {
        let nack = p
            .last_nack
            .as_ref()
            .map(|n| format!("version {}: {}", n.version, n.error))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:<9} {:>6} {:>6}  {}",
            p.id,
            p.namespace,
            state(p),
            p.version_sent.as_deref().unwrap_or("-"),
            p.version_acked.as_deref().unwrap_or("-"),
            nack
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(sent: Option<&str>, acked: Option<&str>) -> ProxySync {
        ProxySync {
            id: "p".into(),
            namespace: "default".into(),
            version_sent: sent.map(Into::into),
            version_acked: acked.map(Into::into),
            last_nack: None,
        }
    }

    #[test]
    fn state_follows_sent_and_acked_versions() {
        assert_eq!(state(&proxy(None, None)), "NOT SENT");
        assert_eq!(state(&proxy(Some("3"), Some("3"))), "SYNCED");
        assert_eq!(state(&proxy(Some("4"), Some("3"))), "STALE");
        assert_eq!(state(&proxy(Some("4"), None)), "STALE");
    }
}
