use crate::resource::parse_documents;
use crate::validation::tests::problems;
use crate::validation::{Problem, warnings};

fn header() -> &'static str {
    "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: shop}\n"
}

fn sidecar(spec: &str) -> Vec<String> {
    problems(&format!("{}spec:\n{spec}", header()))
        .into_iter()
        .map(|l| l.trim_start_matches("Sidecar shop/s: ").to_owned())
        .collect()
}

fn warned(spec: &str) -> Vec<String> {
    parse_documents(&format!("{}spec:\n{spec}", header()), "default")
        .into_iter()
        .map(|r| r.expect("parses"))
        .flat_map(|r| {
            let key = r.key();
            warnings(&r)
                .into_iter()
                .map(move |w| Problem(&key, &w).to_string())
        })
        .map(|l| l.trim_start_matches("Sidecar shop/s: ").to_owned())
        .collect()
}

#[test]
fn istio_reference_examples_are_valid() {
    // The examples of Istio's Sidecar reference page.
    for spec in [
        "  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n",
        "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n  egress:\n  - hosts: [\"./*\", \"istio-system/*\"]\n",
        "  workloadSelector: {labels: {app: ratings}}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: somename}\n    defaultEndpoint: unix:///var/run/someuds.sock\n  egress:\n  - port: {number: 9080, protocol: HTTP, name: egresshttp}\n    hosts: [\"prod-us1/*\"]\n  - hosts: [\"istio-system/*\"]\n",
        "  workloadSelector: {labels: {app: productpage}}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: somename}\n    defaultEndpoint: 127.0.0.1:8080\n    captureMode: NONE\n  egress:\n  - port: {number: 3306, protocol: MYSQL, name: egressmysql}\n    captureMode: NONE\n    bind: 127.0.0.1\n    hosts: [\"*/mysql.foo.com\"]\n",
        "  inboundConnectionPool:\n    http: {http1MaxPendingRequests: 1024, http2MaxRequests: 1024}\n",
        "  egress:\n  - hosts: [\"~/*\"]\n",
    ] {
        assert_eq!(sidecar(spec), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn empty_sidecar_is_refused() {
    assert_eq!(
        problems(&format!("{}spec: {{}}\n", header())),
        [
            "Sidecar shop/s: spec: empty configuration: set at least one of ingress, egress, outboundTrafficPolicy or inboundConnectionPool"
        ]
    );
}

#[test]
fn egress_hosts_and_listener_order() {
    assert_eq!(
        sidecar(
            "  egress:\n  - hosts: []\n  - hosts: [\"reviews\", \"./reviews\", \"Bad_NS/*\", \"./a*.example.com\"]\n  - port: {number: 9080, protocol: HTTP}\n    hosts: [\"./*\"]\n  - port: {number: 9080, protocol: HTTP}\n    hosts: [\"./*\"]\n"
        ),
        [
            "spec.egress[0].hosts: at least one host is required",
            "spec.egress[0]: the egress listener without a port must be the last one",
            "spec.egress[1].hosts[0]: `reviews` must be of the form namespace/dnsName (e.g. `./*` or `istio-system/*`)",
            "spec.egress[1].hosts[1]: `./reviews`: short names are not allowed; write the full name (e.g. `./reviews.<namespace>.svc.cluster.local`)",
            "spec.egress[1].hosts[2]: `Bad_NS/*`: invalid namespace `Bad_NS`",
            "spec.egress[1].hosts[3]: `./a*.example.com`: partial wildcard `a*` is not allowed",
            "spec.egress[1]: at most one egress listener may leave out the port",
            "spec.egress[3].port.number: port 9080 is already used by another egress listener",
        ]
    );
}

#[test]
fn ports_bind_and_default_endpoints() {
    assert_eq!(
        sidecar(
            "  ingress:\n  - defaultEndpoint: 127.0.0.1:8080\n  - port: {number: 0, protocol: HTTP, targetPort: 8080}\n    bind: eth0\n    captureMode: TPROXY\n  - port: {number: 9080, protocol: SOAP}\n    defaultEndpoint: 10.1.1.1:80\n  - port: {number: 9080, protocol: HTTP}\n    defaultEndpoint: unix://relative.sock\n  - port: {number: 9081}\n    defaultEndpoint: 127.0.0.1:99999\n"
        ),
        [
            "spec.ingress[0].port: port is required for ingress listeners",
            "spec.ingress[1].port.number: port number 0 must be in the range 1..65535",
            "spec.ingress[1].port.targetPort: targetPort has no effect on a Sidecar",
            "spec.ingress[1].bind: `eth0` is not an IP address or a unix:// path",
            "spec.ingress[1].captureMode: unknown value `TPROXY` (expected one of DEFAULT, IPTABLES, NONE)",
            "spec.ingress[2].port.protocol: unknown value `SOAP` (expected one of HTTP, HTTPS, HTTP2, HTTP_PROXY, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, MYSQL, REDIS)",
            "spec.ingress[2].defaultEndpoint: `10.1.1.1:80` must be 127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT or unix:///path",
            "spec.ingress[3].defaultEndpoint: `unix://relative.sock`: a unix socket path must be absolute",
            "spec.ingress[3].port.number: port 9080 is already used by another ingress listener",
            "spec.ingress[4].port.protocol: protocol is required",
            "spec.ingress[4].defaultEndpoint: port number 99999 must be in the range 1..65535",
        ]
    );
}

#[test]
fn selector_and_outbound_traffic_policy() {
    assert_eq!(
        sidecar(
            "  workloadSelector: {labels: {\"app\": \"*\"}}\n  outboundTrafficPolicy:\n    mode: ALLOW_ALL\n    egressProxy: {host: egress.example.com, port: {number: 443}}\n"
        ),
        [
            "spec.workloadSelector.labels.app: wildcard is not supported in selector",
            "spec.workloadSelector.labels.app: invalid label value `*`",
            "spec.outboundTrafficPolicy.mode: unknown value `ALLOW_ALL` (expected one of REGISTRY_ONLY, ALLOW_ANY)",
            "spec.outboundTrafficPolicy.egressProxy: only allowed with mode ALLOW_ANY",
        ]
    );
    assert_eq!(
        sidecar(
            "  outboundTrafficPolicy:\n    mode: ALLOW_ANY\n    egressProxy: {host: egress.example.com, port: {number: 443}}\n"
        ),
        [
            "spec.outboundTrafficPolicy.egressProxy: not supported: Sluice sends ALLOW_ANY traffic to its own destination"
        ]
    );
}

#[test]
fn fields_not_applied_are_warned() {
    assert_eq!(
        warned(
            "  workloadSelector: {}\n  inboundConnectionPool: {tcp: {maxConnections: 10}}\n  ingress:\n  - port: {number: 9080, protocol: HTTPS}\n    bind: 0.0.0.0\n    defaultEndpoint: unix:///var/run/app.sock\n    tls: {mode: SIMPLE}\n    connectionPool: {tcp: {maxConnections: 10}}\n  egress:\n  - hosts: [\"./*\"]\n    captureMode: NONE\n"
        ),
        [
            "spec.workloadSelector: selects every workload of the namespace (no labels)",
            "spec.inboundConnectionPool: not applied: the sidecar does not limit connections to its workload",
            "spec.ingress[0].bind: not applied: the sidecar serves every port on its own listeners (15001, 15006)",
            "spec.ingress[0].defaultEndpoint: not applied: unix sockets are not served; traffic goes to the app at the same port",
            "spec.ingress[0].tls: not applied: the sidecar terminates only mesh mTLS",
            "spec.ingress[0].connectionPool: not applied: the sidecar does not limit connections to its workload",
            "spec.egress[0].captureMode: not applied: traffic is captured by iptables as for DEFAULT",
        ]
    );
}

#[test]
fn ingress_tls_follows_istios_limits() {
    assert_eq!(
        sidecar(
            "  ingress:\n  - port: {number: 9080, protocol: HTTP}\n    tls: {mode: ISTIO_MUTUAL, credentialName: cert, subjectAltNames: [a]}\n  - port: {number: 9443, protocol: HTTPS}\n    tls: {mode: SIMPLE, serverCertificate: /etc/c.pem, privateKey: /etc/k.pem}\n"
        ),
        [
            "spec.ingress[0].tls: TLS settings need an HTTPS or TLS port (the port says `HTTP`)",
            "spec.ingress[0].tls.mode: unknown value `ISTIO_MUTUAL` (expected one of SIMPLE, MUTUAL)",
            "spec.ingress[0].tls.credentialName: not allowed on a Sidecar ingress listener",
            "spec.ingress[0].tls.subjectAltNames: not allowed on a Sidecar ingress listener",
        ]
    );
}
