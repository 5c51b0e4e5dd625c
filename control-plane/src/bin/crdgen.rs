//! `sluice-crdgen [DIR]`: writes one CustomResourceDefinition YAML per kind
//! into DIR, or prints them all (as one multi-document stream) without DIR.
#![forbid(unsafe_code)]

use anyhow::Context;
use sluice_control_plane::crd::crd_documents;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let docs = crd_documents();
    match std::env::args_os().nth(1).map(PathBuf::from) {
        None => {
            for (_, yaml) in &docs {
                print!("---\n{yaml}");
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, yaml) in &docs {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
