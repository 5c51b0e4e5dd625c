//! The API server restarts under a running controller (issue 7): while it
//! is down the controller keeps serving its last configuration and backs
//! off instead of spinning; once it is back the watches resume, so every
//! change made afterwards reaches a connected proxy, nothing deleted stays,
//! and statuses are written again. Runs on an environment of its own, since
//! a restart would break every test sharing one.

#[path = "support.rs"]
mod support;

use serde_json::Value;
use sluice_api::config::{Node, ProxyConfig};
use sluice_testenv::TestEnv;
use std::time::{Duration, Instant};
use support::{Controller, Proxy, eventually, install_crds, kubectl};

const NS: &str = "restart";
/// The Node the Pods name; the EndpointSlice controller skips Pods without one.
const NODE: &str = "restart-node";
/// How long the API server stays down.
const DOWNTIME: Duration = Duration::from_secs(5);
/// Istio kinds plus Service, EndpointSlice and Pod: one watch each.
const WATCHED_KINDS: usize = 15;

/// Service `name` selecting `app: name`, port 9080 to 8080.
fn service(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9080, targetPort: 8080}}]
"
    )
}

/// Pod `<app>-1` on the test node, labelled `app: <app>`.
fn pod(app: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {app}-1, namespace: {NS}, labels: {{app: {app}}}}}
spec:
  nodeName: {NODE}
  containers: [{{name: app, image: example.invalid/{app}}}]
"
    )
}

/// A VirtualService `name` for Service `host` with a route timeout.
fn virtual_service(name: &str, host: &str, timeout: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {NS}}}
spec:
  hosts: [{host}.{NS}.svc.cluster.local]
  http:
  - timeout: {timeout}
    route: [{{destination: {{host: {host}.{NS}.svc.cluster.local}}}}]
"
    )
}

/// Before the restart: two Services with a ready Pod behind `ratings`, a
/// route for each, and the Lease namespace.
fn before() -> String {
    [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: sluice-system}\n".to_owned(),
        service("ratings"),
        service("details"),
        pod("ratings"),
        virtual_service("ratings-route", "ratings", "7s"),
        virtual_service("details-doomed", "details", "3s"),
    ]
    .join("---\n")
}

/// How the mesh watches log a failed request (the webhook watches, not
/// counted here, say the same after their own module name).
const WATCH_FAILED: &str = "kube_source::watch: watch failed";

const RATINGS: &str = "outbound|9080||ratings.restart.svc.cluster.local";
const REVIEWS: &str = "outbound|9080||reviews.restart.svc.cluster.local";

/// Route timeouts (ms) of `virtual_service` ("ns/name") in `config`.
fn timeouts(config: &ProxyConfig, virtual_service: &str) -> Vec<u64> {
    config
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .filter(|r| r.virtual_service == virtual_service)
        .map(|r| r.timeout_ms)
        .collect()
}

/// Endpoint addresses of `cluster` in `config`.
fn endpoints(config: &ProxyConfig, cluster: &str) -> Vec<String> {
    config
        .clusters
        .iter()
        .filter(|c| c.name == cluster)
        .flat_map(|c| &c.endpoints)
        .map(|e| e.address.clone())
        .collect()
}

fn synced_before(config: &ProxyConfig) -> bool {
    timeouts(config, "restart/ratings-route") == [7000]
        && timeouts(config, "restart/details-doomed") == [3000]
        && endpoints(config, RATINGS) == ["10.250.1.7"]
}

fn routes_after(config: &ProxyConfig) -> bool {
    timeouts(config, "restart/ratings-route") == [9000]
        && timeouts(config, "restart/details-doomed").is_empty()
}

fn synced_after(config: &ProxyConfig) -> bool {
    routes_after(config)
        && endpoints(config, RATINGS).is_empty()
        && endpoints(config, REVIEWS) == ["10.250.1.8"]
}

