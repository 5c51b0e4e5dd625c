//! The mesh index: every accepted resource, the rejected ones with their
//! reasons, and the service catalog derived from them. One immutable value per
//! revision; translation reads it without locks.

use crate::mesh_config::MeshConfig;
use crate::metrics::ControllerMetrics;
use crate::resource::{Resource, ResourceKey, parse_documents};
use crate::services::ServiceCatalog;
use crate::validation::validate;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

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
    /// Services and endpoints derived from the resources.
    pub catalog: ServiceCatalog,
    /// Mesh-wide settings in force.
    pub mesh: Arc<MeshConfig>,
    /// Outbound translations of this revision, shared by proxies alike.
    pub outbound_cache: crate::translate::OutboundCache,
    /// Label keys that some object selects proxies by (VirtualService
    /// `sourceLabels`, DestinationRule `workloadSelector`): the only labels
    /// that can change a proxy's outbound config.
    pub selecting_label_keys: BTreeSet<String>,
    fingerprint: BTreeMap<ResourceKey, String>,
}

impl MeshIndex {
    /// The accepted objects of one kind (keys sort by kind first, so this is a
    /// range, not a scan of everything: proxies ask for a few kinds each).
    pub fn of_kind(&self, kind: &'static str) -> impl Iterator<Item = &Resource> {
        let start = ResourceKey {
            kind,
            namespace: String::new(),
            name: String::new(),
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
        let catalog = ServiceCatalog::build(resources.values().map(|r| r.as_ref()));
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
            fingerprint,
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
        (self.fingerprint != previous.fingerprint || self.rejected != previous.rejected)
            .then_some(self)
    }
}

/// Every label key that a VirtualService match or a DestinationRule
/// selector of `resources` looks at.
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
            _ => {}
        }
    }
    keys
}

fn fingerprint(resource: &Resource) -> String {
    serde_json::to_string(resource).unwrap_or_default()
}

/// Turns file contents into indexes, keeping the last good version of every
/// object whose new version is refused (nothing valid is ever lost to a typo).
pub struct Intake {
    mesh: Arc<MeshConfig>,
    revision: u64,
    accepted: BTreeMap<ResourceKey, (String, Arc<Resource>)>,
    fingerprint: BTreeMap<ResourceKey, String>,
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
            accepted: BTreeMap::new(),
            fingerprint: BTreeMap::new(),
        }
    }

    /// Parses and validates `files` (name → contents) and returns the new index.
    pub fn ingest(
        &mut self,
        files: BTreeMap<String, Result<String, String>>,
        seen: Instant,
        metrics: &ControllerMetrics,
    ) -> MeshIndex {
        let mut next: BTreeMap<ResourceKey, (String, Arc<Resource>)> = BTreeMap::new();
        let mut rejected = Vec::new();
        let mut refused_keys: BTreeSet<ResourceKey> = BTreeSet::new();
        let mut unreadable_files: BTreeSet<String> = BTreeSet::new();
        for (file, text) in files {
            let text = match text {
                Ok(text) => text,
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
            for doc in parse_documents(&text, DEFAULT_NAMESPACE) {
                match doc {
                    Err(e) => {
                        rejected.push(Rejection {
                            file: file.clone(),
                            object: None,
                            message: e.to_string(),
                        });
                        unreadable_files.insert(file.clone());
                    }
                    Ok(resource) => {
                        let key = resource.key();
                        let problems = validate(&resource);
                        if problems.is_empty() {
                            if next.contains_key(&key) {
                                rejected.push(Rejection {
                                    file: file.clone(),
                                    object: Some(key.to_string()),
                                    message: "defined more than once; the first definition is used"
                                        .into(),
                                });
                                continue;
                            }
                            next.insert(key, (file.clone(), Arc::new(resource)));
                        } else {
                            for p in problems {
                                rejected.push(Rejection {
                                    file: file.clone(),
                                    object: Some(key.to_string()),
                                    message: format!("{}: {}", p.path, p.message),
                                });
                            }
                            refused_keys.insert(key);
                        }
                    }
                }
            }
        }
        // Keep the last good version of refused objects, and of everything that
        // came from a file that can no longer be read or parsed.
        for (key, (file, resource)) in &self.accepted {
            if next.contains_key(key) {
                continue;
            }
            if refused_keys.contains(key) || unreadable_files.contains(file) {
                next.insert(key.clone(), (file.clone(), resource.clone()));
            }
        }
        for r in &rejected {
            tracing::warn!(file = %r.file, object = r.object.as_deref().unwrap_or("-"), "rejected: {}", r.message);
        }
        let fingerprint: BTreeMap<ResourceKey, String> = next
            .iter()
            .map(|(k, (_, r))| (k.clone(), fingerprint(r)))
            .collect();
        if fingerprint != self.fingerprint {
            self.revision += 1;
        }
        self.fingerprint = fingerprint;
        self.accepted = next;
        metrics.record_objects(self.accepted.keys().map(|k| k.kind), rejected.len());
        let resources = self
            .accepted
            .iter()
            .map(|(k, (_, r))| (k.clone(), r.clone()))
            .collect();
        MeshIndex::build(
            self.revision.max(1),
            seen,
            resources,
            rejected,
            self.mesh.clone(),
        )
    }
}
