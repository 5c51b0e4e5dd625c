//! Splitting a multi-document YAML text and decoding each document with the
//! field path of the first error.

use super::{KINDS, ParseError, Resource, ResourceKey, kind, kind_info};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

const TOP_LEVEL_KEYS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

/// Parses every non-empty document of `text`; objects without a namespace get
/// `default_namespace`, as `kubectl apply` does.
pub fn parse_documents(text: &str, default_namespace: &str) -> Vec<Result<Resource, ParseError>> {
    split(text)
        .into_iter()
        .map(|(document, value)| {
            let value = value?;
            parse_document(document, value, default_namespace)
        })
        .collect()
}

/// Parses one already-decoded object (an admission request's, or one read
/// from the API server as JSON).
pub fn parse_object(
    object: &serde_json::Value,
    default_namespace: &str,
) -> Result<Resource, ParseError> {
    let value =
        serde_yaml::to_value(object).map_err(|e| whole(1, None, format!("invalid object: {e}")))?;
    parse_document(1, value, default_namespace)
}

/// Reads only kind, namespace and name of every non-empty document (for
/// deletions, where the spec does not matter).
pub fn parse_keys(text: &str, default_namespace: &str) -> Vec<Result<ResourceKey, ParseError>> {
    split(text)
        .into_iter()
        .map(|(document, value)| {
            let value = value?;
            let header = Header::read(document, &value, default_namespace)?;
            header.key(document)
        })
        .collect()
}

/// Documents with their 1-based index; empty ones are dropped.
fn split(text: &str) -> Vec<(usize, Result<Value, ParseError>)> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        match Value::deserialize(doc) {
            Ok(Value::Null) => {}
            Ok(value) => out.push((document, Ok(value))),
            Err(e) => {
                out.push((
                    document,
                    Err(whole(document, None, format!("invalid YAML: {e}"))),
                ));
                // The YAML stream cannot be resumed after a syntax error.
                break;
            }
        }
    }
    out
}

/// Kinds of Istio's groups that Sluice does not serve (they configure
/// nothing a sidecar of Sluice's does).
const UNSERVED_ISTIO_KINDS: &[&str] = &["WorkloadGroup", "ProxyConfig"];

fn whole(document: usize, key: Option<ResourceKey>, message: String) -> ParseError {
    ParseError {
        document,
        key,
        path: String::new(),
        message,
        foreign_kind: false,
    }
}

/// What every document must say about itself.
struct Header<'a> {
    api_version: Option<&'a str>,
    kind: Option<&'a str>,
    name: Option<&'a str>,
    namespace: String,
}

impl<'a> Header<'a> {
    fn read(
        document: usize,
        value: &'a Value,
        default_namespace: &str,
    ) -> Result<Self, ParseError> {
        let Value::Mapping(map) = value else {
            return Err(whole(
                document,
                None,
                "expected a mapping (an object)".into(),
            ));
        };
        let metadata = map.get("metadata").and_then(Value::as_mapping);
        let text =
            |m: Option<&'a Mapping>, k: &str| m.and_then(|m| m.get(k)).and_then(Value::as_str);
        Ok(Self {
            api_version: text(Some(map), "apiVersion"),
            kind: text(Some(map), "kind"),
            name: text(metadata, "name"),
            namespace: text(metadata, "namespace")
                .filter(|ns| !ns.is_empty())
                .unwrap_or(default_namespace)
                .to_string(),
        })
    }

    fn key(&self, document: usize) -> Result<ResourceKey, ParseError> {
        let Some(kind) = self.kind else {
            return Err(whole(document, None, "missing `kind`".into()));
        };
        let Some(info) = kind_info(kind) else {
            let known: Vec<&str> = KINDS.iter().map(|k| k.kind).collect();
            // Foreign only when it cannot be a misspelt kind of ours: another
            // API group, or an Istio kind Sluice does not serve.
            let group = self
                .api_version
                .and_then(|v| v.split_once('/'))
                .map_or("", |(g, _)| g);
            let ours = KINDS.iter().any(|k| k.group == group);
            return Err(ParseError {
                foreign_kind: !ours || UNSERVED_ISTIO_KINDS.contains(&kind),
                ..whole(
                    document,
                    None,
                    format!(
                        "unsupported kind `{kind}` (supported: {})",
                        known.join(", ")
                    ),
                )
            });
        };
        let name = self
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ParseError {
                document,
                key: None,
                path: "metadata.name".into(),
                message: format!("{kind} has no name"),
                foreign_kind: false,
            })?;
        Ok(ResourceKey {
            kind: info.kind,
            namespace: self.namespace.as_str().into(),
            name: name.into(),
        })
    }
}

