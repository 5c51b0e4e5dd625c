//! The `Accepted` condition of every Istio/Sluice object, written with
//! server-side apply on the status subresource only when it changed, and
//! only by the replica holding the leader Lease.

use crate::crd::status::CONDITION_ACCEPTED;
use crate::index::Rejection;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use std::collections::HashMap;
use tokio::sync::watch;

/// Field manager of every status write.
pub const FIELD_MANAGER: &str = "sluice-controller";

/// What the `Accepted` condition of one object should say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the current generation passed parsing and validation.
    pub accepted: bool,
    /// The problems, each naming its field; `None` when accepted.
    pub message: Option<String>,
    /// `metadata.generation` judged.
    pub generation: Option<i64>,
}

impl Verdict {
    /// The verdict on an object given the rejections filed under its file key.
    pub fn from_rejections<'a>(
        rejections: impl Iterator<Item = &'a Rejection>,
        generation: Option<i64>,
    ) -> Self {
        let messages: Vec<&str> = rejections.map(|r| r.message.as_str()).collect();
        Self {
            accepted: messages.is_empty(),
            message: (!messages.is_empty()).then(|| messages.join("; ")),
            generation,
        }
    }

    fn status(&self) -> &'static str {
        if self.accepted { "True" } else { "False" }
    }

    fn reason(&self) -> &'static str {
        if self.accepted { "Accepted" } else { "Invalid" }
    }

    /// Whether `status` (the object's current `status`) already says this.
    pub fn is_current(&self, status: Option<&Value>) -> bool {
        let Some(status) = status else {
            return false;
        };
        let Some(cond) = accepted_condition(status) else {
            return false;
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        status.get("observedGeneration").and_then(Value::as_i64) == self.generation
            && cond.get("observedGeneration").and_then(Value::as_i64) == self.generation
            && text(cond, "status").as_deref() == Some(self.status())
            && text(cond, "reason").as_deref() == Some(self.reason())
            && text(cond, "message") == self.message
    }

    /// The apply patch for the status subresource. `lastTransitionTime`
    /// stays as it was unless the condition's status flips.
    pub fn patch(&self, ar: &ApiResource, name: &str, status: Option<&Value>, now: &str) -> Value {
        let previous = status.and_then(accepted_condition);
        let since = previous
            .filter(|c| c.get("status").and_then(Value::as_str) == Some(self.status()))
            .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
            .unwrap_or(now);
        let mut condition = json!({
            "type": CONDITION_ACCEPTED,
            "status": self.status(),
            "reason": self.reason(),
            "lastTransitionTime": since,
        });
        if let Some(m) = &self.message {
            condition["message"] = json!(m);
        }
        let mut status = json!({"conditions": [condition]});
        if let Some(g) = self.generation {
            status["observedGeneration"] = json!(g);
            status["conditions"][0]["observedGeneration"] = json!(g);
        }
        json!({
            "apiVersion": ar.api_version,
            "kind": ar.kind,
            "metadata": {"name": name},
            "status": status,
        })
    }
}

fn accepted_condition(status: &Value) -> Option<&Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(CONDITION_ACCEPTED))
}

/// RFC 3339 UTC time, second precision (what `metav1.Time` holds).
pub fn rfc3339_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Writes verdicts, remembering the last write per object so that a write
/// the watch has not echoed back yet is not repeated.
pub struct StatusWriter {
    client: kube::Client,
    written: HashMap<(String, String), (Option<String>, Verdict)>,
    leader: watch::Receiver<bool>,
    writes: Counter,
}

impl StatusWriter {
    /// A writer using `client` that writes only while `leader` says true,
    /// counting its writes in `writes`.
    pub fn new(client: kube::Client, leader: watch::Receiver<bool>, writes: Counter) -> Self {
        Self {
            client,
            written: HashMap::new(),
            leader,
            writes,
        }
    }

    /// Whether this replica may write statuses now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// A receiver of leadership changes (the one this writer obeys).
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// Forgets every remembered write: after a leadership change another
    /// replica may have written since, so only the objects themselves count.
    pub fn forget_all(&mut self) {
        self.written.clear();
    }

    /// Brings the status of `object` to `verdict` if it says something else.
    /// Does nothing on a replica that does not hold the Lease.
    pub async fn reconcile(&mut self, ar: &ApiResource, object: &DynamicObject, verdict: Verdict) {
        if !self.is_leader() {
            return;
        }
        let status = object.data.get("status");
        if verdict.is_current(status) {
            return;
        }
        let (Some(name), Some(namespace)) = (&object.metadata.name, &object.metadata.namespace)
        else {
            return;
        };
        let key = (format!("{}/{namespace}", ar.kind), name.clone());
        let version = object.metadata.resource_version.clone();
        if self.written.get(&key) == Some(&(version.clone(), verdict.clone())) {
            return;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, ar);
        let patch = verdict.patch(ar, name, status, &rfc3339_now());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch_status(name, &params, &Patch::Apply(patch)).await {
            Ok(_) => {
                self.writes.inc();
                self.written.insert(key, (version, verdict));
            }
            Err(e) => {
                tracing::warn!(kind = %ar.kind, %namespace, %name, "status write failed: {e}");
            }
        }
    }

    /// Forgets objects that are gone (`keep` says which still exist).
    pub fn retain(&mut self, keep: impl Fn(&(String, String)) -> bool) {
        self.written.retain(|k, _| keep(k));
    }
}
