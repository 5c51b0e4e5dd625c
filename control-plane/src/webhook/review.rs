//! `admission.k8s.io/v1` AdmissionReview: the part of the request the
//! webhooks read, and the answers they give.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// API versions whose AdmissionReview has the shape read here (v1beta1 is
/// identical for these fields; the answer echoes the request's version).
const API_VERSIONS: &[&str] = &["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

/// Why a body is not an AdmissionReview request.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or fields of the wrong type.
    #[error("not an AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    /// Another kind or API version.
    #[error("expected kind AdmissionReview of {}, got kind `{kind}` of `{api_version}`", API_VERSIONS.join(" or "))]
    WrongType {
        /// `apiVersion` sent.
        api_version: String,
        /// `kind` sent.
        kind: String,
    },
    /// No `request`.
    #[error("the AdmissionReview has no request")]
    NoRequest,
}

/// Group, version and kind of the object under review.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    /// API group (empty for the core group).
    #[serde(default)]
    pub group: String,
    /// API version.
    #[serde(default)]
    pub version: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
}

/// The request of an AdmissionReview.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Echoed in the answer.
    pub uid: String,
    /// What the object is.
    pub kind: GroupVersionKind,
    /// `status`, `scale`, ...; empty for the object itself.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// Object name (may be empty on CREATE with `generateName`).
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace of the request.
    #[serde(default)]
    pub namespace: Option<String>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// The object as it would be stored (absent on DELETE).
    #[serde(default)]
    pub object: Option<serde_json::Value>,
}

impl AdmissionRequest {
    /// Namespace of the request, `default` when none.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    }

    /// Whether this is about a subresource (status updates and the like).
    pub fn is_subresource(&self) -> bool {
        self.sub_resource.as_deref().is_some_and(|s| !s.is_empty())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<AdmissionRequest>,
}

/// Reads an AdmissionReview body; returns its API version and request.
pub fn parse_review(body: &[u8]) -> Result<(String, AdmissionRequest), ReviewError> {
    let review: Review = serde_json::from_slice(body)?;
    if review.kind != "AdmissionReview" || !API_VERSIONS.contains(&review.api_version.as_str()) {
        return Err(ReviewError::WrongType {
            api_version: review.api_version,
            kind: review.kind,
        });
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    Ok((review.api_version, request))
}

/// `metav1.Status` of a denial: Kubernetes shows `message` to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Always `Failure`.
    pub status: &'static str,
    /// HTTP code the API server answers the client with.
    pub code: u16,
    /// Shown to the client.
    pub message: String,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionResponse {
    /// The request's uid.
    pub uid: String,
    /// Whether the request may go on.
    pub allowed: bool,
    /// Why not, when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Shown by `kubectl` as `Warning: ...` lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// `JSONPatch` when `patch` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Base64 of the JSON Patch to apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

impl AdmissionResponse {
    /// Lets the request through unchanged.
    pub fn allow(uid: &str) -> Self {
        Self {
            uid: uid.to_owned(),
            allowed: true,
            status: None,
            warnings: Vec::new(),
            patch_type: None,
            patch: None,
        }
    }

    /// Refuses the request with `message`, answered to the client as `code`.
    pub fn deny(uid: &str, code: u16, message: impl Into<String>) -> Self {
        Self {
            allowed: false,
            status: Some(Status {
                status: "Failure",
                code,
                message: message.into(),
            }),
            ..Self::allow(uid)
        }
    }

    /// Adds warnings.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// Adds a JSON Patch (RFC 6902); an empty one is left out.
    pub fn with_patch(mut self, patch: &json_patch::Patch) -> Result<Self, serde_json::Error> {
        if patch.0.is_empty() {
            return Ok(self);
        }
        let bytes = serde_json::to_vec(patch)?;
        self.patch_type = Some("JSONPatch");
        self.patch = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        Ok(self)
    }

    /// What the metric counts this answer as.
    pub fn outcome(&self) -> super::Outcome {
        match &self.status {
            _ if self.allowed => super::Outcome::Allowed,
            Some(s) if s.code >= 500 => super::Outcome::Error,
            _ => super::Outcome::Denied,
        }
    }
}

/// The AdmissionReview body answering a request of `api_version`.
pub fn review_body(api_version: &str, response: &AdmissionResponse) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": response,
    })
}
