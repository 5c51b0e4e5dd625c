//! A mesh whose workloads are registered in a Kubernetes API server: per workload a
//! ServiceAccount and a Service, per instance a Pod the runner plays kubelet for (status
//! `Running`/`Ready` with the instance's address), so the API server's own controller-manager
//! builds the EndpointSlices the Sluice controller reads. Scenario config goes in with
//! `kubectl apply`. Meant for a test API server without kubelets (as `sluice-testenv` starts):
//! nothing is scheduled, the echo apps and sidecars are local processes.
//!
//! Everything the runner creates carries the label [`LABEL`], so the next scenario can remove
//! it first, even after a crash.
use super::MeshError;
use super::store::{DocKey, InstanceDoc, parse_docs};
use crate::scenario::Workload;
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Label on every object the runner creates.
pub const LABEL: &str = "sluice.io/conformance";
/// The Node every registered pod is bound to (the EndpointSlice controller skips pods on
/// nodes that do not exist).
pub const NODE: &str = "sluice-conformance";
/// Audience of the ServiceAccount tokens sidecars present to the controller.
pub const TOKEN_AUDIENCE: &str = "sluice";
/// API groups whose objects a scenario may apply.
const GROUPS: [&str; 4] = [
    "networking.istio.io",
    "security.istio.io",
    "telemetry.istio.io",
    "sluice.io",
];

/// An API server reached through a kubeconfig with cluster-admin rights.
#[derive(Debug, Clone)]
pub struct Kube {
    kubeconfig: PathBuf,
}

impl Kube {
    /// Uses the API server `kubeconfig` names.
    pub fn new(kubeconfig: PathBuf) -> Self {
        Self { kubeconfig }
    }

