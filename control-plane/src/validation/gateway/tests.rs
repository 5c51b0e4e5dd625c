use crate::resource::parse_documents;
use crate::validation::tests::problems;
use crate::validation::{Problem, warnings};

fn header(name: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: shop}}\n"
    )
}

fn gateway(spec: &str) -> Vec<String> {
    problems(&format!("{}spec:\n{spec}", header("g")))
        .into_iter()
        .map(|l| l.trim_start_matches("Gateway shop/g: ").to_owned())
        .collect()
}

/// Warnings other than the one every Gateway gets.
fn warned(spec: &str) -> Vec<String> {
    parse_documents(&format!("{}spec:\n{spec}", header("g")), "default")
        .into_iter()
        .map(|r| r.expect("parses"))
        .flat_map(|r| {
            let key = r.key();
            warnings(&r)
                .into_iter()
                .map(move |w| Problem(&key, &w).to_string())
        })
        .map(|l| l.trim_start_matches("Gateway shop/g: ").to_owned())
        .filter(|l| !l.starts_with("spec: accepted and validated, not served"))
        .collect()
}

const HTTP_80: &str = "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n";

#[test]
fn istio_samples_and_reference_examples_are_valid() {
    for spec in [
        // samples/bookinfo/networking/bookinfo-gateway.yaml (8080 on Istio's default ingress)
        "  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n",
        // samples/httpbin/httpbin-gateway.yaml
        "  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"httpbin.example.com\"]\n",
        // samples/tcp-echo/tcp-echo-all-v1.yaml
        "  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 31400, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n",
        // The reference page's example: redirect, SIMPLE with files and with a secret, MONGO.
        "  selector: {app: my-gateway-controller}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [uk.bookinfo.com, eu.bookinfo.com]\n    tls: {httpsRedirect: true}\n  - port: {number: 443, name: https-443, protocol: HTTPS}\n    hosts: [uk.bookinfo.com, eu.bookinfo.com]\n    tls: {mode: SIMPLE, serverCertificate: /etc/certs/servercert.pem, privateKey: /etc/certs/privatekey.pem}\n  - port: {number: 9443, name: https-9443, protocol: HTTPS}\n    hosts: [\"bookinfo-namespace/*.bookinfo.com\"]\n    tls: {mode: SIMPLE, credentialName: bookinfo-secret}\n  - port: {number: 9080, name: http-wildcard, protocol: HTTP}\n    hosts: [\"*\"]\n  - port: {number: 2379, name: mongo, protocol: MONGO}\n    hosts: [\"*\"]\n",
        // Namespace-restricted hosts.
        "  selector: {app: my-gateway-controller}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"ns1/*\", \"ns2/foo.bar.com\", \"./a.example.com\", \"*/b.example.com\"]\n",
        // SNI passthrough (Istio's ingress-sni-passthrough task) and east-west AUTO_PASSTHROUGH.
        "  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    tls: {mode: PASSTHROUGH}\n    hosts: [nginx.example.com]\n  - port: {number: 15443, name: tls, protocol: TLS}\n    tls: {mode: AUTO_PASSTHROUGH}\n    hosts: [\"*.local\"]\n",
        // MUTUAL with a secret, with files, and ISTIO_MUTUAL; an IP host.
        "  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    tls: {mode: MUTUAL, credentialName: httpbin-credential}\n    hosts: [httpbin.example.com]\n  - port: {number: 8443, name: https-files, protocol: HTTPS}\n    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem, caCrl: /crl.pem, minProtocolVersion: TLSV1_2, maxProtocolVersion: TLSV1_3}\n    hosts: [10.0.0.1]\n  - port: {number: 15443, name: mesh, protocol: TLS}\n    tls: {mode: ISTIO_MUTUAL}\n    hosts: [\"*\"]\n",
    ] {
        assert_eq!(gateway(spec), Vec::<String>::new(), "{spec}");
    }
}

#[test]
fn a_gateway_needs_servers_and_a_label_name() {
    assert_eq!(
        problems(&format!("{}spec: {{}}\n", header("g"))),
        ["Gateway shop/g: spec.servers: at least one server is required"]
    );
    assert_eq!(
        problems(&format!(
            "{}spec:\n  servers:\n{HTTP_80}",
            header("ingress.example")
        )),
        [
            "Gateway shop/ingress.example: metadata.name: `ingress.example`: a Gateway name must be a DNS-1123 label (no dots), as VirtualServices name it `namespace/name`"
        ]
    );
}

