//! The mesh index: every accepted resource, the rejected ones with their
//! reasons, and the service catalog derived from them. One immutable value per
//! revision; translation reads it without locks.

use crate::mesh_config::MeshConfig;
use crate::metrics::ControllerMetrics;
use crate::resource::{Resource, ResourceKey, parse_documents};
use crate::services::ServiceCatalog;
use crate::translate::OutboundCache;
use crate::validation::validate;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[cfg(test)]
mod tests;

/// A resource's canonical JSON: equal fingerprints mean equal objects.
type Fingerprint = Arc<str>;

/// Source of `own_generation` values, unique across every index of the
/// process, so indexes from different intakes never look alike.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

/// Namespace given to documents that name none, as `kubectl apply` does.
pub const DEFAULT_NAMESPACE: &str = "default";

/// An object (or document) that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// File the document came from.
    pub file: String,
    /// The object, when its kind and name could be read.
    pub object: Option<String>,
    /// One line naming the field, e.g. `spec.http[0].route[1].weight: must be >= 0`.
    pub message: String,
}

/// One consistent view of the mesh configuration.
#[derive(Debug)]
pub struct MeshIndex {
    /// Increases with every change of the accepted resources.
    pub revision: u64,
    /// When the change that produced this revision was first seen.
    pub changed_at: Instant,
    /// Accepted resources by key.
    pub resources: BTreeMap<ResourceKey, Arc<Resource>>,
    /// Refused objects and documents.
    pub rejected: Vec<Rejection>,
    /// Services and endpoints derived from the resources; shared with the
    /// previous index when no ServiceEntry or WorkloadEntry changed.
    pub catalog: Arc<ServiceCatalog>,
    /// Mesh-wide settings in force.
    pub mesh: Arc<MeshConfig>,
    /// Outbound translations of this revision, shared by proxies alike.
    pub outbound_cache: crate::translate::OutboundCache,
    /// Label keys that some object selects proxies by (VirtualService
    /// `sourceLabels`, DestinationRule `workloadSelector`): the only labels
    /// that can change a proxy's outbound config.
    pub selecting_label_keys: BTreeSet<String>,
    /// Equal in two indexes only when every input of a proxy's own parts
    /// (everything but [`crate::translate::OUTBOUND_ONLY_KINDS`], and the
    /// mesh config) is the same in both, so own parts translated for one hold
    /// for the other.
    pub own_generation: u64,
    /// Shared with the intake and with the next index while nothing changes.
    fingerprint: Arc<BTreeMap<ResourceKey, Fingerprint>>,
    /// RequestAuthentication key sets fetched for this revision.
    pub jwks: crate::jwks::Snapshot,
}

