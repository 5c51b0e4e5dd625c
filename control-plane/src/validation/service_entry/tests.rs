use crate::validation::tests::problems;

fn se(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s}}\nspec: {spec}\n"
    ))
}

fn one(spec: &str, expected: &str) {
    assert_eq!(
        se(spec),
        [format!("ServiceEntry default/s: {expected}")],
        "spec: {spec}"
    );
}

fn we(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: w}}\nspec: {spec}\n"
    ))
}

const PORTS: &str = "ports: [{number: 80, name: http, protocol: HTTP}]";

#[test]
fn service_entry_static_endpoints_are_valid() {
    assert!(se(&format!("{{hosts: [api.local], {PORTS}, resolution: STATIC, endpoints: [{{address: 127.0.0.2, ports: {{http: 8080}}}}]}}")).is_empty());
}

#[test]
fn service_entry_without_hosts_is_refused() {
    one(
        &format!("{{{PORTS}}}"),
        "spec.hosts: service entry must have at least one host",
    );
}

#[test]
fn service_entry_wildcard_host_is_refused() {
    one(
        &format!("{{hosts: ['*'], {PORTS}}}"),
        "spec.hosts[0]: invalid host *",
    );
}

#[test]
fn service_entry_unknown_resolution_is_refused() {
    one(
        &format!("{{hosts: [a.b], {PORTS}, resolution: MAGIC}}"),
        "spec.resolution: unknown value `MAGIC` (expected one of NONE, STATIC, DNS, DNS_ROUND_ROBIN)",
    );
}

#[test]
fn service_entry_unknown_location_is_refused() {
    one(
        &format!("{{hosts: [a.b], {PORTS}, location: OUTSIDE}}"),
        "spec.location: unknown value `OUTSIDE` (expected one of MESH_EXTERNAL, MESH_INTERNAL)",
    );
}

#[test]
fn service_entry_unknown_protocol_is_refused() {
    one(
        "{hosts: [a.b], ports: [{number: 80, name: p, protocol: GOPHER}]}",
        "spec.ports[0].protocol: unsupported protocol `GOPHER`",
    );
}

#[test]
fn service_entry_duplicate_port_is_refused() {
    one(
        "{hosts: [a.b], ports: [{number: 80, name: a}, {number: 80, name: b}]}",
        "spec.ports[1].number: service entry port 80 already defined",
    );
}

#[test]
fn service_entry_port_zero_is_refused() {
    one(
        "{hosts: [a.b], ports: [{number: 0, name: a}]}",
        "spec.ports[0].number: port number 0 must be in the range 1..65535",
    );
}

#[test]
fn service_entry_static_endpoint_must_be_ip() {
    one(
        &format!(
            "{{hosts: [a.b], {PORTS}, resolution: STATIC, endpoints: [{{address: db.example.com}}]}}"
        ),
        "spec.endpoints[0].address: endpoint address `db.example.com` is not a valid IP address",
    );
}

#[test]
fn service_entry_endpoint_port_must_be_declared() {
    one(
        &format!(
            "{{hosts: [a.b], {PORTS}, resolution: STATIC, endpoints: [{{address: 10.0.0.1, ports: {{grpc: 9090}}}}]}}"
        ),
        "spec.endpoints[0].ports.grpc: endpoint port `grpc` is not defined by the service entry",
    );
}

#[test]
fn service_entry_endpoints_with_resolution_none_are_refused() {
    one(
        &format!("{{hosts: [a.b], {PORTS}, endpoints: [{{address: 10.0.0.1}}]}}"),
        "spec.endpoints: no endpoints should be provided for resolution type NONE",
    );
}

#[test]
fn service_entry_selector_and_endpoints_are_exclusive() {
    let lines = se(&format!(
        "{{hosts: [a.b], {PORTS}, resolution: STATIC, workloadSelector: {{labels: {{app: a}}}}, endpoints: [{{address: 10.0.0.1}}]}}"
    ));
    assert_eq!(
        lines,
        [
            "ServiceEntry default/s: spec: only one of workloadSelector or endpoints is allowed in service entry"
        ]
    );
}

#[test]
fn service_entry_cidr_with_dns_is_refused() {
    one(
        &format!("{{hosts: [a.b], addresses: [10.0.0.0/24], {PORTS}, resolution: DNS}}"),
        "spec.addresses[0]: CIDR addresses are allowed only for NONE/STATIC resolution types",
    );
}

#[test]
fn service_entry_dns_without_endpoints_needs_fqdn() {
    one(
        &format!("{{hosts: ['*.a.b'], {PORTS}, resolution: DNS}}"),
        "spec.hosts[0]: hosts must be FQDN if no endpoints are provided for resolution mode DNS",
    );
}

#[test]
fn service_entry_multiple_hosts_with_tcp_are_refused() {
    one(
        "{hosts: [a.b, c.d], ports: [{number: 5432, name: pg, protocol: TCP}], resolution: DNS}",
        "spec.hosts: multiple hosts provided with non-HTTP, non-TLS ports",
    );
}

#[test]
fn workload_entry_without_address_is_refused() {
    assert_eq!(
        we("{labels: {app: a}}"),
        ["WorkloadEntry default/w: spec.address: address is required"]
    );
}

#[test]
fn workload_entry_port_out_of_range_is_refused() {
    assert_eq!(
        we("{address: 127.0.0.5, ports: {http: 70000}}"),
        [
            "WorkloadEntry default/w: spec.ports.http: port number 70000 must be in the range 1..65535"
        ]
    );
}

#[test]
fn workload_entry_dns_address_is_valid() {
    assert!(
        we("{address: vm1.example.com, ports: {http: 8080}, serviceAccount: vm-sa}").is_empty()
    );
}

#[test]
fn workload_entry_service_account_of_any_form_is_valid() {
    assert!(we("{address: 127.0.0.5, serviceAccount: Legacy_VM}").is_empty());
    assert!(we("{address: 127.0.0.5, serviceAccount: 'a b/c'}").is_empty());
}

#[test]
fn workload_entry_service_account_longer_than_253_is_refused() {
    let ok = "a".repeat(253);
    assert!(we(&format!("{{address: 127.0.0.5, serviceAccount: {ok}}}")).is_empty());
    let long = "a".repeat(254);
    assert_eq!(
        we(&format!("{{address: 127.0.0.5, serviceAccount: {long}}}")),
        [
            "WorkloadEntry default/w: spec.serviceAccount: service account is 254 characters long, more than 253"
        ]
    );
}

#[test]
fn workload_entry_unix_socket_with_ports_is_refused() {
    assert_eq!(
        we("{address: 'unix:///var/run/app.sock', ports: {http: 80}}"),
        [
            "WorkloadEntry default/w: spec.ports: unix endpoint unix:///var/run/app.sock must not include ports"
        ]
    );
}

#[test]
fn service_entry_dns_round_robin_allows_one_endpoint() {
    one(
        &format!(
            "{{hosts: [a.b], {PORTS}, resolution: DNS_ROUND_ROBIN, endpoints: [{{address: x.a.b}}, {{address: y.a.b}}]}}"
        ),
        "spec.endpoints: there must only be 0 or 1 endpoint for resolution mode DNS_ROUND_ROBIN",
    );
}

#[test]
fn workload_entry_relative_unix_socket_is_refused() {
    assert_eq!(
        we("{address: 'unix://run/app.sock'}"),
        [
            "WorkloadEntry default/w: spec.address: unix address must be an absolute path or an abstract socket (@name)"
        ]
    );
}