#[test]
fn ports_are_required_named_unique_and_known() {
    assert_eq!(
        gateway(
            "  servers:\n  - hosts: [\"*\"]\n  - port: {number: 0, protocol: SOAP, targetPort: 8080}\n    hosts: [\"*\"]\n  - port: {number: 80}\n    hosts: [\"*\"]\n  - port: {number: 81, name: http, protocol: http}\n    hosts: [\"*\"]\n  - port: {number: 82, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"
        ),
        [
            "spec.servers[0].port: port is required",
            "spec.servers[1].port.number: port number 0 must be in the range 1..65535",
            "spec.servers[1].port.protocol: unknown value `SOAP` (expected one of HTTP, HTTPS, HTTP2, HTTP_PROXY, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, MYSQL, REDIS)",
            "spec.servers[1].port.targetPort: targetPort has no effect on a Gateway",
            "spec.servers[1].port.name: port name is required",
            "spec.servers[2].port.protocol: protocol is required",
            "spec.servers[2].port.name: port name is required",
            "spec.servers[4].port.name: duplicate port name `http` (also used by spec.servers[3]); port names must be unique across servers",
        ]
    );
}

#[test]
fn hosts_are_namespace_slash_dns_names() {
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: []\n  - port: {number: 81, name: http2, protocol: HTTP}\n    hosts: [reviews, \"~/a.example.com\", \"ns*/a.example.com\", \"Bad_NS/*\", \"/a.example.com\", \"ns/\", \"./a*.example.com\", \"*.example.*\", \"a..example.com\"]\n"
        ),
        [
            "spec.servers[0].hosts: at least one host is required",
            "spec.servers[1].hosts[0]: `reviews`: short names are not allowed; write the full name (e.g. `reviews.example.com`)",
            "spec.servers[1].hosts[1]: `~/a.example.com`: invalid namespace `~` (expected `*`, `.` or a namespace name)",
            "spec.servers[1].hosts[2]: `ns*/a.example.com`: invalid namespace `ns*` (expected `*`, `.` or a namespace name)",
            "spec.servers[1].hosts[3]: `Bad_NS/*`: invalid namespace `Bad_NS` (expected `*`, `.` or a namespace name)",
            "spec.servers[1].hosts[4]: `/a.example.com`: the namespace and the dnsName of `namespace/dnsName` cannot be empty",
            "spec.servers[1].hosts[5]: `ns/`: the namespace and the dnsName of `namespace/dnsName` cannot be empty",
            "spec.servers[1].hosts[6]: `./a*.example.com`: partial wildcard `a*.example.com` is not allowed (only `*` or `*.suffix`)",
            "spec.servers[1].hosts[7]: `*.example.*`: domain name `*.example.*` invalid (label `*` invalid)",
            "spec.servers[1].hosts[8]: `a..example.com`: domain name `a..example.com` invalid (label `` invalid)",
        ]
    );
}

/// Istio's gateway host rules refuse short names and partial wildcards
/// beyond what `ValidateWildcardDomain` refuses (istio/istio
/// `pkg/config/validation/agent`: `validateSidecarOrGatewayHostnamePart`,
/// `ValidatePartialWildCard`; its Gateway test "invalid partial wildcard"
/// refuses `*bar.com`).
#[test]
fn short_names_and_partial_wildcards_are_refused_as_istio_does() {
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [localhost, \"*/foo\", \"ns/foo\", \"*foo.example.com\", \"*-foo.example.com\", \"ns/*foo.example.com\", \"a*.x.com\", \"foo.*.com\"]\n"
        ),
        [
            "spec.servers[0].hosts[0]: `localhost`: short names are not allowed; write the full name (e.g. `localhost.example.com`)",
            "spec.servers[0].hosts[1]: `*/foo`: short names are not allowed; write the full name (e.g. `foo.example.com`)",
            "spec.servers[0].hosts[2]: `ns/foo`: short names are not allowed; write the full name (e.g. `foo.example.com`)",
            "spec.servers[0].hosts[3]: `*foo.example.com`: partial wildcard `*foo.example.com` is not allowed (only `*` or `*.suffix`)",
            "spec.servers[0].hosts[4]: `*-foo.example.com`: partial wildcard `*-foo.example.com` is not allowed (only `*` or `*.suffix`)",
            "spec.servers[0].hosts[5]: `ns/*foo.example.com`: partial wildcard `*foo.example.com` is not allowed (only `*` or `*.suffix`)",
            "spec.servers[0].hosts[6]: `a*.x.com`: partial wildcard `a*.x.com` is not allowed (only `*` or `*.suffix`)",
            "spec.servers[0].hosts[7]: `foo.*.com`: partial wildcard `foo.*.com` is not allowed (only `*` or `*.suffix`)",
        ]
    );
}

