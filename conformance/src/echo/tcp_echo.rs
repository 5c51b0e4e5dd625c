//! The TCP side of the echo: one `<service>/<version>/<instance>\n` line, then every byte back.
use super::Echo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Accepts connections forever.
pub(super) async fn serve(listener: TcpListener, echo: Arc<Echo>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let echo = echo.clone();
        tokio::spawn(async move {
            if let Err(e) = echo_connection(stream, &echo).await {
                tracing::debug!(error = %e, %peer, "tcp echo ended with an error");
            }
        });
    }
}

async fn echo_connection(mut stream: TcpStream, echo: &Echo) -> std::io::Result<()> {
    let delay = echo.behaviour.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    // TCP has no status code: a forced status means "fail", so the connection is closed unanswered.
    if echo.behaviour.status().is_some() {
        return Ok(());
    }
    let c = &echo.config;
    let prefix = format!("{}/{}/{}\n", c.service, c.version, c.instance);
    stream.write_all(prefix.as_bytes()).await?;
    let (mut rd, mut wr) = stream.split();
    tokio::io::copy(&mut rd, &mut wr).await?;
    wr.shutdown().await
}
