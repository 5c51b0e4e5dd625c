//! Deltas between complete configurations, keyed by entry name: what the
//! controller sends after an ACK (`diff`), and how a receiver — the proxy, the
//! benchmark's simulator — rebuilds the new config (`apply`). One
//! implementation for both ends of the protocol.

use crate::config as pb;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// An entry of a keyed list in a configuration.
pub trait Named {
    /// The key deltas use.
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

/// A delta that does not fit the configuration it is applied to.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDelta {
    /// A removal names an entry the base does not have: the two sides disagree.
    #[error("delta removes {kind} {name:?}, which the base version does not have")]
    UnknownRemoval {
        /// `virtual host`, `cluster` or `tcp service`.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

/// Orders every keyed list by name: the order complete configurations are
/// sent in, so that applying a delta reproduces them exactly.
pub fn order_by_name(config: &mut pb::ProxyConfig) {
    config.virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    config.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    config.tcp_services.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Changes from `old` to `new`: entries added or different, names removed,
/// and `inbound` / `self` / `telemetry` / `outbound` only when they differ. `base_version` is left empty.
pub fn diff(old: &pb::ProxyConfig, new: &pb::ProxyConfig) -> pb::ConfigDelta {
    let (virtual_hosts, removed_virtual_hosts) = diff_list(&old.virtual_hosts, &new.virtual_hosts);
    let (clusters, removed_clusters) = diff_list(&old.clusters, &new.clusters);
    let (tcp_services, removed_tcp_services) = diff_list(&old.tcp_services, &new.tcp_services);
    pb::ConfigDelta {
        base_version: String::new(),
        virtual_hosts,
        clusters,
        tcp_services,
        removed_virtual_hosts,
        removed_clusters,
        removed_tcp_services,
        inbound: changed(&old.inbound, &new.inbound),
        self_: changed(&old.self_, &new.self_),
        telemetry: changed(&old.telemetry, &new.telemetry),
        outbound: changed(&old.outbound, &new.outbound),
    }
}

/// Whether a delta changes nothing.
pub fn is_empty(delta: &pb::ConfigDelta) -> bool {
    delta.virtual_hosts.is_empty()
        && delta.clusters.is_empty()
        && delta.tcp_services.is_empty()
        && delta.removed_virtual_hosts.is_empty()
        && delta.removed_clusters.is_empty()
        && delta.removed_tcp_services.is_empty()
        && delta.inbound.is_none()
        && delta.self_.is_none()
        && delta.telemetry.is_none()
        && delta.outbound.is_none()
}

/// `new` when it differs from `old`. An unset side that becomes set is sent;
/// one that becomes unset is sent as its default, which receivers read alike.
fn changed<T: PartialEq + Clone + Default>(old: &Option<T>, new: &Option<T>) -> Option<T> {
    if old == new {
        None
    } else {
        Some(new.clone().unwrap_or_default())
    }
}

/// Entries of `new` absent from `old` or different there, and names of `old` absent from `new`.
pub fn diff_list<T: Named + PartialEq + Clone>(old: &[T], new: &[T]) -> (Vec<T>, Vec<String>) {
    let before: BTreeMap<&str, &T> = old.iter().map(|e| (e.name(), e)).collect();
    let after: BTreeSet<&str> = new.iter().map(Named::name).collect();
    let mut upserts: Vec<T> = new
        .iter()
        .filter(|e| before.get(e.name()) != Some(e))
        .cloned()
        .collect();
    upserts.sort_by(|a, b| a.name().cmp(b.name()));
    let removed = before
        .keys()
        .filter(|name| !after.contains(*name))
        .map(|name| (*name).to_owned())
        .collect();
    (upserts, removed)
}

/// The configuration `delta` turns `base` into, every list ordered by name.
pub fn apply(
    base: &pb::ProxyConfig,
    delta: &pb::ConfigDelta,
) -> Result<pb::ProxyConfig, InvalidDelta> {
    let mut config = base.clone();
    apply_in_place(&mut config, delta)?;
    Ok(config)
}

/// [`apply`] without copying the base; on error `config` is left unchanged.
pub fn apply_in_place(
    config: &mut pb::ProxyConfig,
    delta: &pb::ConfigDelta,
) -> Result<(), InvalidDelta> {
    // Every removal is checked before anything changes.
    check_removals(
        "virtual host",
        &config.virtual_hosts,
        &delta.removed_virtual_hosts,
    )?;
    check_removals("cluster", &config.clusters, &delta.removed_clusters)?;
    check_removals(
        "tcp service",
        &config.tcp_services,
        &delta.removed_tcp_services,
    )?;
    merge(
        &mut config.virtual_hosts,
        &delta.virtual_hosts,
        &delta.removed_virtual_hosts,
    );
    merge(
        &mut config.clusters,
        &delta.clusters,
        &delta.removed_clusters,
    );
    merge(
        &mut config.tcp_services,
        &delta.tcp_services,
        &delta.removed_tcp_services,
    );
    if let Some(inbound) = &delta.inbound {
        config.inbound = Some(inbound.clone());
    }
    if let Some(meta) = &delta.self_ {
        config.self_ = Some(meta.clone());
    }
    if let Some(outbound) = &delta.outbound {
        config.outbound = Some(*outbound);
    }
    if let Some(telemetry) = &delta.telemetry {
        config.telemetry = Some(telemetry.clone());
    }
    Ok(())
}

fn check_removals<T: Named>(
    kind: &'static str,
    list: &[T],
    removed: &[String],
) -> Result<(), InvalidDelta> {
    if removed.is_empty() {
        return Ok(());
    }
    let present: HashSet<&str> = list.iter().map(Named::name).collect();
    match removed.iter().find(|name| !present.contains(name.as_str())) {
        Some(name) => Err(InvalidDelta::UnknownRemoval {
            kind,
            name: name.clone(),
        }),
        None => Ok(()),
    }
}

/// Removes, replaces and inserts by name, keeping `list` ordered by name
/// (binary search, so a small delta on a large config stays cheap).
fn merge<T: Named + Clone>(list: &mut Vec<T>, upserts: &[T], removed: &[String]) {
    if !list.is_sorted_by(|a, b| a.name() <= b.name()) {
        list.sort_by(|a, b| a.name().cmp(b.name()));
    }
    if !removed.is_empty() {
        let removed: HashSet<&str> = removed.iter().map(String::as_str).collect();
        list.retain(|e| !removed.contains(e.name()));
    }
    for e in upserts {
        match list.binary_search_by(|probe| probe.name().cmp(e.name())) {
            Ok(i) => list[i] = e.clone(),
            Err(i) => list.insert(i, e.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