fn parse_document(
    document: usize,
    mut value: Value,
    default_namespace: &str,
) -> Result<Resource, ParseError> {
    let header = Header::read(document, &value, default_namespace)?;
    let key = header.key(document)?;
    let info =
        kind_info(key.kind).ok_or_else(|| whole(document, None, "unsupported kind".into()))?;
    let api_version = header.api_version.unwrap_or("");
    let served = info
        .versions
        .iter()
        .any(|v| api_version == format!("{}/{v}", info.group));
    if !served {
        let versions: Vec<String> = info
            .versions
            .iter()
            .map(|v| format!("{}/{v}", info.group))
            .collect();
        return Err(ParseError {
            document,
            key: Some(key.clone()),
            path: "apiVersion".into(),
            message: format!(
                "{} is not served at `{api_version}` (served: {})",
                key.kind,
                versions.join(", ")
            ),
            foreign_kind: false,
        });
    }
    let namespace = header.namespace.clone();
    if let Value::Mapping(map) = &mut value {
        if let Some(unknown) = map
            .keys()
            .find(|k| !k.as_str().is_some_and(|k| TOP_LEVEL_KEYS.contains(&k)))
        {
            let name = unknown
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{unknown:?}"));
            return Err(ParseError {
                document,
                key: Some(key),
                path: name,
                message: "unknown field".into(),
                foreign_kind: false,
            });
        }
        // The namespace is part of the object's identity everywhere else.
        if let Some(Value::Mapping(metadata)) = map.get_mut("metadata") {
            metadata.insert("namespace".into(), Value::String(namespace));
        }
    }
    let typed = |value: Value| -> Result<Resource, ParseError> {
        match key.kind {
            kind::VIRTUAL_SERVICE => decode(value).map(Resource::VirtualService),
            kind::DESTINATION_RULE => decode(value).map(Resource::DestinationRule),
            kind::SERVICE_ENTRY => decode(value).map(Resource::ServiceEntry),
            kind::WORKLOAD_ENTRY => decode(value).map(Resource::WorkloadEntry),
            kind::SIDECAR => decode(value).map(Resource::Sidecar),
            kind::GATEWAY => decode(value).map(Resource::Gateway),
            kind::ENVOY_FILTER => decode(value).map(Resource::EnvoyFilter),
            kind::PEER_AUTHENTICATION => decode(value).map(Resource::PeerAuthentication),
            kind::REQUEST_AUTHENTICATION => decode(value).map(Resource::RequestAuthentication),
            kind::AUTHORIZATION_POLICY => decode(value).map(Resource::AuthorizationPolicy),
            kind::RATE_LIMIT_POLICY => decode(value).map(Resource::RateLimitPolicy),
            _ => decode(value).map(Resource::Telemetry),
        }
        .map_err(|(path, message)| ParseError {
            document,
            key: Some(key.clone()),
            path,
            message,
            foreign_kind: false,
        })
    };
    typed(value)
}

/// Decodes one object, returning the path and message of the first error.
fn decode<T: DeserializeOwned>(value: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, tidy(&e.into_inner().to_string()))
    })
}

/// Shortens serde's messages to what a user needs next to the field path.
fn tidy(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "unknown field `hots`, expected one of `host`, ..." → keep the hint.
        return match rest.split_once("`, ") {
            Some((_, hint)) => format!("unknown field, {hint}"),
            None => "unknown field".into(),
        };
    }
    message.to_string()
}
