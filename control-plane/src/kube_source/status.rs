//! The `Accepted` and `Reconciled` conditions of every Istio/Sluice object,
//! written with server-side apply on the status subresource only when they
//! changed, and only by the replica holding the leader Lease.

use crate::crd::status::{CONDITION_ACCEPTED, CONDITION_RECONCILED};
use crate::index::Rejection;
use crate::sync::SyncView;
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
    /// Whether the proxies run it; `None` when the controller does not
    /// track proxies (the condition is then left alone).
    pub reconciled: Option<Reconciled>,
}

/// What the `Reconciled` condition says: whether every connected proxy has
/// applied a configuration revision that includes the object as it is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reconciled {
    /// `True` when every connected proxy applied it.
    pub done: bool,
    /// `Reconciled`, `Pending`, `Rejected` or `NotAccepted`.
    pub reason: &'static str,
    /// Who is missing, or which proxy refused it and why.
    pub message: String,
}

impl Reconciled {
    /// Judges an object that entered the index at revision `since` against
    /// what each connected proxy acknowledged or refused.
    pub fn judge(accepted: bool, since: u64, view: &SyncView) -> Self {
        if !accepted {
            return Self {
                done: false,
                reason: "NotAccepted",
                message: "not sent to any proxy: the object was not accepted".into(),
            };
        }
        let num = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
        let total = view.proxies.len();
        let mut applied = 0usize;
        let mut refused = Vec::new();
        for p in &view.proxies {
            if num(&p.version_acked).is_some_and(|v| v >= since) {
                applied += 1;
            } else if let Some(n) = &p.last_nack
                && n.version.parse::<u64>().is_ok_and(|v| v >= since)
            {
                refused.push((p, n));
            }
        }
        if let Some((p, n)) = refused.first() {
            let more = match refused.len() - 1 {
                0 => String::new(),
                k => format!(" (and {k} more)"),
            };
            return Self {
                done: false,
                reason: "Rejected",
                message: format!(
                    "proxy {} refused revision {}: {}{more}",
                    p.id, n.version, n.error
                ),
            };
        }
        if applied == total {
            return Self {
                done: true,
                reason: "Reconciled",
                message: format!("every connected proxy applied revision {since} or later"),
            };
        }
        Self {
            done: false,
            reason: "Pending",
            message: format!(
                "{} of {total} connected proxies have not applied revision {since} yet",
                total - applied
            ),
        }
    }

    fn status(&self) -> &'static str {
        if self.done { "True" } else { "False" }
    }
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
            reconciled: None,
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
        let Some(cond) = condition(status, CONDITION_ACCEPTED) else {
            return false;
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let reconciled_current = match &self.reconciled {
            None => true,
            Some(r) => condition(status, CONDITION_RECONCILED).is_some_and(|c| {
                c.get("observedGeneration").and_then(Value::as_i64) == self.generation
                    && text(c, "status").as_deref() == Some(r.status())
                    && text(c, "reason").as_deref() == Some(r.reason)
                    && text(c, "message").as_deref() == Some(r.message.as_str())
            }),
        };
        status.get("observedGeneration").and_then(Value::as_i64) == self.generation
            && cond.get("observedGeneration").and_then(Value::as_i64) == self.generation
            && text(cond, "status").as_deref() == Some(self.status())
            && text(cond, "reason").as_deref() == Some(self.reason())
            && text(cond, "message") == self.message
            && reconciled_current
    }

    /// The apply patch for the status subresource. `lastTransitionTime`
    /// stays as it was unless the condition's status flips.
    pub fn patch(&self, ar: &ApiResource, name: &str, status: Option<&Value>, now: &str) -> Value {
        let since = |type_: &str, new_status: &str| {
            status
                .and_then(|s| condition(s, type_))
                .filter(|c| c.get("status").and_then(Value::as_str) == Some(new_status))
                .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
                .unwrap_or(now)
                .to_owned()
        };
        let mut accepted = json!({
            "type": CONDITION_ACCEPTED,
            "status": self.status(),
            "reason": self.reason(),
            "lastTransitionTime": since(CONDITION_ACCEPTED, self.status()),
        });
        if let Some(m) = &self.message {
            accepted["message"] = json!(m);
        }
        let mut conditions = vec![accepted];
        if let Some(r) = &self.reconciled {
            conditions.push(json!({
                "type": CONDITION_RECONCILED,
                "status": r.status(),
                "reason": r.reason,
                "message": r.message,
                "lastTransitionTime": since(CONDITION_RECONCILED, r.status()),
            }));
        }
        if let Some(g) = self.generation {
            for c in &mut conditions {
                c["observedGeneration"] = json!(g);
            }
        }
        let mut status = json!({"conditions": conditions});
        if let Some(g) = self.generation {
            status["observedGeneration"] = json!(g);
        }
        json!({
            "apiVersion": ar.api_version,
            "kind": ar.kind,
            "metadata": {"name": name},
            "status": status,
        })
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
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
