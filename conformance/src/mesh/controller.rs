//! The mesh's lifetime: shutdown, and controller failures on purpose: stop it as a crash would, change the
//! configuration while it is down, start it again with the same flags and
//! state folder (its CA root and bootstrap secret survive, as a volume would).

use super::process::Proc;
use super::{LocalMesh, MeshError, store};

impl LocalMesh {
    /// Kills every process and waits for them to exit.
    pub async fn shutdown(self) {
        for i in self.instances {
            if let Some(e) = i.echo {
                e.kill().await;
            }
            i.sidecar.kill().await;
        }
        if let Some(c) = self.controller {
            c.kill().await;
        }
    }

    /// Kills the controller (SIGKILL). Sidecars keep serving their last config.
    pub async fn kill_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            c.kill().await;
        }
    }

    /// Starts the controller again with the flags it first had.
    pub fn start_controller(&mut self) -> Result<(), MeshError> {
        if self.controller.is_none() {
            self.controller = Some(Proc::spawn(
                "sluice-controller".into(),
                &self.controller_bin,
                &self.controller_args,
                &self.log_dir.join("controller.log"),
            )?);
        }
        Ok(())
    }

    /// Applies documents to the config folder without waiting for any
    /// controller (it may be down); `wait_converged(None)` waits later.
    pub fn write_config(&mut self, yaml: &str) -> Result<(), MeshError> {
        if self.opts.kube.is_some() {
            return Err(MeshError::Config(
                "write_config needs a config-folder mesh (this one reads Kubernetes)".into(),
            ));
        }
        self.store.apply(yaml)?;
        store::write_atomic(&self.config_dir, "10-config.yaml", &self.store.render()?)
    }

    /// Whether the controller process is running.
    pub fn controller_running(&mut self) -> bool {
        self.controller
            .as_mut()
            .is_some_and(|c| c.exited().is_none())
    }
}
