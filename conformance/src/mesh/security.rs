//! Workload identities of a local mesh: one bootstrap token per service
//! account, handed out by the controller binary (`--print-token`), and the
//! mesh root the sidecars use to check the controller's certificate service.
use super::MeshError;
use crate::scenario::Workload;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Token files by `(namespace, service account)`.
pub type TokenFiles = BTreeMap<(String, String), PathBuf>;

/// Writes one token file per service account the workloads run as.
pub async fn issue_tokens(
    controller_bin: &Path,
    config_dir: &Path,
    work_dir: &Path,
    workloads: &[Workload],
) -> Result<TokenFiles, MeshError> {
    let dir = work_dir.join("tokens");
    std::fs::create_dir_all(&dir).map_err(|source| MeshError::Io {
        what: format!("create {}", dir.display()),
        source,
    })?;
    let mut files = TokenFiles::new();
    for w in workloads {
        let key = (w.namespace.clone(), w.service_account().to_owned());
        if files.contains_key(&key) {
            continue;
        }
        let who = format!("{}/{}", key.0, key.1);
        let out = tokio::process::Command::new(controller_bin)
            .arg("--config-dir")
            .arg(config_dir)
            .arg("--print-token")
            .arg(&who)
            .output()
            .await
            .map_err(|source| MeshError::Io {
                what: format!("{} --print-token {who}", controller_bin.display()),
                source,
            })?;
        if !out.status.success() {
            return Err(MeshError::Died(format!(
                "--print-token {who}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let path = dir.join(format!("{}.{}.token", key.0, key.1));
        std::fs::write(&path, String::from_utf8_lossy(&out.stdout).trim()).map_err(|source| {
            MeshError::Io {
                what: format!("write {}", path.display()),
                source,
            }
        })?;
        files.insert(key, path);
    }
    Ok(files)
}

/// Waits until the controller has written the mesh root (first start creates it).
pub async fn wait_for_root(root: &Path, timeout: Duration) -> Result<(), MeshError> {
    let deadline = Instant::now() + timeout;
    while !root.is_file() {
        if Instant::now() > deadline {
            return Err(MeshError::Timeout(format!(
                "the controller did not create {} in {timeout:?}",
                root.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
