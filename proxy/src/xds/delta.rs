//! Rebuilds a complete configuration from the last applied one and a
//! `ConfigDelta` (entries keyed by name, lists kept ordered by name).

use sluice_api::config as pb;

/// Why a delta could not be applied; the proxy NACKs with this text.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The delta was computed against another version than the one running.
    #[error("delta base {base} but applied {applied}")]
    WrongBase { base: String, applied: String },
    /// A delta before any complete configuration on this stream.
    #[error("delta base {base} but no configuration applied yet")]
    NoBase { base: String },
    /// A removal names an entry the running configuration does not have.
    #[error("delta removes {kind} {name:?}, which version {applied} does not have")]
    UnknownRemoval {
        kind: &'static str,
        name: String,
        applied: String,
    },
}

/// The configuration `delta` turns `base` (version `applied`) into, by the
/// protocol's shared rules (`sluice_api::delta`): lists stay ordered by name.
pub fn apply(
    applied: &str,
    base: &pb::ProxyConfig,
    delta: &pb::ConfigDelta,
) -> Result<pb::ProxyConfig, DeltaError> {
    if delta.base_version != applied {
        return Err(DeltaError::WrongBase {
            base: delta.base_version.clone(),
            applied: applied.to_owned(),
        });
    }
    sluice_api::delta::apply(base, delta).map_err(|e| match e {
        sluice_api::delta::InvalidDelta::UnknownRemoval { kind, name } => {
            DeltaError::UnknownRemoval {
                kind,
                name,
                applied: applied.to_owned(),
            }
        }
    })
}

#[cfg(test)]
mod tests;
