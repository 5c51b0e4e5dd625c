//! A real Kubernetes control plane for tests, envtest style: etcd,
//! kube-apiserver and kube-controller-manager from pinned official builds
//! (`scripts/k8s-tools`), on loopback with generated PKI, stopped on drop.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// A running control plane. (Skeleton: filled in by the test-environment work.)
pub struct TestEnv {
    /// A kubeconfig with cluster-admin rights (token in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
}

impl TestEnv {
    /// Starts etcd, the API server and the controller-manager and waits until
    /// the API server is ready.
    pub async fn start() -> anyhow::Result<TestEnv> {
        anyhow::bail!("sluice-testenv is not implemented yet")
    }

    /// `kubectl` with this environment's kubeconfig.
    pub fn kubectl(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }
}
