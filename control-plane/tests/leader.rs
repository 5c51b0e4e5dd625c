//! Two real controller processes against a real API server: only the
//! holder of the Lease writes statuses, a killed leader is replaced within
//! about two lease durations, and a stopped (SIGTERM) leader hands over at
//! once by releasing the Lease.

use serde_json::Value;
use sluice_testenv::TestEnv;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Controller, eventually, install_crds};

#[path = "support.rs"]
mod support;

const LEASE_NS: &str = "sluice-system";
const NS: &str = "leader-test";

fn virtual_service(weight: u32) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: {NS}}}
spec:
  hosts: [reviews]
  http:
  - route: [{{destination: {{host: reviews}}, weight: {weight}}}]
"#
    )
}

/// The `holderIdentity` `c` campaigns with, from its log.
fn identity(c: &Controller) -> Option<String> {
    let log = c.log();
    let line = log
        .lines()
        .find(|l| l.contains("leader election started"))?;
    let rest = line.split("identity=").nth(1)?;
    Some(rest.split_whitespace().next()?.to_owned())
}

async fn start_controller(kubeconfig: &Path, lease: &str, seconds: u32) -> Controller {
    let seconds = seconds.to_string();
    Controller::start(
        kubeconfig,
        &[
            "--webhook-listen",
            "off",
            "--leader-election-namespace",
            LEASE_NS,
            "--leader-election-id",
            lease,
            "--leader-election-lease-seconds",
            &seconds,
        ],
    )
    .await
}

/// The Lease's `holderIdentity` (empty when free or absent).
async fn holder(env: &TestEnv, lease: &str) -> String {
    env.kubectl_run(&[
        "get",
        "lease",
        lease,
        "-n",
        LEASE_NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .await
    .unwrap_or_default()
}

/// Waits until exactly one of `cs` leads (Lease names it, its gauge is 1,
/// the others' 0) and returns its position.
async fn one_leader(env: &TestEnv, lease: &str, cs: &[&Controller], limit: Duration) -> usize {
    let found = std::sync::Mutex::new(None);
    eventually(cs, "exactly one leader", limit, || async {
        let holder = holder(env, lease).await;
        let mut leaders = Vec::new();
        for (i, c) in cs.iter().enumerate() {
            let gauge = c.metric("sluice_leader").await;
            let named = identity(c).is_some_and(|id| id == holder);
            match (gauge, named) {
                (Some(1.0), true) => leaders.push(i),
                (Some(0.0), false) => {}
                other => return Err(format!("controller {i}: {other:?}, holder {holder:?}")),
            }
        }
        match leaders.as_slice() {
            [one] => {
                *found.lock().expect("lock") = Some(*one);
                Ok(())
            }
            _ => Err(format!("leaders {leaders:?}, holder {holder:?}")),
        }
    })
    .await;
    found.into_inner().expect("lock").expect("leader found")
}

async fn accepted_generation(env: &TestEnv) -> Result<(i64, i64), String> {
    let vs = env
        .kubectl_run(&["get", "virtualservice", "reviews", "-n", NS, "-o", "json"])
        .await
        .map_err(|e| e.to_string())?;
    let vs: Value = serde_json::from_str(&vs).map_err(|e| e.to_string())?;
    let generation = vs["metadata"]["generation"]
        .as_i64()
        .ok_or("no generation")?;
    let observed = vs["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"))
        .filter(|c| c["status"] == "True")
        .and_then(|c| c["observedGeneration"].as_i64())
        .ok_or_else(|| format!("not accepted: {}", vs["status"]))?;
    Ok((generation, observed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_lease_holder_writes_status_and_a_replica_takes_over() {
    let env = TestEnv::shared().await.expect("test environment");
    install_crds(env).await;
    env.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {LEASE_NS}}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"
    ))
    .await
    .expect("namespaces");

    // Lease of 3 s: renewed every second, expired 3 s after the last renewal.
    let lease = "status-killed";
    let mut cs = vec![
        start_controller(&env.kubeconfig, lease, 3).await,
        start_controller(&env.kubeconfig, lease, 3).await,
    ];
    let refs: Vec<&Controller> = cs.iter().collect();
    let first = one_leader(env, lease, &refs, Duration::from_secs(20)).await;
    let other = 1 - first;

    env.apply(&virtual_service(100)).await.expect("apply VS");
    eventually(&refs, "status written", Duration::from_secs(30), || async {
        let (generation, observed) = accepted_generation(env).await?;
        (observed == generation)
            .then_some(())
            .ok_or(format!("observed {observed} of {generation}"))
    })
    .await;
    let writes = "sluice_status_writes_total";
    assert!(
        cs[first].metric(writes).await.is_some_and(|n| n > 0.0),
        "leader wrote"
    );
    assert_eq!(
        cs[other].metric(writes).await,
        Some(0.0),
        "follower never writes"
    );

    // SIGKILL: no release; the follower waits out the lease (3 s). A
    // change made meanwhile is seen by the follower while it may not write;
    // it must write that status once it takes over, with nothing new to see.
    let killed_at = Instant::now();
    let _ = cs[first].child.kill();
    let _ = cs[first].child.wait();
    env.apply(&virtual_service(90)).await.expect("apply change");
    let unwritten = accepted_generation(env).await.expect("status");
    assert!(unwritten.1 < unwritten.0, "nobody leads yet: {unwritten:?}");
    one_leader(env, lease, &[&cs[other]], Duration::from_secs(15)).await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(9), "takeover took {took:?}");
    let current = |at_least: i64| async move {
        let (generation, observed) = accepted_generation(env).await?;
        (generation >= at_least && observed == generation)
            .then_some(())
            .ok_or(format!("observed {observed} of {generation}"))
    };
    let limit = Duration::from_secs(30);
    eventually(&[&cs[other]], "written on takeover", limit, || current(2)).await;

    // Later generations are judged and written by the new leader.
    env.apply(&virtual_service(80)).await.expect("apply change");
    eventually(&[&cs[other]], "new leader writes", limit, || current(3)).await;
    assert!(
        cs[other].metric(writes).await.is_some_and(|n| n >= 2.0),
        "new leader wrote"
    );
    drop(cs.remove(first));

    // SIGTERM with a 12 s lease: the follower polls every 4 s, so without
    // the release the takeover would need at least 8 s.
    let lease = "status-released";
    let mut cs = [
        start_controller(&env.kubeconfig, lease, 12).await,
        start_controller(&env.kubeconfig, lease, 12).await,
    ];
    let refs: Vec<&Controller> = cs.iter().collect();
    let first = one_leader(env, lease, &refs, Duration::from_secs(30)).await;
    let other = 1 - first;
    let pid = cs[first].child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let stopped_at = Instant::now();
    let exit = cs[first].child.wait().expect("wait");
    assert!(exit.success(), "{exit:?}\n{}", cs[first].log());
    assert!(
        cs[first].log().contains("lease released"),
        "{}",
        cs[first].log()
    );
    one_leader(env, lease, &[&cs[other]], Duration::from_secs(20)).await;
    let took = stopped_at.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "takeover after release took {took:?}"
    );
}
