//! Restarting the API server in place, on an environment of its own (a
//! restart would break every other test sharing one): while it is down
//! nothing answers on its port; afterwards the same address, tokens and
//! etcd data serve again.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use sluice_testenv::{Error, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_apiserver_keeps_address_tokens_and_objects() -> anyhow::Result<()> {
    let mut env = TestEnv::start().await?;
    let addr = env.server.trim_start_matches("https://").to_owned();
    env.kubectl_run(&[
        "create",
        "configmap",
        "before-restart",
        "--from-literal=k=v",
    ])
    .await?;

    env.stop_apiserver();
    assert!(TcpStream::connect(&addr).is_err(), "{addr} still accepts");
    assert!(
        env.get("/readyz", Some(&env.admin_token)).await.is_err(),
        "a stopped API server answered"
    );
    let stopped = env.check_running().expect_err("the API server is stopped");
    assert!(
        matches!(
            stopped,
            Error::Exited {
                name: "kube-apiserver",
                ..
            }
        ),
        "{stopped}"
    );
    let refused = env
        .kubectl_run(&["get", "configmap", "before-restart", "--request-timeout=2s"])
        .await;
    assert!(refused.is_err(), "kubectl worked while down: {refused:?}");

    let ready_in = env.start_apiserver().await?;
    eprintln!("kube-apiserver ready {ready_in:.1?} after its restart");
    env.check_running()?;
    assert_eq!(env.server, format!("https://{addr}"));
    // The same etcd: what was written before is there.
    let value = env
        .kubectl_run(&[
            "get",
            "configmap",
            "before-restart",
            "-o",
            "jsonpath={.data.k}",
        ])
        .await?;
    assert_eq!(value, "v");
    // The same token file: admin may, the unprivileged user still may not.
    assert_eq!(
        env.get("/api/v1/namespaces", Some(&env.admin_token))
            .await?
            .status,
        200
    );
    let unprivileged = env
        .get("/api/v1/namespaces", Some(&env.unprivileged_token))
        .await?;
    assert_eq!(unprivileged.status, 403, "{}", unprivileged.body);
    // The log holds both runs: each says once where it serves.
    let log = std::fs::read_to_string(env.dir().join("kube-apiserver.log"))?;
    assert_eq!(log.matches("Serving securely on").count(), 2, "{log}");

    // The one-call form: down for at least `downtime`, then writable.
    let downtime = Duration::from_secs(2);
    let started = Instant::now();
    let took = env.restart_apiserver(downtime).await?;
    assert!(took >= downtime, "{took:?}");
    assert!(started.elapsed() >= took);
    env.create_namespace("after-restart").await?;
    Ok(())
}