impl MeshIndex {
    /// The accepted objects of one kind (keys sort by kind first, so this is a
    /// range, not a scan of everything: proxies ask for a few kinds each).
    pub fn of_kind(&self, kind: &'static str) -> impl Iterator<Item = &Resource> {
        let start = ResourceKey {
            kind,
            namespace: "".into(),
            name: "".into(),
        };
        self.resources
            .range(start..)
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, r)| r.as_ref())
    }

    /// An empty index at revision 0.
    pub fn empty() -> Self {
        Self::build(
            0,
            Instant::now(),
            BTreeMap::new(),
            Vec::new(),
            Arc::default(),
        )
    }

    /// Builds an index, fingerprinting every resource.
    fn build(
        revision: u64,
        changed_at: Instant,
        resources: BTreeMap<ResourceKey, Arc<Resource>>,
        rejected: Vec<Rejection>,
        mesh: Arc<MeshConfig>,
    ) -> Self {
        let fingerprint = resources
            .iter()
            .map(|(k, r)| (k.clone(), fingerprint(r)))
            .collect();
        Self::with_fingerprints(
            (revision, next_generation()),
            changed_at,
            resources,
            (rejected, mesh),
            (Arc::new(fingerprint), None),
        )
    }

    /// Builds an index whose resources are already fingerprinted:
    /// `(revision, own_generation)`, `(rejected, mesh)`, and `(fingerprints,
    /// catalog)` where a given catalog must be the one these resources make.
    fn with_fingerprints(
        (revision, own_generation): (u64, u64),
        changed_at: Instant,
        resources: BTreeMap<ResourceKey, Arc<Resource>>,
        (rejected, mesh): (Vec<Rejection>, Arc<MeshConfig>),
        (fingerprint, catalog): (
            Arc<BTreeMap<ResourceKey, Fingerprint>>,
            Option<Arc<ServiceCatalog>>,
        ),
    ) -> Self {
        let catalog = catalog.unwrap_or_else(|| {
            Arc::new(ServiceCatalog::build(
                resources.values().map(|r| r.as_ref()),
            ))
        });
        let selecting_label_keys = selecting_label_keys(resources.values().map(|r| r.as_ref()));
        Self {
            revision,
            changed_at,
            resources,
            rejected,
            catalog,
            mesh,
            outbound_cache: Default::default(),
            selecting_label_keys,
            own_generation,
            fingerprint,
            jwks: Default::default(),
        }
    }

    /// Builds an index from resources directly (tests, Kubernetes mode).
    pub fn from_resources(revision: u64, resources: impl IntoIterator<Item = Resource>) -> Self {
        let resources = resources
            .into_iter()
            .map(|r| (r.key(), Arc::new(r)))
            .collect();
        Self::build(
            revision,
            Instant::now(),
            resources,
            Vec::new(),
            Arc::default(),
        )
    }

    /// `Some(self)` when it differs from `previous` in accepted resources or rejections.
    pub fn changed_from(self, previous: &MeshIndex) -> Option<Self> {
        let same = Arc::ptr_eq(&self.fingerprint, &previous.fingerprint)
            || self.fingerprint == previous.fingerprint;
        let keys_changed = self.jwks.version != previous.jwks.version;
        (!same || keys_changed || self.rejected != previous.rejected).then_some(self)
    }
}

/// Every label key that a VirtualService match, a DestinationRule selector
/// or a Sidecar selector of `resources` looks at.
fn selecting_label_keys<'a>(resources: impl Iterator<Item = &'a Resource>) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for r in resources {
        match r {
            Resource::VirtualService(vs) => {
                let http = vs.spec.http.iter().flat_map(|h| &h.match_);
                keys.extend(http.flat_map(|m| m.source_labels.keys().cloned()));
                let tcp = vs.spec.tcp.iter().flat_map(|t| &t.match_);
                keys.extend(tcp.flat_map(|m| m.source_labels.keys().cloned()));
                let tls = vs.spec.tls.iter().flat_map(|t| &t.match_);
                keys.extend(tls.flat_map(|m| m.source_labels.keys().cloned()));
            }
            Resource::DestinationRule(dr) => {
                if let Some(sel) = &dr.spec.workload_selector {
                    keys.extend(sel.match_labels.keys().cloned());
                }
            }
            Resource::Sidecar(s) => {
                if let Some(sel) = &s.spec.workload_selector {
                    keys.extend(sel.labels.keys().cloned());
                }
            }
            _ => {}
        }
    }
    keys
}

fn fingerprint(resource: &Resource) -> Fingerprint {
    serde_json::to_string(resource).unwrap_or_default().into()
}

/// Whether two fingerprint maps agree on every object of the kinds `read` picks.
fn same_inputs(
    a: &BTreeMap<ResourceKey, Fingerprint>,
    b: &BTreeMap<ResourceKey, Fingerprint>,
    read: fn(&str) -> bool,
) -> bool {
    a.iter()
        .filter(|(k, _)| read(k.kind))
        .eq(b.iter().filter(|(k, _)| read(k.kind)))
}

/// Kinds a proxy's own parts read: all but the outbound-only ones.
fn own_part_kind(kind: &str) -> bool {
    !crate::translate::OUTBOUND_ONLY_KINDS.contains(&kind)
}

/// Kinds the service catalog is built from (see `ServiceCatalog::build`).
fn catalog_kind(kind: &str) -> bool {
    kind == crate::resource::kind::SERVICE_ENTRY || kind == crate::resource::kind::WORKLOAD_ENTRY
}