/// IP literals are gateway hosts (Istio falls back to an IP check when the
/// DNS check fails); a name whose last label is all digits is not.
#[test]
fn ip_hosts_are_accepted_and_numeric_top_level_domains_refused() {
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [10.0.0.1, \"ns/192.168.1.1\", \"::ffff:10.0.0.1\", example.com., foo.123a]\n"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [10.0.0.256, foo.123, \"*.42\", \"ns/1.2.3\"]\n"
        ),
        [
            "spec.servers[0].hosts[0]: `10.0.0.256`: not an IP address, and the top-level domain `256` of a domain name cannot be all-numeric",
            "spec.servers[0].hosts[1]: `foo.123`: not an IP address, and the top-level domain `123` of a domain name cannot be all-numeric",
            "spec.servers[0].hosts[2]: `*.42`: not an IP address, and the top-level domain `42` of a domain name cannot be all-numeric",
            "spec.servers[0].hosts[3]: `ns/1.2.3`: not an IP address, and the top-level domain `3` of a domain name cannot be all-numeric",
        ]
    );
}

#[test]
fn bind_addresses_and_unix_sockets() {
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 0, name: uds, protocol: HTTP}\n    bind: unix:///var/run/gw.sock\n    hosts: [\"*\"]\n  - port: {number: 0, name: abstract, protocol: HTTP}\n    bind: unix://@gw\n    hosts: [\"*\"]\n  - port: {number: 80, name: ip, protocol: HTTP}\n    bind: 127.0.0.1\n    hosts: [\"*\"]\n"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 80, name: uds, protocol: HTTP}\n    bind: unix://relative.sock\n    hosts: [\"*\"]\n  - port: {number: 81, name: nic, protocol: HTTP}\n    bind: eth0\n    hosts: [\"*\"]\n"
        ),
        [
            "spec.servers[0].bind: `unix://relative.sock`: a unix socket must be an absolute path to a file (or @name)",
            "spec.servers[0].port.number: must be 0 when binding to a unix socket (is 80)",
            "spec.servers[1].bind: `eth0` is not an IP address or a unix:// path",
        ]
    );
}

#[test]
fn tls_settings_match_the_port_protocol() {
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*\"]\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: cert}\n  - port: {number: 81, name: http-files, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {httpsRedirect: true, serverCertificate: /c.pem}\n  - port: {number: 31400, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n    tls: {httpsRedirect: true}\n"
        ),
        [
            "spec.servers[0].tls: required: a HTTPS server needs TLS settings",
            "spec.servers[1].tls: a plain-text HTTP server takes only tls.httpsRedirect; terminate TLS on an HTTPS port",
            "spec.servers[2].tls: a plain-text HTTP server takes only tls.httpsRedirect; terminate TLS on an HTTPS port",
            "spec.servers[3].tls: not allowed on a TCP server (only HTTPS, TLS, or HTTP for httpsRedirect)",
        ]
    );
}

#[test]
fn tls_modes_need_their_certificates() {
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 443, name: a, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE}\n  - port: {number: 444, name: b, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}\n  - port: {number: 445, name: c, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: OPTIONAL_MUTUAL, caCertificates: /ca.pem, tlsCertificates: [{serverCertificate: /c.pem}]}\n  - port: {number: 446, name: d, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: a, serverCertificate: /c.pem, privateKey: /k.pem}\n  - port: {number: 447, name: e, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: TERMINATE}\n"
        ),
        [
            "spec.servers[0].tls.serverCertificate: required with mode SIMPLE (or set credentialName)",
            "spec.servers[0].tls.privateKey: required with mode SIMPLE (or set credentialName)",
            "spec.servers[1].tls.caCertificates: required with mode MUTUAL (or set credentialName)",
            "spec.servers[2].tls.tlsCertificates[0].privateKey: required with mode OPTIONAL_MUTUAL (or set credentialName)",
            "spec.servers[3].tls: set only one of credentialName, credentialNames, serverCertificate/privateKey and tlsCertificates",
            "spec.servers[4].tls.mode: unknown value `TERMINATE` (expected one of PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, OPTIONAL_MUTUAL)",
        ]
    );
}

