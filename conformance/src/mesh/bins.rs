//! Finds the mesh's binaries: `--bin-dir`, then `$SLUICE_BIN_DIR`, then next to the running
//! executable (and its parent when that is cargo's `deps/`).
use super::MeshError;
use std::path::{Path, PathBuf};

/// Environment variable naming the directory with the Sluice binaries.
pub const BIN_DIR_ENV: &str = "SLUICE_BIN_DIR";

/// Directories searched, in order.
pub fn search_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = explicit {
        dirs.push(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os(BIN_DIR_ENV) {
        dirs.push(PathBuf::from(d));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        if dir.file_name().is_some_and(|n| n == "deps")
            && let Some(parent) = dir.parent()
        {
            dirs.push(parent.to_path_buf());
        }
        dirs.push(dir);
    }
    dirs
}

/// The path of binary `name`, or an error listing where it was looked for.
pub fn find(name: &str, explicit: Option<&Path>) -> Result<PathBuf, MeshError> {
    let dirs = search_dirs(explicit);
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| MeshError::MissingBinary {
            name: name.to_string(),
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}
