//! `sluicectl inject -f FILE|-`: adds the `sluice-proxy` sidecar to every pod
//! template in Kubernetes YAML, exactly as the admission webhook would.
//!
//! The user asked for the sidecar, so namespace labels are not consulted; the
//! pod's own opt-out (`sidecar.sluice.io/inject: "false"`, `hostNetwork`)
//! still holds. Documents that are not workloads, or are not changed, are
//! written back byte for byte.

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_yaml::Value;
use sluice_control_plane::inject::{
    InjectConfig, InjectError, inject_workload, opted_out, workload_name,
};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(test)]
mod tests;

#[derive(clap::Args)]
pub struct Args {
    /// YAML file with one or more documents (`-` reads standard input).
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Image of sluice-proxy (sidecar and init container).
    #[arg(long)]
    pub proxy_image: Option<String>,
    /// Controller config-stream address.
    #[arg(long)]
    pub controller: Option<String>,
    /// Certificate service address (empty: no mTLS).
    #[arg(long)]
    pub ca_address: Option<String>,
    /// SPIFFE trust domain.
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// UID the proxy runs as (exempt from traffic capture).
    #[arg(long)]
    pub proxy_uid: Option<i64>,
}

impl Args {
    /// The injection settings: the mesh defaults with the flags given.
    fn config(&self) -> InjectConfig {
        let mut cfg = InjectConfig::default();
        let set = |field: &mut String, flag: &Option<String>| {
            if let Some(v) = flag {
                field.clone_from(v);
            }
        };
        set(&mut cfg.proxy_image, &self.proxy_image);
        set(&mut cfg.controller, &self.controller);
        set(&mut cfg.ca_address, &self.ca_address);
        set(&mut cfg.trust_domain, &self.trust_domain);
        if let Some(uid) = self.proxy_uid {
            cfg.proxy_uid = uid;
        }
        cfg
    }
}

/// Why a document could not be injected; names the document and field.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    /// The document is not YAML.
    #[error("document {index}: not valid YAML: {source}")]
    Yaml {
        index: usize,
        source: serde_yaml::Error,
    },
    /// A field of a workload is missing or has the wrong shape.
    #[error("document {index} ({what}): {field}: {reason}")]
    Field {
        index: usize,
        what: String,
        field: String,
        reason: String,
    },
    /// Injection refused the pod template (e.g. a bad annotation).
    #[error("document {index} ({what}): {field}.metadata.annotations: {source}")]
    Inject {
        index: usize,
        what: String,
        field: String,
        source: InjectError,
    },
}

pub fn run(args: Args) -> ExitCode {
    let cfg = args.config();
    let (name, text) = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        let read = std::io::stdin().read_to_string(&mut text).map(|_| text);
        ("<stdin>".to_owned(), read)
    } else {
        (
            args.file.display().to_string(),
            std::fs::read_to_string(&args.file),
        )
    };
    let text = match text {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{name}: cannot read: {e}");
            return ExitCode::from(2);
        }
    };
    // All or nothing: half-injected YAML piped into `kubectl apply` is worse
    // than none.
    match inject_text(&text, &cfg) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(out.as_bytes()).is_err() || stdout.flush().is_err() {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Every document of `text`, pod templates injected, joined by `---`.
pub fn inject_text(text: &str, cfg: &InjectConfig) -> Result<String, DocError> {
    let mut out = Vec::new();
    for (i, chunk) in split_documents(text).into_iter().enumerate() {
        let index = i + 1;
        let doc: Value =
            serde_yaml::from_str(chunk).map_err(|source| DocError::Yaml { index, source })?;
        if doc.is_null() && chunk.trim().is_empty() {
            continue;
        }
        let injected = inject_document(index, doc, cfg)?;
        let mut text = match injected {
            Some(doc) => {
                serde_yaml::to_string(&doc).map_err(|source| DocError::Yaml { index, source })?
            }
            None => chunk.to_owned(),
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        out.push(text);
    }
    Ok(out.join("---\n"))
}

/// Splits at `---` lines, keeping each document's text as written.
fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let is_marker = body
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t'));
        if is_marker {
            docs.push(&text[start..offset]);
            // Content after the marker on the same line belongs to the next
            // document; a bare marker line belongs to neither.
            start = if body.trim_end() == "---" {
                offset + line.len()
            } else {
                offset + 3
            };
        }
        offset += line.len();
    }
    docs.push(&text[start..]);
    docs
}

/// Where a kind keeps its pod template; `None` for documents left alone.
fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Pod") => Some(&[]),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(&["spec", "template"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// The document with its pod template injected; `None` when unchanged.
fn inject_document(
    index: usize,
    mut doc: Value,
    cfg: &InjectConfig,
) -> Result<Option<Value>, DocError> {
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(path) = template_path(api_version, kind) else {
        return Ok(None);
    };
    let name = doc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let what = format!("{kind} {name}");
    let field = if path.is_empty() {
        "pod".to_owned()
    } else {
        path.join(".")
    };
    let field_error = |field: String, reason: String| DocError::Field {
        index,
        what: what.clone(),
        field,
        reason,
    };

    let mut slot = &mut doc;
    for key in path {
        slot = slot
            .get_mut(*key)
            .ok_or_else(|| field_error(field.clone(), "missing".to_owned()))?;
    }
    let template: PodTemplateSpec = serde_path_to_error::deserialize(slot.clone())
        .map_err(|e| field_error(format!("{field}.{}", e.path()), e.inner().to_string()))?;
    let pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    if opted_out(&pod) {
        return Ok(None);
    }
    // A bare Pod names its workload the way the webhook sees it (owner,
    // name); a template belongs to the object around it.
    let workload = if path.is_empty() {
        workload_name(&pod)
    } else {
        name
    };
    let injected = inject_workload(&pod, &workload, cfg).map_err(|source| DocError::Inject {
        index,
        what: what.clone(),
        field: field.clone(),
        source,
    })?;
    if injected == pod {
        return Ok(None);
    }
    let template = PodTemplateSpec {
        metadata: Some(injected.metadata),
        spec: injected.spec,
    };
    let value =
        serde_yaml::to_value(&template).map_err(|e| field_error(field.clone(), e.to_string()))?;
    match (slot, value) {
        // A Pod is its own template: replace metadata and spec, keep the rest.
        (Value::Mapping(slot), Value::Mapping(value)) => {
            for (k, v) in value {
                slot.insert(k, v);
            }
        }
        (_, _) => return Err(field_error(field, "not a mapping".to_owned())),
    }
    Ok(Some(doc))
}
