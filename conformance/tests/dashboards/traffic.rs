//! The mesh the dashboards are checked against, and traffic that makes the
//! sidecars and the controller record every kind of series the dashboards
//! read: HTTP (2xx, 4xx, 5xx, retries, an ejection, a rate limit, an
//! authorization decision, a pool overflow), request bodies, and mTLS TCP.
use bytes::Bytes;
use sluice_conformance::client::{self, Call, Via};
use sluice_conformance::mesh::LocalMesh;
use std::net::SocketAddr;
use std::time::Duration;

/// Every instance gets a sidecar; `sleep` is the caller.
pub const WORKLOADS: &str = "
- {service: sleep}
- {service: reviews, port: 9080, versions: {v1: 2}}
- {service: httpbin, port: 8000}
- {service: tcp-echo, port: 9000, protocol: tcp}
";

/// Retries with a small retry budget and outlier detection on `reviews` (at
/// most one of its two instances ejected), a rate limit under `/limited`, an ALLOW policy, and a
/// one-connection pool on `httpbin` so concurrent calls overflow it.
pub const CONFIG: &str = "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 50
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  annotations:
    retry.sluice.io/budget-percent: '0'
    retry.sluice.io/budget-min-retries-per-second: '1'
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}}]
    retries: {attempts: 2, retryOn: 5xx}
---
apiVersion: sluice.io/v1alpha1
kind: RateLimitPolicy
metadata: {name: reviews-limited}
spec:
  selector:
    matchLabels: {app: reviews}
  maxTokens: 1
  tokensPerFill: 1
  fillInterval: 60s
  match:
  - uri: {prefix: /limited}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-from-default, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from:
    - source: {namespaces: [default]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
";

fn call(via: SocketAddr, method: &str, url: &str, body: &'static [u8]) -> Call {
    Call {
        via: Via::Outbound(via),
        url: url.into(),
        method: method.into(),
        headers: vec![],
        body: Bytes::from_static(body),
        h2: false,
        timeout: Duration::from_secs(5),
    }
}

/// Status codes answered to `calls` sent one after another.
async fn statuses(calls: &[Call]) -> Vec<Option<u16>> {
    let mut out = Vec::new();
    for c in calls {
        out.push(client::send(c).await.status);
    }
    out
}

/// Sends the traffic; asserts only that it had the effect meant (else a
/// missing series would be a traffic problem, not a dashboard problem).
pub async fn drive(mesh: &LocalMesh) {
    let sleep = mesh.instances()[mesh.select("sleep", None, None)[0]].outbound_addr();
    let ok: Vec<Call> = (0..20)
        .map(|_| call(sleep, "POST", "http://reviews:9080/post", b"0123456789"))
        .collect();
    let got = statuses(&ok).await;
    assert!(got.iter().all(|s| *s == Some(200)), "plain calls: {got:?}");

    // Each 503 is tried up to 3 times over 2 instances: one instance sees 3
    // in a row and is ejected; the first retries end exhausted, then the
    // budget (no share, 1/s reserve over a 10 s window) refuses the rest.
    let failing: Vec<Call> = (0..12)
        .map(|_| call(sleep, "GET", "http://reviews:9080/status/503", b""))
        .collect();
    let got = statuses(&failing).await;
    assert!(got.iter().all(|s| *s == Some(503)), "503 calls: {got:?}");

    let limited: Vec<Call> = (0..3)
        .map(|_| call(sleep, "GET", "http://reviews:9080/limited/x", b""))
        .collect();
    let got = statuses(&limited).await;
    assert!(got.contains(&Some(429)), "rate-limited calls: {got:?}");

    let httpbin = mesh.select("httpbin", None, None)[0];
    mesh.behave(httpbin, None, 300).await.unwrap();
    let slow = call(sleep, "GET", "http://httpbin:8000/get", b"");
    let got: Vec<Option<u16>> = futures::future::join_all((0..6).map(|_| client::send(&slow)))
        .await
        .iter()
        .map(|o| o.status)
        .collect();
    assert!(got.contains(&Some(503)), "overflowing calls: {got:?}");
    mesh.behave(httpbin, None, 0).await.unwrap();

    let tcp: Vec<Call> = (0..5)
        .map(|_| call(sleep, "GET", "tcp://tcp-echo:9000", b"hello"))
        .collect();
    let got = statuses(&tcp).await;
    assert!(got.iter().all(|s| *s == Some(200)), "tcp calls: {got:?}");
    // TCP metrics are recorded when the connection closes on both sides.
    tokio::time::sleep(Duration::from_millis(500)).await;
}