    /// The kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Runs `kubectl args...` (with `stdin` if given) and returns its stdout.
    pub async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, MeshError> {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = format!("kubectl {}", args.join(" "));
        let mut child = cmd.spawn().map_err(|source| MeshError::Io {
            what: format!("{what} (is kubectl installed?)"),
            source,
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|source| MeshError::Io {
                    what: what.clone(),
                    source,
                })?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|source| MeshError::Io {
                what: what.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(MeshError::Config(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Deletes every object an earlier scenario created and waits until their EndpointSlices
    /// are gone too (a new controller must not see a previous scenario's addresses).
    pub async fn clean(&self) -> Result<(), MeshError> {
        let mut kinds: Vec<String> = Vec::new();
        for group in GROUPS {
            let names = self
                .kubectl(
                    &[
                        "api-resources",
                        "--api-group",
                        group,
                        "--verbs=delete",
                        "-o",
                        "name",
                    ],
                    None,
                )
                .await?;
            kinds.extend(
                names
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        if kinds.is_empty() {
            return Err(MeshError::Config(
                "the API server serves none of Istio's API groups: install the CRDs first \
                 (kubectl apply -f crds/)"
                    .into(),
            ));
        }
        kinds.extend(
            [
                "pods",
                "services",
                "endpointslices.discovery.k8s.io",
                "serviceaccounts",
            ]
            .map(String::from),
        );
        let selector = format!("{LABEL}=true");
        self.kubectl(
            &[
                "delete",
                &kinds.join(","),
                "--all-namespaces",
                "-l",
                &selector,
                "--ignore-not-found",
                "--force",
                "--grace-period=0",
            ],
            None,
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = self
                .kubectl(
                    &[
                        "get",
                        "endpointslices",
                        "--all-namespaces",
                        "-l",
                        &selector,
                        "-o",
                        "name",
                    ],
                    None,
                )
                .await?;
            if left.trim().is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(MeshError::Timeout(format!(
                    "EndpointSlices of an earlier scenario still exist after 30 s: {}",
                    left.trim()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Registers the workloads (namespaces, service accounts, Services, ready Pods), applies
    /// `config`, and waits until the EndpointSlices list every instance as ready.
    pub async fn register(
        &self,
        workloads: &[Workload],
        instances: &[InstanceDoc<'_>],
        config: &str,
    ) -> Result<(), MeshError> {
        let mut namespaces: BTreeSet<String> =
            workloads.iter().map(|w| w.namespace.clone()).collect();
        for (key, _) in parse_docs(config)? {
            namespaces.insert(key.namespace);
        }
        namespaces.insert("istio-system".into());
        for ns in &namespaces {
            self.ensure_namespace(ns).await?;
        }
        self.kubectl(&["apply", "-f", "-"], Some(&node_yaml()))
            .await?;
        self.kubectl(
            &["apply", "-f", "-"],
            Some(&workloads_yaml(workloads, instances)),
        )
        .await?;
        for i in instances {
            let ip = i.ip.to_string();
            let patch = serde_json::json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"},
                ],
            }})
            .to_string();
            self.kubectl(
                &[
                    "patch",
                    "pod",
                    &pod_name(i),
                    "-n",
                    &i.workload.namespace,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &patch,
                ],
                None,
            )
            .await?;
        }
        if !config.trim().is_empty() {
            self.apply(config).await?;
        }
        self.wait_endpoints(instances).await
    }

    async fn ensure_namespace(&self, ns: &str) -> Result<(), MeshError> {
        if self
            .kubectl(&["get", "namespace", ns, "-o", "name"], None)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let doc = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{{LABEL}: \"true\"}}}}\n"
        );
        self.kubectl(&["apply", "-f", "-"], Some(&doc))
            .await
            .map(drop)
    }

    async fn wait_endpoints(&self, instances: &[InstanceDoc<'_>]) -> Result<(), MeshError> {
        let mut want: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for i in instances {
            want.entry((i.workload.namespace.clone(), i.workload.service.clone()))
                .or_default()
                .insert(i.ip.to_string());
        }
        let selector = format!("{LABEL}=true");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let json = self
                .kubectl(
                    &[
                        "get",
                        "endpointslices",
                        "--all-namespaces",
                        "-l",
                        &selector,
                        "-o",
                        "json",
                    ],
                    None,
                )
                .await?;
            let have = ready_addresses(&json)?;
            let missing: Vec<String> = want
                .iter()
                .filter(|(k, ips)| have.get(*k).is_none_or(|h| !ips.is_subset(h)))
                .map(|((ns, svc), _)| format!("{svc}.{ns}"))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(MeshError::Timeout(format!(
                    "EndpointSlices do not list every ready pod after 30 s: missing for {}",
                    missing.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kubectl apply` of scenario documents, each labelled [`LABEL`].
    pub async fn apply(&self, yaml: &str) -> Result<(), MeshError> {
        // A step may put objects in a namespace no workload lives in; a
        // user would have created it first.
        let namespaces: BTreeSet<String> = parse_docs(yaml)?
            .into_iter()
            .map(|(k, _)| k.namespace)
            .collect();
        for ns in &namespaces {
            self.ensure_namespace(ns).await?;
        }
        let text = labelled(yaml)?;
        self.kubectl(&["apply", "-f", "-"], Some(&text))
            .await
            .map(drop)
    }

    /// `kubectl delete` of the documents `yaml` names.
    pub async fn delete(&self, yaml: &str) -> Result<(), MeshError> {
        let keys: Vec<DocKey> = parse_docs(yaml)?.into_iter().map(|(k, _)| k).collect();
        let mut text = String::new();
        for (k, v) in parse_docs(yaml)? {
            let api = v.get("apiVersion").and_then(Value::as_str).unwrap_or("v1");
            text.push_str(&format!(
                "---\napiVersion: {api}\nkind: {}\nmetadata: {{name: {}, namespace: {}}}\n",
                k.kind, k.name, k.namespace
            ));
        }
        if keys.is_empty() {
            return Ok(());
        }
        self.kubectl(&["delete", "--ignore-not-found", "-f", "-"], Some(&text))
            .await
            .map(drop)
    }

    /// One token per service account, with the audience the controller expects, in files
    /// under `dir`.
    pub async fn tokens(
        &self,
        workloads: &[Workload],
        dir: &Path,
    ) -> Result<super::security::TokenFiles, MeshError> {
        std::fs::create_dir_all(dir).map_err(|source| MeshError::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        let mut files = super::security::TokenFiles::new();
        for w in workloads {
            let key = (w.namespace.clone(), w.service_account().to_owned());
            if files.contains_key(&key) {
                continue;
            }
            let token = self
                .kubectl(
                    &[
                        "create",
                        "token",
                        &key.1,
                        "-n",
                        &key.0,
                        "--audience",
                        TOKEN_AUDIENCE,
                        "--duration",
                        "2h",
                    ],
                    None,
                )
                .await?;
            let path = dir.join(format!("{}.{}.token", key.0, key.1));
            std::fs::write(&path, token.trim()).map_err(|source| MeshError::Io {
                what: format!("write {}", path.display()),
                source,
            })?;
            files.insert(key, path);
        }
        Ok(files)
    }
}

/// The pod standing for an instance: `<service>-<version>-<index>`.
pub fn pod_name(i: &InstanceDoc<'_>) -> String {
    format!("{}-{}-{}", i.workload.service, i.version, i.index)
}

fn node_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE}, labels: {{{LABEL}: \"true\", \
         kubernetes.io/hostname: {NODE}}}}}\n"
    )
}

/// ServiceAccounts, Services and Pods for the workloads, as one multi-document YAML.
pub fn workloads_yaml(workloads: &[Workload], instances: &[InstanceDoc<'_>]) -> String {
    let mut out = String::new();
    let mut accounts = BTreeSet::new();
    for w in workloads {
        let (s, ns, p) = (&w.service, &w.namespace, w.port);
        if accounts.insert((ns.clone(), w.service_account().to_owned())) {
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {ns}, \
                 labels: {{{LABEL}: \"true\"}}}}\n",
                sa = w.service_account(),
            ));
        }
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {s}, namespace: {ns}, \
             labels: {{app: {s}, {LABEL}: \"true\"}}}}\nspec:\n  selector: {{app: {s}}}\n  \
             ports: [{{name: {proto}-{p}, port: {p}, targetPort: {p}, protocol: TCP}}]\n",
            proto = w.protocol.as_str(),
        ));
    }
    for i in instances {
        let w = i.workload;
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n  \
             labels: {{app: {s}, version: \"{v}\", security.istio.io/tlsMode: istio, \
             service.istio.io/workload-name: {s}-{v}, {LABEL}: \"true\"}}\n  \
             annotations: {{sidecar.sluice.io/inject: \"false\"}}\nspec:\n  nodeName: {NODE}\n  \
             serviceAccountName: {sa}\n  \
             containers: [{{name: app, image: sluice-echo, ports: [{{containerPort: {p}}}]}}]\n",
            pod = pod_name(i),
            s = w.service,
            v = i.version,
            ns = w.namespace,
            sa = w.service_account(),
            p = w.port,
        ));
    }
    out
}

/// The documents with `metadata.labels[LABEL] = "true"` added.
fn labelled(yaml: &str) -> Result<String, MeshError> {
    let mut out = String::new();
    for (_, mut doc) in parse_docs(yaml)? {
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_mapping_mut) {
            let labels = meta
                .entry(Value::from("labels"))
                .or_insert_with(|| Value::Mapping(Default::default()));
            if let Some(labels) = labels.as_mapping_mut() {
                labels.insert(Value::from(LABEL), Value::from("true"));
            }
        }
        // JSON (a subset of YAML) keeps every string a string: kubectl reads
        // YAML 1.1, where a plain `yes`, `on` or `no` that serde_yaml emits
        // unquoted would turn into a boolean.
        let text = serde_json::to_string(&doc)
            .map_err(|e| MeshError::Config(format!("render document: {e}")))?;
        out.push_str("---\n");
        out.push_str(&text);
        out.push('\n');
    }
    Ok(out)
}

/// Ready addresses per `(namespace, service)` in an EndpointSlice list.
fn ready_addresses(json: &str) -> Result<BTreeMap<(String, String), BTreeSet<String>>, MeshError> {
    let list: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| MeshError::Config(format!("kubectl get endpointslices: {e}")))?;
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for slice in list["items"].as_array().into_iter().flatten() {
        let ns = slice["metadata"]["namespace"].as_str().unwrap_or_default();
        let svc = slice["metadata"]["labels"]["kubernetes.io/service-name"]
            .as_str()
            .unwrap_or_default();
        let set = out.entry((ns.to_owned(), svc.to_owned())).or_default();
        for ep in slice["endpoints"].as_array().into_iter().flatten() {
            if ep["conditions"]["ready"].as_bool() == Some(false) {
                continue;
            }
            for a in ep["addresses"].as_array().into_iter().flatten() {
                if let Some(a) = a.as_str() {
                    set.insert(a.to_owned());
                }
            }
        }
    }
    Ok(out)
}
