//! Stand-ins for what a kubelet would do, since the environment has none:
//! nodes that exist and pods that look running and ready.

use std::time::{Duration, Instant};

use crate::{Error, TestEnv};

/// How long a new namespace may wait for its `default` ServiceAccount.
const NAMESPACE_TIMEOUT: Duration = Duration::from_secs(60);

impl TestEnv {
    /// Creates namespace `name` and waits until the controller-manager gave
    /// it its `default` ServiceAccount, without which admission refuses pods.
    pub async fn create_namespace(&self, name: &str) -> Result<(), Error> {
        self.kubectl_run(&["create", "namespace", name]).await?;
        let path = format!("/api/v1/namespaces/{name}/serviceaccounts/default");
        let started = Instant::now();
        loop {
            if self.get(&path, Some(&self.admin_token)).await?.status == 200 {
                return Ok(());
            }
            if started.elapsed() > NAMESPACE_TIMEOUT {
                return Err(Error::NotReady {
                    what: format!("ServiceAccount {name}/default"),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates (or keeps) a Node named `name`. The EndpointSlice controller
    /// skips pods whose `spec.nodeName` names no existing Node.
    pub async fn ensure_node(&self, name: &str) -> Result<(), Error> {
        let manifest = format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"kubernetes.io/hostname":"{name}"}}}}}}"#
        );
        self.apply(&manifest).await.map(drop)
    }

    /// Sets a pod's status as a kubelet would for a running, ready pod with
    /// `ip`. The pod should name an existing node in `spec.nodeName` (see
    /// [`TestEnv::ensure_node`]). EndpointSlices refuse loopback,
    /// link-local and unspecified addresses, so `ip` cannot be 127.0.0.0/8.
    pub async fn set_pod_ready(&self, namespace: &str, pod: &str, ip: &str) -> Result<(), Error> {
        let patch = format!(
            r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"True"}},{{"type":"ContainersReady","status":"True"}}]}}}}"#
        );
        self.kubectl_run(&[
            "patch",
            "pod",
            pod,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ])
        .await
        .map(drop)
    }
}
