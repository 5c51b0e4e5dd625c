//! `sluicectl describe` end to end: a config folder built from the seed mesh
//! plus conflicts, a live local mesh (the sidecar's `/debug/route` must agree
//! with the simulation), and a real API server describing a Pod.
//! The live test needs the workspace binaries next to sluicectl.

use serde_json::Value;
use sluice_conformance::mesh::{LocalMesh, MeshOptions};
use sluice_conformance::scenario::{Protocol, Workload};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The seed mesh's objects (reviews routing and subsets, orders retries,
/// production STRICT, orders AuthorizationPolicy and rate limit).
const SEED: &str = r#"
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {user-agent: {regex: '.*Mobile.*'}}}]
    route: [{destination: {host: reviews, subset: mobile}}]
  - match: [{headers: {cookie: {regex: '^(.*?;)?(beta=true)(;.*)?$'}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews, subset: v2}, weight: 10}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection: {consecutiveErrors: 5, interval: 30s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: mobile, labels: {version: mobile}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: orders}
spec:
  hosts: [orders]
  http:
  - retries: {attempts: 3, perTryTimeout: 2s, retryOn: '5xx,reset'}
    timeout: 10s
    route: [{destination: {host: orders, port: {number: 8080}}}]
---
{apiVersion: security.istio.io/v1beta1, kind: PeerAuthentication, metadata: {name: default, namespace: production}, spec: {mtls: {mode: STRICT}}}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: orders-policy}
spec:
  selector: {matchLabels: {app: orders}}
  action: ALLOW
  rules:
  - from: [{source: {principals: ['cluster.local/ns/default/sa/frontend']}}]
    to: [{operation: {methods: [GET, POST], paths: ['/orders/*']}}]
---
apiVersion: networking.istio.io/v1beta1
kind: EnvoyFilter
metadata: {name: rate-limit-filter}
spec:
  workloadSelector: {labels: {app: orders}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          stat_prefix: http_local_rate_limiter
          token_bucket: {max_tokens: 100, tokens_per_fill: 10, fill_interval: 1s}
"#;

/// Workloads: reviews v1 and v2 and orders with sidecars, ratings without.
const WORKLOADS: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1-0}
spec: {address: 127.0.40.1, serviceAccount: reviews, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2-0}
spec: {address: 127.0.40.2, serviceAccount: reviews, labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders}
spec:
  hosts: [orders.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}, {number: 9090, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: orders}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: orders-v1-0}
