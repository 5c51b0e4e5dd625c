//! Leader election over a `coordination.k8s.io/v1` Lease, so that of several
//! controller replicas only one writes object statuses.
//!
//! Every replica serves proxies; the Lease only decides who writes. Taking
//! or renewing the Lease is a replace carrying the `resourceVersion` that
//! was read, so two replicas racing for it cannot both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use prometheus_client::metrics::gauge::Gauge;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Default Lease namespace (the chart's release namespace).
pub const DEFAULT_NAMESPACE: &str = "sluice-system";
/// Default Lease name.
pub const DEFAULT_LEASE_NAME: &str = "sluice-controller-status";
/// Default Lease duration in seconds.
pub const DEFAULT_LEASE_SECONDS: u32 = 15;

/// Where the Lease lives, who we are, and how long a claim lasts.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's `holderIdentity`.
    pub identity: String,
    /// How long a claim lasts without renewal.
    pub lease_duration: Duration,
}

impl LeaderConfig {
    /// A config with a fresh identity: `POD_NAME` or the host name, plus a
    /// random suffix so that a restarted process never mistakes its
    /// predecessor's claim for its own.
    pub fn new(namespace: String, name: String, lease_seconds: u32) -> Self {
        let base = std::env::var("POD_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "sluice-controller".into());
        let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(6)
            .collect::<String>()
            .to_lowercase();
        Self {
            namespace,
            name,
            identity: format!("{base}_{suffix}"),
            lease_duration: Duration::from_secs(u64::from(lease_seconds.max(1))),
        }
    }
}

/// What to do with the Lease after reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// There is no Lease: create it naming us.
    Create,
    /// We hold it: refresh `renewTime`.
    Renew,
    /// It is free or its holder let it expire: claim it.
    Acquire,
    /// Someone else holds it until `expires`.
    Follow {
        /// The holder.
        holder: String,
        /// When the claim runs out unless renewed.
        expires: Timestamp,
    },
}

/// Decides what `me` does with `lease` (its spec, `None` when absent) at `now`.
/// Expiry compares the holder's `renewTime` with this replica's clock, so
/// replicas' clocks must agree to well within the lease duration.
pub fn decide(now: Timestamp, lease: Option<&LeaseSpec>, me: &str) -> Action {
    let Some(spec) = lease else {
        return Action::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Action::Acquire;
    }
    if holder == me {
        return Action::Renew;
    }
    // A claim without a renew time or duration cannot be checked for
    // expiry; treat it as expired rather than wait on it forever.
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return Action::Acquire;
    };
    let expires = renewed
        .0
        .checked_add(SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or(renewed.0);
    if expires < now {
        Action::Acquire
    } else {
        Action::Follow {
            holder: holder.to_owned(),
            expires,
        }
    }
}

/// Why one round of the election failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The API server refused or could not be reached.
    #[error("lease {namespace}/{name}: {source}")]
    Api {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What the client reported.
        source: kube::Error,
    },
    /// The Lease's namespace does not exist, so no replica can hold it.
    #[error("lease namespace {0} does not exist")]
    NoNamespace(String),
}

/// Runs the election for one replica.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    tx: watch::Sender<bool>,
    gauge: Gauge,
}

/// A receiver that always says "leader", for when election is off. Its
/// sender is gone, so it never changes; receivers must treat a closed
/// channel as "stays as it is".
pub fn always_leader(gauge: &Gauge) -> watch::Receiver<bool> {
    gauge.set(1);
    watch::channel(true).1
}

impl LeaderElector {
    /// An elector using `client`; the receiver says whether we lead now.
    pub fn new(
        client: kube::Client,
        config: LeaderConfig,
        gauge: Gauge,
    ) -> (Self, watch::Receiver<bool>) {
        gauge.set(0);
        let (tx, rx) = watch::channel(false);
        let api = Api::namespaced(client, &config.namespace);
        let elector = Self {
            api,
            config,
            tx,
            gauge,
        };
        (elector, rx)
    }

    /// Campaigns and renews until `stop` turns true, then releases the
    /// Lease if held so another replica takes over without waiting.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let retry = self.config.lease_duration / 3;
        // Give up leadership if the Lease could not be renewed for this
        // long: another replica may take it over once it expires.
        let renew_deadline = self.config.lease_duration * 2 / 3;
        let mut last_renewed: Option<Instant> = None;
        tracing::info!(
            identity = %self.config.identity,
            lease = %format!("{}/{}", self.config.namespace, self.config.name),
            "leader election started"
        );
        loop {
            match self.round().await {
                Ok(true) => {
                    last_renewed = Some(Instant::now());
                    self.set(true);
                }
                Ok(false) => {
                    last_renewed = None;
                    self.set(false);
                }
                // Without the namespace no replica can coordinate; rather
                // than leave statuses unwritten, behave as the only replica
                // (what every replica did before leader election).
                Err(e @ LeaseError::NoNamespace(_)) => {
                    if !*self.tx.borrow() {
                        tracing::error!(
                            "{e}: writing statuses as the only replica; create it or pass --leader-election-namespace"
                        );
                    }
                    last_renewed = None;
                    self.set(true);
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    if last_renewed.is_none_or(|t| t.elapsed() >= renew_deadline) {
                        self.set(false);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        if *self.tx.borrow() {
            self.set(false);
            match self.release().await {
                Ok(()) => tracing::info!("lease released"),
                Err(e) => tracing::warn!("releasing: {e}"),
            }
        }
    }

    fn set(&self, leading: bool) {
        let changed = self.tx.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
        self.gauge.set(i64::from(leading));
        if changed {
            if leading {
                tracing::info!(identity = %self.config.identity, "became leader: writing statuses");
            } else {
                tracing::info!(identity = %self.config.identity, "not leader: status writes stop");
            }
        }
    }

    fn error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            source,
        }
    }

    /// One read-decide-write round; `Ok(true)` when we hold the Lease after it.
    async fn round(&self) -> Result<bool, LeaseError> {
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?;
        let now = Timestamp::now();
        let me = self.config.identity.as_str();
        let action = decide(now, current.as_ref().and_then(|l| l.spec.as_ref()), me);
        let seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let written = match (action, current) {
            (Action::Follow { .. }, _) => return Ok(false),
            (Action::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.to_owned()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (Action::Renew, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(seconds);
                self.replace(&lease).await
            }
            (Action::Acquire, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                spec.holder_identity = Some(me.to_owned());
                spec.lease_duration_seconds = Some(seconds);
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                self.replace(&lease).await
            }
            // Renew/Acquire are only decided on a Lease that was read.
            (Action::Renew | Action::Acquire, None) => return Ok(false),
        };
        match written {
            Ok(_) => Ok(true),
            // Someone else wrote first (409 on a stale resourceVersion, or
            // a create racing another create): they won this round.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(kube::Error::Api(s))
                if s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "namespaces") =>
            {
                Err(LeaseError::NoNamespace(self.config.namespace.clone()))
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// Writes `lease` back, failing with 409 if it changed since it was read.
    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&self.config.name, &PostParams::default(), lease)
            .await
    }

    /// Clears `holderIdentity` if we still hold the Lease.
    async fn release(&self) -> Result<(), LeaseError> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.error(e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.replace(&lease).await.map_err(|e| self.error(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