/// One document of a file, parsed and checked.
enum Doc {
    /// Not readable as an object: the rejection's message.
    Unreadable(String),
    /// An object of a kind Sluice does not serve: refused, but it cannot
    /// stand for any of Sluice's objects, so nothing is kept for it.
    Foreign(String),
    /// One of Sluice's objects that does not parse (an unknown field, a
    /// value of the wrong type): refused, its last good version kept.
    Refused { key: ResourceKey, message: String },
    /// An object, its validation problems (`path: message`; none when
    /// valid) and its fingerprint.
    Object {
        key: ResourceKey,
        resource: Arc<Resource>,
        problems: Vec<String>,
        fingerprint: Fingerprint,
    },
}

/// A file's documents as of its text: parsing and validating are pure, so
/// an unchanged file is not parsed again (a change usually touches one file
/// of many).
struct ParsedFile {
    text: Arc<str>,
    docs: Arc<Vec<Doc>>,
}

fn parse_file(text: &str) -> Vec<Doc> {
    parse_documents(text, DEFAULT_NAMESPACE)
        .into_iter()
        .map(|doc| match doc {
            Err(e) => match &e.key {
                Some(key) => Doc::Refused {
                    key: key.clone(),
                    message: if e.path.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.path, e.message)
                    },
                },
                None if e.foreign_kind => Doc::Foreign(e.to_string()),
                None => Doc::Unreadable(e.to_string()),
            },
            Ok(resource) => {
                let problems = validate(&resource)
                    .into_iter()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .collect();
                Doc::Object {
                    key: resource.key(),
                    fingerprint: fingerprint(&resource),
                    resource: Arc::new(resource),
                    problems,
                }
            }
        })
        .collect()
}

/// Turns file contents into indexes, keeping the last good version of every
/// object whose new version is refused (nothing valid is ever lost to a typo).
pub struct Intake {
    mesh: Arc<MeshConfig>,
    revision: u64,
    own_generation: u64,
    /// Accepted objects: (file, object, fingerprint).
    accepted: BTreeMap<ResourceKey, (Arc<str>, Arc<Resource>, Fingerprint)>,
    fingerprint: Arc<BTreeMap<ResourceKey, Fingerprint>>,
    /// Every readable file of the last ingest, parsed.
    parsed: HashMap<String, ParsedFile>,
    /// The catalog of the last index.
    catalog: Option<Arc<ServiceCatalog>>,
    /// The outbound translations of the last index whose accepted objects
    /// changed, with its fingerprints: the next index reuses its clusters
    /// when only VirtualServices differ.
    last_outbound: Option<(OutboundCache, Arc<BTreeMap<ResourceKey, Fingerprint>>)>,
    /// Fetches the key sets RequestAuthentications name; `None` in tests
    /// and tools that never serve proxies.
    jwks: Option<Arc<crate::jwks::JwksStore>>,
    /// The key set version of the last index.
    jwks_version: u64,
}

impl Default for Intake {
    fn default() -> Self {
        Self::new()
    }
}

impl Intake {
    /// Starts with nothing accepted and the default mesh settings.
    pub fn new() -> Self {
        Self::with_mesh(MeshConfig::default())
    }

    /// Starts with nothing accepted and the given mesh settings.
    pub fn with_mesh(mesh: MeshConfig) -> Self {
        Self {
            mesh: Arc::new(mesh),
            revision: 0,
            own_generation: next_generation(),
            accepted: BTreeMap::new(),
            fingerprint: Arc::default(),
            parsed: HashMap::new(),
            catalog: None,
            last_outbound: None,
            jwks: None,
            jwks_version: 0,
        }
    }

    /// Fetches the key sets of RequestAuthentications with `store`; its
    /// changes must lead to a new ingest (see [`crate::jwks::JwksStore::subscribe`]).
    pub fn with_jwks(mut self, store: Arc<crate::jwks::JwksStore>) -> Self {
        self.jwks = Some(store);
        self
    }

