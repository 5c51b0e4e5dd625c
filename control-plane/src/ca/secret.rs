//! The mesh root kept in a Kubernetes Secret, so every controller replica
//! signs with the same root (Istio keeps its self-signed root in
//! `istio-ca-secret`). The first replica to start creates the root and the
//! Secret; the others, and every restart, load it from there into the state
//! folder, where `CertificateAuthority::load_or_create` reads it.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};

use super::{CaError, CertificateAuthority, write_private};

const CERT: &str = "root-cert.pem";
const KEY: &str = "root-key.pem";

/// Why the root could not be shared through the Secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--ca-secret {0}: expected NAMESPACE/NAME")]
    Name(String),
    #[error("Secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name}: key {key} is missing or not UTF-8")]
    Key {
        namespace: String,
        name: String,
        key: &'static str,
    },
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// Makes `state_dir/ca/` hold the root in Secret `NAMESPACE/NAME`, creating
/// the Secret (from a new root, or the one already in the state folder) when
/// it does not exist yet.
pub async fn sync_root(
    client: kube::Client,
    secret: &str,
    state_dir: &Path,
    trust_domain: &str,
) -> Result<(), SecretError> {
    let (namespace, name) = secret
        .split_once('/')
        .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
        .ok_or_else(|| SecretError::Name(secret.to_owned()))?;
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let api_err = |source| SecretError::Api {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    };
    let dir = state_dir.join("ca");
    if let Some(existing) = api.get_opt(name).await.map_err(api_err)? {
        return write_local(&existing, &dir, namespace, name);
    }
    // No Secret yet: make (or reuse) a local root and publish it.
    CertificateAuthority::load_or_create(state_dir, None, trust_domain)?;
    let read = |file: &str| {
        std::fs::read(dir.join(file)).map_err(|source| CaError::Io {
            path: dir.join(file),
            source,
        })
    };
    let data = BTreeMap::from([
        (CERT.to_owned(), ByteString(read(CERT)?)),
        (KEY.to_owned(), ByteString(read(KEY)?)),
    ]);
    let new = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "sluice-controller".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &new).await {
        Ok(_) => {
            tracing::info!(%namespace, %name, "created the mesh root Secret");
            Ok(())
        }
        // Another replica won the race: use its root.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let theirs = api.get(name).await.map_err(api_err)?;
            write_local(&theirs, &dir, namespace, name)
        }
        Err(e) => Err(api_err(e)),
    }
}

fn write_local(
    secret: &Secret,
    dir: &Path,
    namespace: &str,
    name: &str,
) -> Result<(), SecretError> {
    let field = |key: &'static str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .ok_or(SecretError::Key {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                key,
            })
    };
    let cert = field(CERT)?;
    let key = field(KEY)?;
    write_private(&dir.join(CERT), &cert)?;
    write_private(&dir.join(KEY), &key)?;
    Ok(())
}

#[cfg(test)]
mod tests;
