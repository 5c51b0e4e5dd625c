use crate::validation::tests::problems;

fn vs(spec: &str) -> Vec<String> {
    problems(&format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r}}\nspec: {spec}\n"
    ))
}

const P: &str = "VirtualService default/r: ";

fn one(spec: &str, expected: &str) {
    assert_eq!(vs(spec), [format!("{P}{expected}")], "spec: {spec}");
}

#[test]
fn virtual_service_minimal_route_is_valid() {
    assert_eq!(
        vs("{hosts: [r], http: [{route: [{destination: {host: r}}]}]}"),
        Vec::<String>::new()
    );
}

#[test]
fn virtual_service_negative_weight_is_refused() {
    one(
        "{hosts: [r], http: [{route: [{destination: {host: r, subset: a}, weight: 10}, {destination: {host: r}, weight: -1}]}]}",
        "spec.http[0].route[1].weight: must be >= 0",
    );
}

#[test]
fn virtual_service_all_zero_weights_are_refused() {
    one(
        "{hosts: [r], http: [{route: [{destination: {host: r}, weight: 0}, {destination: {host: r}}]}]}",
        "spec.http[0].route: total destination weight must be > 0",
    );
}

#[test]
fn virtual_service_single_zero_weight_is_valid() {
    assert!(vs("{hosts: [r], http: [{route: [{destination: {host: r}, weight: 0}]}]}").is_empty());
}

#[test]
fn virtual_service_wildcard_host_for_mesh_is_refused() {
    one(
        "{hosts: ['*'], http: [{route: [{destination: {host: r}}]}]}",
        "spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway",
    );
}

#[test]
fn virtual_service_wildcard_host_for_gateway_is_valid() {
    assert!(vs("{hosts: ['*'], gateways: [istio-system/gw], http: [{route: [{destination: {host: r}}]}]}").is_empty());
}

#[test]
fn virtual_service_leading_wildcard_is_valid_inner_wildcard_is_refused() {
    assert!(
        vs("{hosts: ['*.example.com'], http: [{route: [{destination: {host: r}}]}]}").is_empty()
    );
    one(
        "{hosts: ['api.*.com'], http: [{route: [{destination: {host: r}}]}]}",
        "spec.hosts[0]: domain name `api.*.com` invalid (label `*` invalid)",
    );
}

#[test]
fn virtual_service_malformed_host_is_refused() {
    one(
        "{hosts: ['bad_host'], http: [{route: [{destination: {host: r}}]}]}",
        "spec.hosts[0]: domain name `bad_host` invalid (label `bad_host` invalid)",
    );
}

#[test]
fn virtual_service_without_routes_is_refused() {
    one(
        "{hosts: [r]}",
        "spec: http, tcp or tls must be provided in virtual service",
    );
}

#[test]
fn virtual_service_delegate_with_gateways_is_refused() {
    one(
        "{gateways: [mesh], http: [{route: [{destination: {host: r}}]}]}",
        "spec.gateways: delegate virtual service must have no gateways specified",
    );
}

#[test]
fn virtual_service_bad_gateway_name_is_refused() {
    one(
        "{hosts: [r], gateways: [ns/Bad_Name], http: [{route: [{destination: {host: r}}]}]}",
        "spec.gateways[0]: invalid value for gateway name: `Bad_Name`",
    );
}

#[test]
fn virtual_service_destination_host_missing_is_refused() {
    one(
        "{hosts: [r], http: [{route: [{destination: {subset: v1}}]}]}",
        "spec.http[0].route[0].destination.host: destination host is required",
    );
}

#[test]
fn virtual_service_destination_wildcard_is_refused() {
    one(
        "{hosts: [r], http: [{route: [{destination: {host: '*'}}]}]}",
        "spec.http[0].route[0].destination.host: invalid destination host *",
    );
}

#[test]
fn virtual_service_bad_subset_name_is_refused() {
    one(
        "{hosts: [r], http: [{route: [{destination: {host: r, subset: v_1}}]}]}",
        "spec.http[0].route[0].destination.subset: subset name `v_1` is not a DNS-1123 label",
    );
}

#[test]
fn virtual_service_destination_port_out_of_range_is_refused() {
    one(
        "{hosts: [r], http: [{route: [{destination: {host: r, port: {number: 70000}}}]}]}",
        "spec.http[0].route[0].destination.port.number: port number 70000 must be in the range 1..65535",
    );
}

#[test]
fn virtual_service_tcp_route_without_destinations_is_refused() {
    one(
        "{hosts: [r], tcp: [{match: [{port: 5432}]}]}",
        "spec.tcp[0].route: TCP route is required",
    );
}

#[test]
fn virtual_service_tcp_bad_subnet_is_refused() {
    one(
        "{hosts: [r], tcp: [{match: [{destinationSubnets: [10.0.0.0/33]}], route: [{destination: {host: r}}]}]}",
        "spec.tcp[0].match[0].destinationSubnets[0]: `10.0.0.0/33` has an invalid prefix length",
    );
}

#[test]
fn virtual_service_tls_sni_outside_hosts_is_refused() {
    one(
        "{hosts: ['*.a.com'], tls: [{match: [{sniHosts: [x.b.com]}], route: [{destination: {host: r}}]}]}",
        "spec.tls[0].match[0].sniHosts[0]: SNI host `x.b.com` is not a compatible subset of any of the virtual service hosts: [*.a.com]",
    );
    assert!(vs("{hosts: ['*.a.com'], tls: [{match: [{sniHosts: [x.a.com]}], route: [{destination: {host: r}}]}]}").is_empty());
}

#[test]
fn virtual_service_tls_route_without_match_is_refused() {
    one(
        "{hosts: [r], tls: [{route: [{destination: {host: r}}]}]}",
        "spec.tls[0].match: TLS route must have at least one match condition",
    );
}

#[test]
fn virtual_service_bad_export_to_is_refused() {
    one(
        "{hosts: [r], exportTo: ['*', '.'], http: [{route: [{destination: {host: r}}]}]}",
        "spec.exportTo: `*` cannot be combined with other values",
    );
}

#[test]
fn virtual_service_bad_source_namespace_is_refused() {
    one(
        "{hosts: [r], http: [{match: [{sourceNamespace: Not_Ok}], route: [{destination: {host: r}}]}]}",
        "spec.http[0].match[0].sourceNamespace: sourceNamespace match `Not_Ok` is invalid",
    );
}
