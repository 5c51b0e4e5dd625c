//! Restarting the API server in place, for fault tests: the same port,
//! etcd, PKI and tokens, so clients reconnect with what they already hold.

use std::time::{Duration, Instant};

use crate::{Error, TestEnv, probe, start};

impl TestEnv {
    /// Kills kube-apiserver (SIGKILL, as a crash would) and waits until it
    /// is reaped, so its port refuses connections when this returns. etcd
    /// and the controller-manager keep running; [`TestEnv::check_running`]
    /// fails until [`TestEnv::start_apiserver`].
    pub fn stop_apiserver(&mut self) {
        self.apiserver.kill();
    }

    /// Starts kube-apiserver again with its first command line (same port,
    /// etcd, certificates and token file) and waits until `/readyz` answers
    /// 200. Returns how long it took to become ready. Its log continues in
    /// `kube-apiserver.log`. Fails if another process took the port
    /// meanwhile ([`Error::Exited`] naming the log).
    pub async fn start_apiserver(&mut self) -> Result<Duration, Error> {
        self.apiserver.respawn()?;
        let (addr, tls, token) = (self.addr, self.tls.clone(), self.admin_token.clone());
        start::wait_for(
            "restarted kube-apiserver /readyz",
            &mut [&mut self.etcd, &mut self.apiserver],
            || async {
                matches!(probe::get(addr, Some(&tls), "/readyz", Some(&token)).await,
                    Ok(r) if r.status == 200)
            },
        )
        .await
    }

    /// [`TestEnv::stop_apiserver`], `downtime` of nothing listening, then
    /// [`TestEnv::start_apiserver`]. Returns the time from the kill until
    /// the API server was ready again.
    pub async fn restart_apiserver(&mut self, downtime: Duration) -> Result<Duration, Error> {
        let killed = Instant::now();
        self.stop_apiserver();
        tokio::time::sleep(downtime).await;
        self.start_apiserver().await?;
        Ok(killed.elapsed())
    }
}