spec: {address: 127.0.40.3, serviceAccount: orders, labels: {app: orders, version: v1, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1-0}
spec: {address: 127.0.40.4, labels: {app: ratings, version: v1}}
"#;

/// Mesh-wide STRICT, a workload policy with a port exception, a root DENY,
/// a Telemetry, a RateLimitPolicy, and the conflicts: a second VirtualService
/// for reviews, a route to an undefined subset, TLS DISABLE against STRICT.
const EXTRA: &str = r#"
{apiVersion: security.istio.io/v1, kind: PeerAuthentication, metadata: {name: default, namespace: istio-system}, spec: {mtls: {mode: STRICT}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: orders-ports}
spec:
  selector: {matchLabels: {app: orders}}
  portLevelMtls: {9090: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: istio-system}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
---
{apiVersion: networking.istio.io/v1, kind: DestinationRule, metadata: {name: orders}, spec: {host: orders, trafficPolicy: {tls: {mode: DISABLE}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-copy}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: ratings-gateway}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-ingress}
spec:
  hosts: [ratings]
  gateways: [ratings-gateway]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings.default.svc.cluster.local]
  http: [{route: [{destination: {host: ratings, subset: v9}}]}]
---
apiVersion: sluice.io/v1alpha1
kind: RateLimitPolicy
metadata: {name: reviews-burst}
spec:
  selector: {matchLabels: {app: reviews}}
  maxTokens: 20
  tokensPerFill: 5
  fillInterval: 1s
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: orders-jwt}
spec:
  selector: {matchLabels: {app: orders}}
  jwtRules: [{issuer: https://idp.example, jwks: '{"keys":[]}'}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: orders}
spec:
  workloadSelector: {labels: {app: orders}}
  egress:
  - port: {number: 9080, protocol: HTTP}
    hosts: ["./ratings.default.svc.cluster.local"]
  - hosts: ["./orders.default.svc.cluster.local"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;

fn sluicectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .arg("describe")
        .args(args)
        .output()
        .expect("run sluicectl")
}

fn config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in [
        ("00-workloads.yaml", WORKLOADS),
        ("10-seed.yaml", SEED),
        ("20-extra.yaml", EXTRA),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

/// `describe ... -o json` on `dir`, parsed; panics with stderr on failure.
fn describe_json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--config-dir", dir.to_str().expect("utf-8"), "-o", "json"];
    all.extend_from_slice(args);
    let out = sluicectl(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn keys(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let o = &v[field];
            format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["namespace"].as_str().unwrap_or(""),
                o["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn warnings(d: &Value) -> Vec<String> {
    serde_json::from_value(d["warnings"].clone()).expect("warnings")
}

#[test]
fn describe_pod_lists_policies_modes_and_tls_conflict() {
    let dir = config_dir();
    let d = describe_json(dir.path(), &["pod", "orders-v1-0"]);
    let svc = &d["services"][0];
    assert_eq!(svc["host"], "orders.default.svc.cluster.local");
    assert_eq!(svc["virtual_service"]["object"]["name"], "orders");
    assert_eq!(svc["destination_rule"]["object"]["name"], "orders");
    let w = &d["workloads"][0];
    assert_eq!(
        keys(&w["peer_authentications"], "object"),
        [
            "PeerAuthentication istio-system/default",
            "PeerAuthentication default/orders-ports"
        ]
    );
    assert_eq!(w["peer_authentications"][0]["level"], "mesh");
    assert_eq!(w["peer_authentications"][0]["decides"], true);
    assert_eq!(w["peer_authentications"][1]["level"], "workload");
    // production's STRICT policy is another namespace's: not in scope.
    assert_eq!(w["mtls"], "STRICT");
    let ports: Vec<(u64, String)> = w["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or(0),
                p["mode"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [(8080, "STRICT".to_owned()), (9090, "PERMISSIVE".to_owned())]
    );
    // Root namespace policies are evaluated first.
    assert_eq!(
        keys(&w["authorization_policies"], "object"),
        [
            "AuthorizationPolicy istio-system/deny-admin",
            "AuthorizationPolicy default/orders-policy"
        ]
    );
    assert_eq!(w["authorization_policies"][0]["action"], "DENY");
    assert_eq!(w["jwt_rules"][0]["policy"], "default/orders-jwt");
    assert_eq!(w["jwt_rules"][0]["issuer"], "https://idp.example");
    assert_eq!(w["jwt_rules"][0]["keys"], "0 key(s)");
    assert_eq!(
        w["rate_limits"][0]["name"],
        "default/EnvoyFilter/rate-limit-filter"
    );
    // The seed inserts it at the front of the chain.
    assert_eq!(
        w["rate_limits"][0]["runs"],
        "before authentication and authorization"
    );
    assert_eq!(
        keys(&w["telemetry"]["objects"], "object"),
        ["Telemetry istio-system/mesh-default"]
    );
    let sc = &w["sidecar"];
    assert_eq!(sc["object"]["name"], "orders");
    assert_eq!(sc["why"], "selector");
    assert_eq!(sc["egress"][0], "9080: ./ratings.default.svc.cluster.local");
    assert_eq!(sc["egress"][1], "*: ./orders.default.svc.cluster.local");
    assert_eq!(sc["outbound_traffic_policy"], "REGISTRY_ONLY");
    // ratings:9080 and orders' two ports.
    assert_eq!(sc["reachable"], 3);
    let warns = warnings(&d);
    assert!(
        warns.iter().any(
            |w| w.contains("DestinationRule default/orders disables TLS")
                && w.contains("STRICT on port 8080")
        ),
        "{warns:?}"
    );
}

#[test]
fn describe_pod_routes_header_matched_request_and_reports_conflicts() {
    let dir = config_dir();
    let d = describe_json(
        dir.path(),
        &[
            "pod",
            "reviews-v1-0",
            "--request",
            "GET http://reviews:9080/reviews/1 -H cookie:session=1;beta=true",
        ],
    );
    let sim = &d["request"]["simulated"];
    assert_eq!(sim["route"]["index"], 1, "{sim}");
    let dests = &sim["action"]["forward"]["destinations"];
    assert_eq!(
        dests[0]["cluster"],
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(dests[0]["endpoints"][0]["address"], "127.0.40.2:9080");
    // Without the cookie, the weighted default route.
    let plain = describe_json(
        dir.path(),
        &[
            "pod",
            "reviews-v1-0",
            "--url",
            "http://reviews:9080/",
            "-H",
            "user-agent:curl",
        ],
    );
    assert_eq!(plain["request"]["simulated"]["route"]["index"], 2);
    let svc = &d["services"][0];
    assert_eq!(svc["virtual_service"]["object"]["name"], "reviews");
    assert_eq!(
        svc["ignored_virtual_services"][0]["object"]["name"],
        "reviews-copy"
    );
    let w = &d["workloads"][0];
    assert_eq!(
        w["rate_limits"][0]["name"],
        "default/RateLimitPolicy/reviews-burst"
    );
    let warns = warnings(&d);
    assert!(
        warns.iter().any(|w| w
            .contains("default/reviews and VirtualService default/reviews-copy both name host")),
        "{warns:?}"
    );
    assert!(
        warns
            .iter()
            .any(|w| w.contains("subset \"mobile\"") && w.contains("matches no endpoint")),
        "{warns:?}"
    );
    // The text form says the same.
    let out = sluicectl(&[
        "pod",
        "reviews-v1-0",
        "--config-dir",
        dir.path().to_str().expect("utf-8"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Effective mTLS: STRICT"), "{text}");
    assert!(
        text.contains("ignored VirtualService default/reviews-copy"),
        "{text}"
    );
}

#[test]
fn describe_service_flags_undefined_subset_and_missing_sidecar() {
    let dir = config_dir();
    let d = describe_json(dir.path(), &["service", "ratings"]);
    // A VirtualService bound only to a Gateway names the host but reaches no sidecar.
    let ignored = &d["services"][0]["ignored_virtual_services"][0];
    assert_eq!(ignored["object"]["name"], "ratings-ingress", "{d}");
    assert_eq!(
        ignored["why"],
        "bound only to gateways (ratings-gateway), not to `mesh`: Sluice runs no gateway proxy"
    );
    assert_eq!(d["target"]["name"], "ratings.default.svc.cluster.local");
    assert_eq!(d["workloads"][0]["instance"]["sidecar"], false);
    let warns = warnings(&d);
    assert!(
        warns
            .iter()
            .any(|w| w.contains("routes to subset \"v9\"") && w.contains("no DestinationRule")),
        "{warns:?}"
    );
    assert!(
        warns
            .iter()
            .any(|w| w.contains("ratings-v1-0 has no sidecar")),
        "{warns:?}"
    );
    let missing = sluicectl(&[
        "pod",
        "nope",
        "--config-dir",
        dir.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no pod nope in namespace default"));
}

#[test]
fn describe_service_shows_the_declaration_of_the_namespace_asked_about() {
    // The same host declared in two namespaces: each namespace's sidecars
    // use their own declaration; a third namespace's, the first.
    let se = |ns: &str, ip: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: shared, namespace: {ns}}}\n\
             spec: {{hosts: [shared.internal.example], location: MESH_INTERNAL, \
             resolution: STATIC, ports: [{{number: 80, name: http, protocol: HTTP}}], \
             endpoints: [{{address: {ip}}}]}}\n---\n"
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("{}{}", se("default", "127.0.9.1"), se("other", "127.0.9.2"));
    std::fs::write(dir.path().join("mesh.yaml"), text).expect("write");
    for (ns, want_ns, want_ip) in [
        ("default", "default", "127.0.9.1"),
        ("other", "other", "127.0.9.2"),
        ("third", "default", "127.0.9.1"),
    ] {
        let d = describe_json(
            dir.path(),
            &["service", "shared.internal.example", "-n", ns],
        );
        let svc = &d["services"][0];
        assert_eq!(svc["namespace"], want_ns, "from {ns}");
        assert_eq!(svc["endpoints"][0]["address"], want_ip, "from {ns}");
    }
}

const LIVE_CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_admin_answer_agrees_with_live_sidecar() {
    let work = tempfile::tempdir().expect("tempdir");
    let mut opts = MeshOptions::new(work.path().to_path_buf());
    let bin = Path::new(env!("CARGO_BIN_EXE_sluicectl"));
    opts.bin_dir = bin.parent().map(Path::to_path_buf);
    opts.mtls = false;
    let workloads = vec![Workload {
        service: "reviews".into(),
        namespace: "default".into(),
        service_account: None,
        port: 9080,
        protocol: Protocol::Http,
        versions: [("v1".to_string(), 1), ("v2".to_string(), 1)]
            .into_iter()
            .collect(),
    }];
    let mesh = LocalMesh::start(&workloads, LIVE_CONFIG, opts)
        .await
        .expect("mesh starts");
    let admin = mesh.instances()[0].admin_addr().to_string();
    let config = work.path().join("config");
    let ask = |dir: &Path| {
        describe_json(
            dir,
            &[
                "pod",
                "reviews-v1-0",
                "--request",
                "GET http://reviews:9080/ -H end-user:jason",
                "--admin",
                &admin,
            ],
        )
    };
    let d = ask(&config);
    // A config folder the sidecar never saw: v1 for everyone.
    let stale = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(&config).expect("config dir").flatten() {
        if entry.path().is_file() {
            let text = std::fs::read_to_string(entry.path()).expect("read");
            let text = text.replace("subset: v2", "subset: v1");
            std::fs::write(stale.path().join(entry.file_name()), text).expect("write");
        }
    }
    let changed = ask(stale.path());
    mesh.shutdown().await;

    let r = &d["request"];
    assert_eq!(r["agree"], true, "{r:#}");
    assert_eq!(r["live"]["answer"]["route"]["index"], 0, "{r:#}");
    assert_eq!(
        r["live"]["answer"]["action"]["forward"]["destinations"][0]["cluster"],
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    let r = &changed["request"];
    assert_eq!(r["agree"], false, "{r:#}");
    let diffs: Vec<String> = serde_json::from_value(r["differences"].clone()).expect("list");
    assert!(diffs.iter().any(|d| d.contains("cluster")), "{diffs:?}");
}

const KUBE_OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: describe-k8s}
---
{apiVersion: v1, kind: Node, metadata: {name: sluice-describe-node}}
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: describe-k8s}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: details-1
  namespace: describe-k8s
  labels: {app: details, version: v1}
spec:
  nodeName: sluice-describe-node
  containers:
  - {name: app, image: example.invalid/details}
  - {name: sluice-proxy, image: example.invalid/sluice-proxy}
---
{apiVersion: security.istio.io/v1, kind: PeerAuthentication, metadata: {name: default, namespace: describe-k8s}, spec: {mtls: {mode: STRICT}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: details-get, namespace: describe-k8s}
spec:
  selector: {matchLabels: {app: details}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details, namespace: describe-k8s}
spec:
  hosts: [details]
  http: [{route: [{destination: {host: details}}]}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_pod_from_kubernetes_api_server() {
    let env = sluice_testenv::TestEnv::shared()
        .await
        .expect("test environment");
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    env.kubectl_run(&["apply", "-f", crds.to_str().expect("utf-8")])
        .await
        .expect("CRDs");
    env.kubectl_run(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "--all",
    ])
    .await
    .expect("CRDs established");
    env.apply(KUBE_OBJECTS).await.expect("objects");
    env.set_pod_ready("describe-k8s", "details-1", "10.250.1.7")
        .await
        .expect("pod ready");
    let kubeconfig = env.kubeconfig.to_str().expect("utf-8").to_owned();
    let args = [
        "pod",
        "details-1",
        "-n",
        "describe-k8s",
        "--kubeconfig",
        &kubeconfig,
        "-o",
        "json",
    ];
    // The EndpointSlice controller adds the ready pod shortly.
    let deadline = Instant::now() + Duration::from_secs(30);
    let d = loop {
        let out = sluicectl(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        if d["services"].as_array().is_some_and(|s| !s.is_empty()) || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        d["services"][0]["host"], "details.describe-k8s.svc.cluster.local",
        "{d:#}"
    );
    assert_eq!(
        d["services"][0]["virtual_service"]["object"]["name"],
        "details"
    );
    let w = &d["workloads"][0];
    assert_eq!(w["instance"]["kind"], "Pod");
    assert_eq!(w["instance"]["sidecar"], true);
    assert_eq!(w["mtls"], "STRICT");
    assert_eq!(w["ports"][0]["port"], 8080);
    assert_eq!(
        keys(&w["peer_authentications"], "object"),
        ["PeerAuthentication describe-k8s/default"]
    );
    assert_eq!(
        keys(&w["authorization_policies"], "object"),
        ["AuthorizationPolicy describe-k8s/details-get"]
    );
}
