//! Credentials mounted as files (`--credentials-dir`): read at start, then
//! polled every second and re-published when they change and still parse.

use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{Credentials, IdentityError, parse, publish};
use crate::metrics::Metrics;

/// Leaf first, then intermediates.
const CHAIN: &str = "cert-chain.pem";
/// The leaf's private key.
const KEY: &str = "key.pem";
/// One or more roots.
const ROOTS: &str = "root-cert.pem";
/// How often the files are looked at; Kubernetes updates mounted secrets
/// within about a minute, so a second costs little and is quick enough.
const POLL: Duration = Duration::from_secs(1);

/// The three files as read, with what identifies their version.
struct Snapshot {
    chain: Vec<u8>,
    key: Vec<u8>,
    roots: Vec<u8>,
    /// Hash of every file's mtime and content: editors and Kubernetes' symlink
    /// swaps may keep either one unchanged, never both.
    fingerprint: u64,
}

async fn read(path: PathBuf) -> Result<(Vec<u8>, Option<SystemTime>), IdentityError> {
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|source| IdentityError::Read {
            path: path.clone(),
            source,
        })?;
    let mtime = tokio::fs::metadata(&path)
        .await
        .ok()
        .and_then(|m| m.modified().ok());
    Ok((bytes, mtime))
}

async fn snapshot(dir: &Path) -> Result<Snapshot, IdentityError> {
    let mut hasher = DefaultHasher::new();
    let mut files = Vec::with_capacity(3);
    for name in [CHAIN, KEY, ROOTS] {
        let (bytes, mtime) = read(dir.join(name)).await?;
        mtime.hash(&mut hasher);
        bytes.hash(&mut hasher);
        files.push(bytes);
    }
    let roots = files.pop().unwrap_or_default();
    let key = files.pop().unwrap_or_default();
    let chain = files.pop().unwrap_or_default();
    Ok(Snapshot {
        chain,
        key,
        roots,
        fingerprint: hasher.finish(),
    })
}

fn parse_snapshot(dir: &Path, files: &Snapshot) -> Result<Credentials, IdentityError> {
    let name = |file: &str| dir.join(file).display().to_string();
    let chain = parse::certificates(&name(CHAIN), &files.chain)?;
    let key = parse::private_key(&name(KEY), &files.key)?;
    let roots = parse::certificates(&name(ROOTS), &files.roots)?;
    let what = format!("{} with {}", name(KEY), name(CHAIN));
    parse::assemble(&what, chain, key, roots)
}

/// Reads and checks the credentials in `dir` (`cert-chain.pem`, `key.pem`,
/// `root-cert.pem`); errors name the offending file.
#[allow(
    dead_code,
    reason = "a helper for other modules' tests; the proxy itself polls"
)]
pub fn load_dir(dir: &Path) -> Result<Credentials, IdentityError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| IdentityError::Read { path, source })
    };
    let files = Snapshot {
        chain: read(CHAIN)?,
        key: read(KEY)?,
        roots: read(ROOTS)?,
        fingerprint: 0,
    };
    parse_snapshot(dir, &files)
}

/// Publishes the credentials in `dir` whenever they change, until shutdown.
pub(super) async fn watch(
    dir: PathBuf,
    tx: watch::Sender<Option<Arc<Credentials>>>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The last version looked at, good or bad, so a broken file is reported
    // once rather than every second.
    let mut seen: Option<u64> = None;
    let mut unreadable_reported = false;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|quit| *quit) => return,
        }
        let files = match snapshot(&dir).await {
            Ok(files) => files,
            Err(e) => {
                // A missing file is usually a write in progress; say it once.
                if !unreadable_reported {
                    tracing::warn!("mounted credentials unusable, keeping the previous ones: {e}");
                    unreadable_reported = true;
                }
                seen = None;
                continue;
            }
        };
        unreadable_reported = false;
        if seen == Some(files.fingerprint) {
            continue;
        }
        seen = Some(files.fingerprint);
        match parse_snapshot(&dir, &files) {
            Ok(credentials) => {
                if let Err(e) = parse::verify_chain(&credentials.chain, &credentials.roots) {
                    // Still published: the files are what the operator chose,
                    // and peers will judge the chain themselves.
                    tracing::warn!(dir = %dir.display(), "mounted credentials: {e}");
                }
                tracing::info!(
                    identity = %credentials.spiffe_id,
                    dir = %dir.display(),
                    roots = credentials.roots.len(),
                    expires_in_s = remaining(credentials.not_after),
                    "loaded mounted workload credentials"
                );
                publish(&tx, &metrics, credentials);
            }
            Err(e) => {
                tracing::warn!("mounted credentials rejected, keeping the previous ones: {e}");
            }
        }
    }
}

fn remaining(not_after: SystemTime) -> u64 {
    not_after
        .duration_since(SystemTime::now())
        .map_or(0, |d| d.as_secs())
}
