//! An environment of its own (not the shared one): dropping it stops every
//! process, so its API server stops answering.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use sluice_testenv::TestEnv;

#[tokio::test]
async fn dropped_env_stops_api_server_and_removes_dir() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let addr = env.server.trim_start_matches("https://").to_owned();
    let dir = env.dir().to_path_buf();
    assert!(dir.join("kube-apiserver.log").is_file());
    assert_eq!(
        env.get("/readyz", Some(&env.admin_token)).await?.status,
        200
    );
    TcpStream::connect(&addr)?;

    let started = Instant::now();
    drop(env);
    // Drop waits for each process, so the port is closed by the time it returns.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(TcpStream::connect(&addr).is_err(), "{addr} still accepts");
    if std::env::var_os("SLUICE_TESTENV_KEEP").is_none() {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
    Ok(())
}
