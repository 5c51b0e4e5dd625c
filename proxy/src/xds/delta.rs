//! Rebuilds a complete configuration from the last applied one and a
//! `ConfigDelta` (entries keyed by name, lists kept ordered by name).

use std::collections::BTreeMap;

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

/// An entry of a keyed list; deltas address entries by this name.
trait Named {
    fn name(&self) -> &str;
}

impl Named for pb::VirtualHost {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for pb::Cluster {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for pb::TcpService {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The configuration `delta` turns `base` (version `applied`) into.
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
    Ok(pb::ProxyConfig {
        virtual_hosts: merge(
            "virtual host",
            applied,
            &base.virtual_hosts,
            &delta.virtual_hosts,
            &delta.removed_virtual_hosts,
        )?,
        clusters: merge(
            "cluster",
            applied,
            &base.clusters,
            &delta.clusters,
            &delta.removed_clusters,
        )?,
        tcp_services: merge(
            "tcp service",
            applied,
            &base.tcp_services,
            &delta.tcp_services,
            &delta.removed_tcp_services,
        )?,
        inbound: delta.inbound.clone().or_else(|| base.inbound.clone()),
        self_: delta.self_.clone().or_else(|| base.self_.clone()),
    })
}

fn merge<T: Named + Clone>(
    kind: &'static str,
    applied: &str,
    base: &[T],
    upserts: &[T],
    removed: &[String],
) -> Result<Vec<T>, DeltaError> {
    let mut by_name: BTreeMap<&str, &T> = base.iter().map(|e| (e.name(), e)).collect();
    for name in removed {
        if by_name.remove(name.as_str()).is_none() {
            return Err(DeltaError::UnknownRemoval {
                kind,
                name: name.clone(),
                applied: applied.to_owned(),
            });
        }
    }
    for e in upserts {
        by_name.insert(e.name(), e);
    }
    Ok(by_name.into_values().cloned().collect())
}

#[cfg(test)]
mod tests;
