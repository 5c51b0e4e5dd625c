//! `sluicectl analyze` as users run it: the real binary on real files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn testdata(dir: &str) -> PathBuf {
    manifest_dir().join("../control-plane/testdata").join(dir)
}

fn analyze(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .arg("analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sluicectl runs")
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn analyze_seed_mesh_is_clean() {
    let seed = manifest_dir().join("../../shared/seed-mesh.yaml");
    assert!(seed.exists(), "{} is missing", seed.display());
    let out = analyze(manifest_dir(), &[seed.to_str().unwrap()]);
    // Valid, with Istio's deprecation of consecutiveErrors pointed out.
    let name = seed.to_str().unwrap();
    assert_eq!(
        lines(&out.stdout),
        [format!(
            "{name}: warning: DestinationRule default/reviews: \
             spec.trafficPolicy.outlierDetection.consecutiveErrors: deprecated: counts only \
             gateway errors (502, 503, 504), as consecutiveGatewayErrors does; use \
             consecutiveGatewayErrors or consecutive5xxErrors"
        )]
    );
    assert_eq!(
        lines(&out.stderr),
        ["analyzed 6 objects in 1 file: 0 problems, 1 warning"]
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn analyze_valid_examples_have_no_problems() {
    let out = analyze(&testdata("valid"), &["all-kinds.yaml"]);
    // Valid, with one field accepted but not applied and a Gateway no proxy serves.
    assert_eq!(
        lines(&out.stdout),
        [
            "all-kinds.yaml: warning: DestinationRule shop/shop: \
             spec.subsets[1].trafficPolicy.loadBalancer.warmup: not applied: a new endpoint takes \
             its full share at once",
            "all-kinds.yaml: warning: Gateway istio-system/ingress: spec: accepted and validated, \
             not served: Sluice runs no gateway proxy; VirtualServices that name this Gateway in \
             `gateways` apply to sidecars only where they also list `mesh`",
        ]
    );
    assert_eq!(
        lines(&out.stderr),
        ["analyzed 12 objects in 1 file: 0 problems, 2 warnings"]
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn analyze_invalid_files_print_one_line_per_problem() {
    let out = analyze(
        &testdata("invalid"),
        &[
            "virtual-service.yaml",
            "unknown-field.yaml",
            "destination-rule.yaml",
            "envoy-filter.yaml",
            "mixed.yaml",
        ],
    );
    assert_eq!(
        lines(&out.stdout),
        [
            "virtual-service.yaml: VirtualService default/reviews: spec.hosts[1]: wildcard host * is not allowed for virtual services bound to the mesh gateway",
            "virtual-service.yaml: VirtualService default/reviews: spec.http[0].retries.perTryTimeout: invalid duration `2 seconds` (expected e.g. 1.5s, 100ms, 1m, 1h)",
            "virtual-service.yaml: VirtualService default/reviews: spec.http[0].route[1].weight: must be >= 0",
            "unknown-field.yaml: VirtualService shop/reviews: spec.http[0].route[0].destination.hots: unknown field, expected one of `host`, `subset`, `port`",
            "destination-rule.yaml: DestinationRule shop/reviews: spec.trafficPolicy.loadBalancer.simple: unknown value `FASTEST` (expected one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST)",
            "destination-rule.yaml: DestinationRule shop/reviews: spec.trafficPolicy.outlierDetection.maxEjectionPercent: percentage 150 must be in [0, 100]",
            "destination-rule.yaml: DestinationRule shop/reviews: spec.subsets[1].name: duplicate subset name `v1`",
            "envoy-filter.yaml: EnvoyFilter default/lua: spec.configPatches[0]: unsupported EnvoyFilter patch: filter `envoy.filters.http.lua` (only envoy.filters.http.local_ratelimit is supported)",
            "mixed.yaml: document 2: unsupported kind `WorkloadGroup` (supported: VirtualService, DestinationRule, ServiceEntry, WorkloadEntry, Sidecar, Gateway, EnvoyFilter, PeerAuthentication, AuthorizationPolicy, RequestAuthentication, RateLimitPolicy, Telemetry)",
            "mixed.yaml: AuthorizationPolicy default/old: apiVersion: AuthorizationPolicy is not served at `security.istio.io/v1alpha1` (served: security.istio.io/v1, security.istio.io/v1beta1)",
            "mixed.yaml: AuthorizationPolicy shop/block: spec.action: unknown value `BLOCK` (expected one of ALLOW, DENY, AUDIT, CUSTOM)",
            "mixed.yaml: RateLimitPolicy default/orders: spec.maxTokens: must be > 0",
        ]
    );
    assert_eq!(
        lines(&out.stderr),
        ["analyzed 9 objects in 5 files: 12 problems"]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn analyze_reads_stdin_for_dash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"apiVersion: sluice.io/v1alpha1\nkind: RateLimitPolicy\nmetadata: {name: l}\nspec: {maxTokens: 1, tokensPerFill: 1, fillInterval: 1ns}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        lines(&out.stdout),
        ["<stdin>: RateLimitPolicy default/l: spec.fillInterval: duration must be >= 1ms"]
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn analyze_unreadable_file_exits_2_and_checks_the_rest() {
    let out = analyze(
        &testdata("invalid"),
        &["no-such-file.yaml", "envoy-filter.yaml"],
    );
    assert_eq!(
        lines(&out.stdout).len(),
        1,
        "the readable file is still analyzed"
    );
    let stderr = lines(&out.stderr);
    assert!(
        stderr[0].starts_with("no-such-file.yaml: cannot read: "),
        "{stderr:?}"
    );
    assert_eq!(
        stderr[1],
        "analyzed 1 object in 2 files: 1 problem, 1 unreadable file"
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn analyze_accepts_istio_bookinfo_gateway_with_warnings() {
    // Istio's bookinfo-gateway.yaml as shipped: a Gateway and a VirtualService
    // bound only to it. Both are valid; neither programs a sidecar.
    let out = analyze(&testdata("valid"), &["bookinfo-gateway.yaml"]);
    assert_eq!(
        lines(&out.stdout),
        [
            "bookinfo-gateway.yaml: warning: Gateway default/bookinfo-gateway: spec: accepted and \
             validated, not served: Sluice runs no gateway proxy; VirtualServices that name this \
             Gateway in `gateways` apply to sidecars only where they also list `mesh`",
            "bookinfo-gateway.yaml: warning: VirtualService default/bookinfo: spec.gateways: \
             applies to no sidecar: bound only to gateways (no `mesh`), and Sluice runs no gateway \
             proxy",
        ]
    );
    assert_eq!(
        lines(&out.stderr),
        ["analyzed 2 objects in 1 file: 0 problems, 2 warnings"]
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn analyze_warns_of_gateways_no_analyzed_file_defines() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .args(["analyze", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop, namespace: shop}\nspec:\n  hosts: [shop]\n  gateways: [mesh, istio-system/ingress, edge, edge.outside.svc.cluster.local]\n  http:\n  - route: [{destination: {host: shop}}]\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = lines(&out.stdout);
    assert_eq!(
        stdout
            .iter()
            .filter(|l| l.contains("IST0101"))
            .cloned()
            .collect::<Vec<_>>(),
        [
            "<stdin>: warning: VirtualService shop/shop: spec.gateways[1]: gateway `istio-system/ingress` is not among the analyzed objects (Istio: IST0101 ReferencedResourceNotFound)",
            "<stdin>: warning: VirtualService shop/shop: spec.gateways[3]: gateway `outside/edge` is not among the analyzed objects (Istio: IST0101 ReferencedResourceNotFound)",
        ]
    );
    assert_eq!(out.status.code(), Some(0));
}