#[test]
fn istio_mutual_crl_and_protocol_versions() {
    assert_eq!(
        gateway(
            "  servers:\n  - port: {number: 443, name: a, protocol: TLS}\n    hosts: [\"*\"]\n    tls: {mode: ISTIO_MUTUAL, credentialName: a, caCertificates: /ca.pem}\n  - port: {number: 444, name: b, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, caCrl: /crl.pem}\n  - port: {number: 445, name: c, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH, credentialName: a, caCrl: /crl.pem}\n  - port: {number: 446, name: d, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}\n  - port: {number: 447, name: e, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH, minProtocolVersion: TLS1.2, maxProtocolVersion: TLS_AUTO}\n"
        ),
        [
            "spec.servers[0].tls.caCertificates: not allowed with mode ISTIO_MUTUAL (the gateway's mesh certificate is used)",
            "spec.servers[0].tls.credentialName: not allowed with mode ISTIO_MUTUAL (the gateway's mesh certificate is used)",
            "spec.servers[1].tls.caCrl: not supported with mode SIMPLE",
            "spec.servers[2].tls.caCrl: not supported with credentialName: put the CRL in the credential",
            "spec.servers[4].tls.minProtocolVersion: unknown value `TLS1.2` (expected one of TLS_AUTO, TLSV1_0, TLSV1_1, TLSV1_2, TLSV1_3)",
        ]
    );
}

#[test]
fn unknown_fields_are_refused() {
    let docs = parse_documents(
        &format!(
            "{}spec:\n  servers:\n  - port: {{number: 80, name: http, protocol: HTTP}}\n    host: [\"*\"]\n",
            header("g")
        ),
        "default",
    );
    let err = docs
        .into_iter()
        .next()
        .expect("one document")
        .expect_err("unknown field");
    assert!(
        err.to_string()
            .contains("spec.servers[0].host: unknown field"),
        "{err}"
    );
}

#[test]
fn every_gateway_is_warned_as_not_served() {
    let out: Vec<String> = parse_documents(
        &format!("{}spec:\n  servers:\n{HTTP_80}", header("g")),
        "default",
    )
    .into_iter()
    .flat_map(|r| warnings(&r.expect("parses")))
    .map(|w| w.to_string())
    .collect();
    assert_eq!(
        out,
        [
            "spec: accepted and validated, not served: Sluice runs no gateway proxy; VirtualServices that name this Gateway in `gateways` apply to sidecars only where they also list `mesh`"
        ]
    );
}

#[test]
fn settings_istio_warns_about_are_warned() {
    assert_eq!(
        warned(
            "  servers:\n  - port: {number: 443, name: a, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH, httpsRedirect: true, credentialName: x}\n  - port: {number: 444, name: b, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, tlsCertificates: [{serverCertificate: /1, privateKey: /1}, {serverCertificate: /2, privateKey: /2}, {serverCertificate: /3, privateKey: /3}], minProtocolVersion: TLSV1_1}\n  - port: {number: 445, name: c, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, credentialName: x, minProtocolVersion: TLSV1_0, cipherSuites: [AES128-SHA, AES128-SHA]}\n"
        ),
        [
            "spec.servers[0].tls.httpsRedirect: only meaningful on HTTP servers",
            "spec.servers[0].tls: mode PASSTHROUGH uses no certificates; the ones set are ignored",
            "spec.servers[1].tls.tlsCertificates: at most 2 server certificates are used",
            "spec.servers[1].tls.minProtocolVersion: versions below TLSV1_2 need cipherSuites set: the default suites no longer include ones they can use",
            "spec.servers[2].tls.cipherSuites[1]: duplicate cipher suite `AES128-SHA` is ignored",
        ]
    );
}

/// Istio compares neither protocol version bound with the other: a maximum
/// below the minimum is valid there, so only warned here.
#[test]
fn max_protocol_version_below_min_is_a_warning() {
    let spec = "  servers:\n  - port: {number: 443, name: d, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}\n  - port: {number: 444, name: e, protocol: HTTPS}\n    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH, minProtocolVersion: TLSV1_3, maxProtocolVersion: TLS_AUTO}\n";
    assert_eq!(gateway(spec), Vec::<String>::new());
    assert_eq!(
        warned(spec),
        [
            "spec.servers[0].tls.maxProtocolVersion: TLSV1_2 is below minProtocolVersion TLSV1_3: no TLS version is left, so the proxy cannot serve this port (Istio does not check this)"
        ]
    );
}

#[test]
fn virtual_services_bound_only_to_gateways_are_warned() {
    let vs = |gateways: &str| -> Vec<String> {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: bookinfo, namespace: shop}}\nspec:\n  hosts: [\"*\"]\n  gateways: {gateways}\n  http:\n  - route:\n    - destination: {{host: productpage}}\n"
        );
        parse_documents(&yaml, "default")
            .into_iter()
            .flat_map(|r| warnings(&r.expect("parses")))
            .map(|w| w.to_string())
            .collect()
    };
    assert_eq!(
        vs("[bookinfo-gateway]"),
        [
            "spec.gateways: applies to no sidecar: bound only to gateways (no `mesh`), and Sluice runs no gateway proxy"
        ]
    );
    assert_eq!(vs("[shop/bookinfo-gateway, mesh]"), Vec::<String>::new());
    assert_eq!(vs("[]"), Vec::<String>::new());
}
