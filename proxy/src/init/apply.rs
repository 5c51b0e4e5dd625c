//! Applies the rendered rules: one `iptables-restore --noflush` transaction
//! per family, or plain `iptables` commands where restore is missing.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use clap::Parser as _;

use super::{BadFlag, Capture, Family, InitFlags, rules};

/// Why `init` could not program the nat table.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Flag(#[from] BadFlag),
    #[error("{0} not found on PATH (install the iptables package)")]
    MissingTool(&'static str),
    #[error("running {tool}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} {args} failed ({status}): {stderr}")]
    Failed {
        tool: &'static str,
        args: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// The iptables binaries of one family.
struct Tools {
    family: Family,
    iptables: &'static str,
    restore: &'static str,
}

const V4: Tools = Tools {
    family: Family::V4,
    iptables: "iptables",
    restore: "iptables-restore",
};
const V6: Tools = Tools {
    family: Family::V6,
    iptables: "ip6tables",
    restore: "ip6tables-restore",
};

/// Runs `sluice-proxy init` with `args` (the first is the subcommand name).
pub fn run(args: Vec<OsString>) -> Result<(), ApplyError> {
    let flags = InitFlags::parse_from(args);
    let capture = Capture::try_from(&flags)?;
    if flags.dry_run {
        print!("{}", rules::render(&capture, Family::V4, ""));
        println!("# ip6tables-restore input follows");
        print!("{}", rules::render(&capture, Family::V6, ""));
        return Ok(());
    }
    apply(&capture, &V4)?;
    if on_path(V6.iptables).is_some() {
        apply(&capture, &V6)?;
    } else {
        tracing::info!("ip6tables not found; skipping IPv6 capture");
    }
    Ok(())
}

fn apply(capture: &Capture, tools: &Tools) -> Result<(), ApplyError> {
    if on_path(tools.iptables).is_none() {
        return Err(ApplyError::MissingTool(tools.iptables));
    }
    let existing = output(tools.iptables, &["-w", "-t", "nat", "-S"], None)?;
    let text = rules::render(capture, tools.family, &existing);
    if on_path(tools.restore).is_some() {
        output(tools.restore, &["-w", "--noflush"], Some(&text))?;
        tracing::info!(
            tool = tools.restore,
            "capture rules applied in one transaction"
        );
        return Ok(());
    }
    tracing::info!(
        tool = tools.iptables,
        "{} not found; applying rules one by one",
        tools.restore
    );
    for line in text.lines() {
        if let Some(chain) = line.strip_prefix(':').and_then(|l| l.split(' ').next()) {
            // -N fails when the chain exists; -F then empties it either way.
            let _ = output(tools.iptables, &["-w", "-t", "nat", "-N", chain], None);
            output(tools.iptables, &["-w", "-t", "nat", "-F", chain], None)?;
        } else if line.starts_with("-A ") || line.starts_with("-D ") {
            let mut args = vec!["-w", "-t", "nat"];
            args.extend(line.split_whitespace());
            output(tools.iptables, &args, None)?;
        }
    }
    Ok(())
}

/// Runs `tool args`, feeding `stdin`; its stdout on success.
fn output(tool: &'static str, args: &[&str], stdin: Option<&str>) -> Result<String, ApplyError> {
    let spawn = |source| ApplyError::Spawn { tool, source };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(ApplyError::Failed {
            tool,
            args: args.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where `name` is on PATH, if anywhere.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
