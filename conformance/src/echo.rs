//! The echo workload (`sluice-echo`): an HTTP/1.1 + h2c + gRPC-compatible server (or a TCP echo)
//! that tells in every answer which service, version and instance answered, plus a control
//! listener through which `behave` steps change how it answers.
use crate::scenario::Protocol;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

mod control;
mod http_echo;
mod tcp_echo;

#[cfg(test)]
mod tests;

/// Who this echo is and where it listens.
#[derive(Debug, Clone)]
pub struct EchoConfig {
    /// Application listener.
    pub addr: SocketAddr,
    /// Service name reported in `x-echo-service`.
    pub service: String,
    /// Version reported in `x-echo-version`.
    pub version: String,
    /// Instance reported in `x-echo-instance`.
    pub instance: String,
    /// Namespace reported in `x-echo-namespace`.
    pub namespace: String,
    /// What the application listener speaks.
    pub protocol: Protocol,
    /// Optional control listener (`POST /behave`).
    pub control_addr: Option<SocketAddr>,
}

/// How the echo answers right now; changed by `POST /behave` on the control listener.
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Status to answer every request with; 0 = normal.
    status: AtomicU32,
    /// Delay before answering, in milliseconds.
    delay_ms: AtomicU64,
    /// gRPC status (plus one) to answer every gRPC request with; 0 = normal.
    grpc_status: AtomicU32,
}

impl Behaviour {
    /// Sets the forced status (`None` = normal answers) and the delay.
    pub fn set(&self, status: Option<u16>, delay_ms: u64) {
        self.status
            .store(status.map_or(0, u32::from), Ordering::Relaxed);
        self.delay_ms.store(delay_ms, Ordering::Relaxed);
    }

    /// The forced status, if any.
    pub fn status(&self) -> Option<u16> {
        match self.status.load(Ordering::Relaxed) {
            0 => None,
            s => u16::try_from(s).ok(),
        }
    }

    /// Sets the gRPC status every gRPC request is answered with (`None` = normal answers).
    pub fn set_grpc_status(&self, code: Option<u32>) {
        // Stored plus one so that 0 can mean "normal" while OK (0) stays expressible.
        let stored = code.map_or(0, |c| c.saturating_add(1));
        self.grpc_status.store(stored, Ordering::Relaxed);
    }

    /// The forced gRPC status, if any.
    pub fn grpc_status(&self) -> Option<u32> {
        self.grpc_status.load(Ordering::Relaxed).checked_sub(1)
    }

    /// The delay before answering.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }
}

/// Shared state of one echo process.
#[derive(Debug)]
pub struct Echo {
    /// Identity and addresses.
    pub config: EchoConfig,
    /// Current behaviour.
    pub behaviour: Behaviour,
}

/// A bound echo, ready to serve.
pub struct BoundEcho {
    echo: Arc<Echo>,
    app: TcpListener,
    control: Option<TcpListener>,
}

impl BoundEcho {
    /// Binds the application and control listeners.
    pub async fn bind(config: EchoConfig) -> std::io::Result<Self> {
        let app = TcpListener::bind(config.addr).await?;
        let control = match config.control_addr {
            Some(addr) => Some(TcpListener::bind(addr).await?),
            None => None,
        };
        Ok(Self {
            echo: Arc::new(Echo {
                config,
                behaviour: Behaviour::default(),
            }),
            app,
            control,
        })
    }

    /// The application listener's address (useful with port 0).
    pub fn app_addr(&self) -> std::io::Result<SocketAddr> {
        self.app.local_addr()
    }

    /// The control listener's address, if any.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until the process ends.
    pub async fn serve(self) {
        if let Some(control) = self.control {
            tokio::spawn(control::serve(control, self.echo.clone()));
        }
        match self.echo.config.protocol {
            Protocol::Tcp => tcp_echo::serve(self.app, self.echo).await,
            _ => http_echo::serve(self.app, self.echo).await,
        }
    }
}
