//! The applied documents with `kubectl apply` semantics (a document with the same kind,
//! namespace and name replaces the earlier one), rendered into the controller's config dir.
use super::MeshError;
use crate::scenario::Workload;
use serde_yaml::Value;
use std::net::Ipv4Addr;
use std::path::Path;

/// Identity of a document: kind, namespace (default `default`), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DocKey {
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace`, `default` when absent.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

/// Applied documents in first-applied order.
#[derive(Debug, Default)]
pub struct ConfigStore {
    docs: Vec<(DocKey, Value)>,
}

/// Splits multi-document YAML into documents with their keys (empty documents are skipped).
pub fn parse_docs(yaml: &str) -> Result<Vec<(DocKey, Value)>, MeshError> {
    let mut out = Vec::new();
    for de in serde_yaml::Deserializer::from_str(yaml) {
        let value = <Value as serde::Deserialize>::deserialize(de)
            .map_err(|e| MeshError::Config(format!("bad YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let kind = text(value.get("kind"))
            .ok_or_else(|| MeshError::Config("a document has no `kind`".into()))?;
        let meta = value.get("metadata");
        let name = text(meta.and_then(|m| m.get("name")))
            .ok_or_else(|| MeshError::Config(format!("a {kind} has no metadata.name")))?;
        let namespace =
            text(meta.and_then(|m| m.get("namespace"))).unwrap_or_else(|| "default".into());
        out.push((
            DocKey {
                kind,
                namespace,
                name,
            },
            value,
        ));
    }
    Ok(out)
}

impl ConfigStore {
    /// Creates or replaces every document; returns how many there were.
    pub fn apply(&mut self, yaml: &str) -> Result<usize, MeshError> {
        let docs = parse_docs(yaml)?;
        let n = docs.len();
        for (key, value) in docs {
            match self.docs.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => self.docs.push((key, value)),
            }
        }
        Ok(n)
    }

    /// Deletes the documents named in `yaml`; returns how many existed.
    pub fn delete(&mut self, yaml: &str) -> Result<usize, MeshError> {
        let keys: Vec<DocKey> = parse_docs(yaml)?.into_iter().map(|(k, _)| k).collect();
        let before = self.docs.len();
        self.docs.retain(|(k, _)| !keys.contains(k));
        Ok(before - self.docs.len())
    }

    /// The current documents as one multi-document YAML text.
    pub fn render(&self) -> Result<String, MeshError> {
        let mut out = String::new();
        for (_, v) in &self.docs {
            let text = serde_yaml::to_string(v)
                .map_err(|e| MeshError::Config(format!("render YAML: {e}")))?;
            out.push_str("---\n");
            out.push_str(&text);
        }
        Ok(out)
    }
}

/// One instance's place in the generated workload documents.
#[derive(Debug, Clone)]
pub struct InstanceDoc<'a> {
    /// Its workload.
    pub workload: &'a Workload,
    /// Version label.
    pub version: &'a str,
    /// Index within the version.
    pub index: u32,
    /// Loopback address.
    pub ip: Ipv4Addr,
}

/// `ServiceEntry` per workload and `WorkloadEntry` per instance, describing the local mesh.
pub fn workloads_yaml(workloads: &[Workload], instances: &[InstanceDoc<'_>]) -> String {
    let mut out = String::new();
    for w in workloads {
        let (s, ns, p) = (&w.service, &w.namespace, w.port);
        out.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: {s}, namespace: {ns}}}\nspec:\n  \
             hosts: [{s}.{ns}.svc.cluster.local]\n  location: MESH_INTERNAL\n  \
             resolution: STATIC\n  ports: [{{number: {p}, name: {proto}-{p}, protocol: {istio}, targetPort: {p}}}]\n  \
             workloadSelector: {{labels: {{app: {s}}}}}\n",
            proto = w.protocol.as_str(),
            istio = w.protocol.istio_name(),
        ));
    }
    for i in instances {
        let w = i.workload;
        out.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: {s}-{v}-{n}, namespace: {ns}}}\nspec:\n  address: \"{ip}\"\n  \
             labels: {{app: {s}, version: \"{v}\", security.istio.io/tlsMode: istio, \
             service.istio.io/workload-name: {s}-{v}}}\n  \
             serviceAccount: {sa}\n",
            s = w.service,
            v = i.version,
            n = i.index,
            ns = w.namespace,
            ip = i.ip,
            sa = w.service_account(),
        ));
    }
    out
}

/// Writes `text` to `dir/name` atomically (temp file + rename), so the controller never reads
/// half a file.
pub fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<(), MeshError> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dst = dir.join(name);
    let io = |what: String| move |source| MeshError::Io { what, source };
    std::fs::write(&tmp, text).map_err(io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &dst).map_err(io(format!("rename to {}", dst.display())))
}