    /// Waits (within the fetch timeouts) for the first fetch of every key
    /// set the last ingest wanted; `true` when there were any, so the caller
    /// ingests again before publishing its first index.
    pub async fn first_key_sets(&self) -> bool {
        match &self.jwks {
            Some(store) => store.first_fetches().await,
            None => false,
        }
    }

    /// Wakes when fetched key sets changed: the caller ingests again then.
    pub fn key_set_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.jwks.as_ref().map(|s| {
            let mut rx = s.subscribe();
            // A fetch may have finished since the last ingest: look once.
            rx.mark_changed();
            rx
        })
    }

    /// Tells the store what the accepted objects need; returns what it knows.
    fn key_sets(
        &self,
        accepted: &BTreeMap<ResourceKey, (Arc<str>, Arc<Resource>, Fingerprint)>,
    ) -> crate::jwks::Snapshot {
        let Some(store) = &self.jwks else {
            return crate::jwks::Snapshot::default();
        };
        // Policies attached by targetRef(s) never reach sidecars: no fetch for them.
        let rules = accepted.values().flat_map(|(_, r, _)| match r.as_ref() {
            Resource::RequestAuthentication(ra)
                if ra.spec.target_ref.is_none() && ra.spec.target_refs.is_empty() =>
            {
                ra.spec.jwt_rules.as_slice()
            }
            _ => &[],
        });
        store.want(crate::jwks::sources_of(rules));
        store.snapshot()
    }

    /// The documents of `file`, parsed again only when its text changed.
    fn documents(
        &mut self,
        parsed: &mut HashMap<String, ParsedFile>,
        file: String,
        text: Arc<str>,
    ) -> Arc<Vec<Doc>> {
        // Texts the config folder kept from an earlier read are the same
        // `Arc`: equal at once, without comparing their bytes.
        let docs = match self.parsed.remove(&file) {
            Some(old) if old.text == text => old.docs,
            _ => Arc::new(parse_file(&text)),
        };
        parsed.insert(
            file,
            ParsedFile {
                text,
                docs: docs.clone(),
            },
        );
        docs
    }

    /// Parses and validates `files` (name → contents) and returns the new index.
    pub fn ingest<T: Into<Arc<str>>>(
        &mut self,
        files: BTreeMap<String, Result<T, String>>,
        seen: Instant,
        metrics: &ControllerMetrics,
    ) -> MeshIndex {
        let mut next: BTreeMap<ResourceKey, (Arc<str>, Arc<Resource>, Fingerprint)> =
            BTreeMap::new();
        let mut rejected = Vec::new();
        let mut refused_keys: BTreeSet<ResourceKey> = BTreeSet::new();
        let mut unreadable_files: BTreeSet<String> = BTreeSet::new();
        let mut parsed = HashMap::with_capacity(files.len());
        let started = Instant::now();
        for (file, text) in files {
            let text = match text {
                Ok(text) => text.into(),
                Err(e) => {
                    rejected.push(Rejection {
                        file: file.clone(),
                        object: None,
                        message: format!("cannot read: {e}"),
                    });
                    unreadable_files.insert(file);
                    continue;
                }
            };
            let source: Arc<str> = file.as_str().into();
            for doc in self.documents(&mut parsed, file.clone(), text).iter() {
                match doc {
                    Doc::Unreadable(message) => {
                        rejected.push(Rejection {
                            file: file.clone(),
                            object: None,
                            message: message.clone(),
                        });
                        unreadable_files.insert(file.clone());
                    }
                    Doc::Foreign(message) => {
                        rejected.push(Rejection {
                            file: file.clone(),
                            object: None,
                            message: message.clone(),
                        });
                    }
                    Doc::Refused { key, message } => {
                        rejected.push(Rejection {
                            file: file.clone(),
                            object: Some(key.to_string()),
                            message: message.clone(),
                        });
                        refused_keys.insert(key.clone());
                    }
                    Doc::Object {
                        key,
                        resource,
                        problems,
                        fingerprint,
                    } => {
                        if problems.is_empty() {
                            match next.entry(key.clone()) {
                                std::collections::btree_map::Entry::Occupied(_) => {
                                    rejected.push(Rejection {
                                        file: file.clone(),
                                        object: Some(key.to_string()),
                                        message:
                                            "defined more than once; the first definition is used"
                                                .into(),
                                    });
                                }
                                std::collections::btree_map::Entry::Vacant(v) => {
                                    v.insert((
                                        source.clone(),
                                        resource.clone(),
                                        fingerprint.clone(),
                                    ));
                                }
                            }
                        } else {
                            for p in problems {
                                rejected.push(Rejection {
                                    file: file.clone(),
                                    object: Some(key.to_string()),
                                    message: p.clone(),
                                });
                            }
                            refused_keys.insert(key.clone());
                        }
                    }
                }
            }
        }
        self.parsed = parsed;
        // Keep the last good version of refused objects, and of everything that
        // came from a file that can no longer be read or parsed.
        let keeping = !refused_keys.is_empty() || !unreadable_files.is_empty();
        for (key, kept) in self.accepted.iter().filter(|_| keeping) {
            if next.contains_key(key) {
                continue;
            }
            if refused_keys.contains(key) || unreadable_files.contains(&*kept.0) {
                next.insert(key.clone(), kept.clone());
            }
        }
        for r in &rejected {
            tracing::warn!(file = %r.file, object = r.object.as_deref().unwrap_or("-"), "rejected: {}", r.message);
        }
        let parsed_at = Instant::now();
        let fingerprint: BTreeMap<ResourceKey, Fingerprint> = next
            .iter()
            .map(|(k, (_, _, f))| (k.clone(), f.clone()))
            .collect();
        let jwks = self.key_sets(&next);
        let keys_changed = jwks.version != self.jwks_version;
        self.jwks_version = jwks.version;
        if fingerprint != *self.fingerprint || keys_changed {
            self.revision += 1;
            // Key sets are an input of every proxy's own part (its inbound).
            if keys_changed || !same_inputs(&fingerprint, &self.fingerprint, own_part_kind) {
                self.own_generation = next_generation();
            }
            // Rebuilding the catalog is most of an ingest at 10,000 endpoints.
            if !same_inputs(&fingerprint, &self.fingerprint, catalog_kind) {
                self.catalog = None;
            }
            self.fingerprint = Arc::new(fingerprint);
        }
        let compared_at = Instant::now();
        self.accepted = next;
        metrics.record_objects(self.accepted.keys().map(|k| k.kind), rejected.len());
        let resources = self
            .accepted
            .iter()
            .map(|(k, (_, r, _))| (k.clone(), r.clone()))
            .collect();
        let mut index = MeshIndex::with_fingerprints(
            (self.revision.max(1), self.own_generation),
            seen,
            resources,
            (rejected, self.mesh.clone()),
            (self.fingerprint.clone(), self.catalog.clone()),
        );
        index.jwks = jwks;
        self.catalog = Some(index.catalog.clone());
        // Clusters read every kind but VirtualServices and Gateways (and the
        // mesh config, fixed for an intake): after a change to those alone
        // the last translations' clusters are still right.
        match &self.last_outbound {
            Some((earlier, fingerprint))
                if same_inputs(&self.fingerprint, fingerprint, |k| {
                    k != crate::resource::kind::VIRTUAL_SERVICE
                        && k != crate::resource::kind::GATEWAY
                }) =>
            {
                index.outbound_cache = OutboundCache::reusing_clusters_of(earlier);
            }
            _ => {}
        }
        let renewed = self
            .last_outbound
            .as_ref()
            .is_none_or(|(_, f)| !Arc::ptr_eq(f, &self.fingerprint));
        if renewed {
            self.last_outbound = Some((index.outbound_cache.handle(), self.fingerprint.clone()));
        }
        tracing::debug!(
            revision = index.revision,
            parse_ms = (parsed_at - started).as_millis() as u64,
            compare_ms = (compared_at - parsed_at).as_millis() as u64,
            index_ms = compared_at.elapsed().as_millis() as u64,
            "ingested"
        );
        index
    }
}