fn node(id: &str) -> Node {
    Node {
        id: format!("{id}.{NS}"),
        workload: "productpage-v1".into(),
        namespace: NS.into(),
        service_account: "productpage".into(),
        ips: vec!["127.0.60.9".into()],
        ..Default::default()
    }
}

/// `sluice_kube_watch_restarts_total` summed over every kind, and the
/// number of kinds exposed.
async fn watch_restarts(c: &Controller) -> (f64, usize) {
    let body = c.admin_get("/metrics").await;
    let values: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("sluice_kube_watch_restarts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (values.iter().sum(), values.len())
}

/// Whether the controller-manager, reconnected too, has moved the
/// endpoints: `reviews` has its pod, `ratings` none.
async fn slices_after(env: &TestEnv) -> Result<(), String> {
    let out = env
        .kubectl_run(&["get", "endpointslices", "-n", NS, "-o", "json"])
        .await
        .map_err(|e| e.to_string())?;
    let list: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let addresses = |service: &str| -> Vec<String> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == service)
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["addresses"][0].as_str().map(String::from))
            .collect()
    };
    (addresses("reviews") == ["10.250.1.8"] && addresses("ratings").is_empty())
        .then_some(())
        .ok_or_else(|| {
            format!(
                "reviews {:?}, ratings {:?}",
                addresses("reviews"),
                addresses("ratings")
            )
        })
}

