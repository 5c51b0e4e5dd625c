//! A real sidecar whose stdout (its access log) is kept line by line.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

/// A sidecar whose stdout (the access log) is collected line by line.
pub struct LoggedProxy {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LoggedProxy {
    pub async fn start(ip: &str, controller: SocketAddr, workload: &str) -> Self {
        Self::start_with(ip, controller, workload, &[]).await
    }

    /// `start` with extra command-line arguments (e.g. `--credentials-dir`).
    pub async fn start_with(
        ip: &str,
        controller: SocketAddr,
        workload: &str,
        extra: &[&str],
    ) -> Self {
        let mut child = crate::harness::proxy_command(ip, controller, workload)
            .stdout(Stdio::piped())
            .args(extra)
            .spawn()
            .expect("spawn sluice-proxy");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        let admin: SocketAddr = format!("{ip}:15000").parse().unwrap();
        // Owned from here on, so every path (a panic included) kills and reaps it.
        let proxy = LoggedProxy { child, lines };
        for _ in 0..200 {
            if TcpStream::connect(admin).await.is_ok() {
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("proxy on {ip} did not start");
    }

    /// Waits for an access-log line (JSON) whose `trace_id` is `trace`.
    pub async fn log_entry(&self, trace: &str) -> serde_json::Value {
        for _ in 0..100 {
            let found = self.lines.lock().unwrap().iter().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["trace_id"] == trace).then_some(v)
            });
            if let Some(v) = found {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no access-log line for trace {trace}: {:?}",
            self.lines.lock().unwrap()
        );
    }
}

impl Drop for LoggedProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