/// Whether `ratings-route` has `Accepted=True` for its current generation.
async fn ratings_route_status(env: &TestEnv) -> Result<(), String> {
    let vs = env
        .kubectl_run(&[
            "get",
            "virtualservice",
            "ratings-route",
            "-n",
            NS,
            "-o",
            "json",
        ])
        .await
        .map_err(|e| e.to_string())?;
    let vs: Value = serde_json::from_str(&vs).map_err(|e| e.to_string())?;
    let accepted = vs["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted"))
        .ok_or("no Accepted condition")?;
    (accepted["status"] == "True"
        && vs["status"]["observedGeneration"] == vs["metadata"]["generation"])
        .then_some(())
        .ok_or_else(|| {
            format!(
                "generation {}: {}",
                vs["metadata"]["generation"], vs["status"]
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restart_keeps_serving_then_resyncs_every_change() {
    let mut env = TestEnv::start().await.expect("test environment");
    install_crds(&env).await;
    env.create_namespace(NS).await.expect("namespace");
    env.ensure_node(NODE).await.expect("node");
    env.apply(&before())
        .await
        .expect("objects before the restart");
    env.set_pod_ready(NS, "ratings-1", "10.250.1.7")
        .await
        .expect("ratings-1 ready");
    let mut c = Controller::start(&env.kubeconfig, &[]).await;
    let mut proxy = Proxy::connect(c.grpc, node("productpage-v1-0")).await;
    let limit = Duration::from_secs(60);
    proxy
        .sync_until(limit, synced_before)
        .await
        .unwrap_or_else(|e| panic!("first sync: {e}\nlog:\n{}", c.log()));
    eventually(&[&c], "status before the restart", limit, || {
        ratings_route_status(&env)
    })
    .await;
    // Every kind is exposed. A watch may already have been restarted once on
    // a loaded machine (an API server still settling): counted from here.
    let (restarts_before, kinds) = watch_restarts(&c).await;
    assert_eq!(kinds, WATCHED_KINDS, "every kind exposed");
    let failures_before = c.log().matches(WATCH_FAILED).count();
    assert_eq!(
        c.metric("sluice_leader").await,
        Some(1.0),
        "holds the Lease"
    );
    let writes_before = c.metric("sluice_status_writes_total").await;

    // Down: the open stream stays open and silent, a proxy connecting now
    // gets the last configuration, and the controller keeps running.
    env.stop_apiserver();
    let stopped = Instant::now();
    if let Some(snapshot) = proxy.next_within(Duration::from_secs(2)).await {
        let version = snapshot.version.clone();
        proxy.apply(snapshot);
        proxy.ack(&version).await;
        assert!(synced_before(&proxy.config), "{:#?}", proxy.config);
    }
    let mut newcomer = Proxy::connect(c.grpc, node("productpage-v1-1")).await;
    newcomer
        .sync_until(Duration::from_secs(2), synced_before)
        .await
        .unwrap_or_else(|e| panic!("served while the API server is down: {e}"));
    let left = DOWNTIME.saturating_sub(stopped.elapsed());
    tokio::time::sleep(left).await;
    let mut child = c.child.try_wait();
    assert!(matches!(child, Ok(None)), "controller exited: {child:?}");
    let (failed, kinds) = watch_restarts(&c).await;
    assert_eq!(kinds, WATCHED_KINDS);
    assert!(
        failed >= restarts_before + 1.0,
        "no watch failure counted while down"
    );

    let ready_in = env.start_apiserver().await.expect("API server back");
    let back = Instant::now();
    eprintln!(
        "API server down {:.1?}, ready {ready_in:.1?} after its start",
        back - stopped
    );

    // Right after: change a route, delete one, add a Service with a Pod,
    // delete the Pod behind the other.
    kubectl(
        &env,
        &[
            "patch",
            "virtualservice",
            "ratings-route",
            "-n",
            NS,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/http/0/timeout","value":"9s"}]"#,
        ],
    )
    .await;
    kubectl(
        &env,
        &["delete", "virtualservice", "details-doomed", "-n", NS],
    )
    .await;
    // A new Service with a Pod: its EndpointSlice comes from the
    // controller-manager, itself reconnecting.
    let after = [service("reviews"), pod("reviews")].join("---\n");
    env.apply(&after).await.expect("objects after the restart");
    env.set_pod_ready(NS, "reviews-1", "10.250.1.8")
        .await
        .expect("reviews-1 ready");
    kubectl(
        &env,
        &[
            "delete",
            "pod",
            "ratings-1",
            "-n",
            NS,
            "--force",
            "--grace-period=0",
        ],
    )
    .await;
    // Routes depend on the controller's watches alone; endpoints also on
    // the controller-manager's, which back off the same way.
    proxy
        .sync_until(limit, routes_after)
        .await
        .unwrap_or_else(|e| panic!("routes after the restart: {e}\nlog:\n{}", c.log()));
    let routes_in = back.elapsed();
    eventually(&[&c], "EndpointSlices updated", limit, || {
        slices_after(&env)
    })
    .await;
    let slices_in = back.elapsed();
    proxy
        .sync_until(limit, synced_after)
        .await
        .unwrap_or_else(|e| panic!("endpoints after the restart: {e}\nlog:\n{}", c.log()));
    eprintln!(
        "after the API server was ready: route changes at the proxy in {routes_in:.1?}; \
         EndpointSlices updated by the controller-manager in {slices_in:.1?}, at the proxy in {:.1?}",
        back.elapsed()
    );

    eventually(&[&c], "status written after the restart", limit, || {
        ratings_route_status(&env)
    })
    .await;
    // The outage was shorter than the Lease's renew deadline: still leader.
    assert_eq!(c.metric("sluice_leader").await, Some(1.0));
    let writes_after = c.metric("sluice_status_writes_total").await;
    assert!(
        writes_after > writes_before,
        "{writes_before:?} → {writes_after:?}"
    );
    child = c.child.try_wait();
    assert!(matches!(child, Ok(None)), "controller exited: {child:?}");

    // Backed off, not spun: a few attempts per kind, not thousands.
    let (failed, _) = watch_restarts(&c).await;
    let failed = failed - restarts_before;
    let logged = c.log().matches(WATCH_FAILED).count() - failures_before;
    eprintln!("{failed} failed list/watch requests, {logged} logged, over {WATCHED_KINDS} kinds");
    assert!(
        failed >= 1.0 && failed <= (WATCHED_KINDS * 10) as f64,
        "{failed}"
    );
    assert!(
        logged <= WATCHED_KINDS * 10,
        "{logged} watch failures logged"
    );
}
