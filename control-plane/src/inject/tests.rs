use super::*;
use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn pod(yaml: &str) -> Pod {
    serde_yaml::from_str(yaml).expect("test pod parses")
}

const WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels: {app: web, version: v2}
spec:
  serviceAccountName: web
  containers:
  - name: web
    image: web:1
    ports: [{name: http, containerPort: 8080}]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080, httpHeaders: [{name: X-Probe, value: live}]}
      timeoutSeconds: 2
      periodSeconds: 7
    readinessProbe:
      httpGet: {path: /ready, port: http}
    startupProbe:
      tcpSocket: {port: 8080}
  - name: cache
    image: cache:1
    livenessProbe:
      exec: {command: [true]}
"#;

fn ns(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn annotated(extra: &[(&str, &str)]) -> Pod {
    let mut p = pod(WEB);
    let a = p.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in extra {
        a.insert((*k).to_owned(), (*v).to_owned());
    }
    p
}

fn injected(p: &Pod) -> Pod {
    inject(p, &InjectConfig::default()).expect("injects")
}

fn init<'a>(p: &'a Pod, name: &str) -> &'a Container {
    p.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == name))
        .unwrap_or_else(|| panic!("no init container {name}"))
}

fn arg_after<'a>(c: &'a Container, flag: &str) -> &'a str {
    let args = c.args.as_ref().expect("args");
    let i = args.iter().position(|a| a == flag).expect(flag);
    &args[i + 1]
}

fn env<'a>(c: &'a Container, name: &str) -> &'a k8s_openapi::api::core::v1::EnvVar {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn field_path(c: &Container, name: &str) -> String {
    env(c, name)
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .map(|f| f.field_path.clone())
        .unwrap_or_default()
}

#[test]
fn wants_sidecar_labelled_namespace_injects() {
    let p = pod(WEB);
    assert!(wants_sidecar(&ns(&[("sluice-injection", "enabled")]), &p));
    assert!(wants_sidecar(&ns(&[("istio-injection", "enabled")]), &p));
    assert!(!wants_sidecar(&ns(&[]), &p));
    assert!(!wants_sidecar(&ns(&[("sluice-injection", "disabled")]), &p));
    // Sluice's label decides over Istio's.
    assert!(!wants_sidecar(
        &ns(&[
            ("sluice-injection", "disabled"),
            ("istio-injection", "enabled")
        ]),
        &p
    ));
}

#[test]
fn wants_sidecar_pod_annotation_true_in_unlabelled_namespace_skips() {
    let p = annotated(&[(INJECT_ANNOTATION, "true")]);
    assert!(!wants_sidecar(&ns(&[]), &p));
    let p = annotated(&[(ISTIO_INJECT_ANNOTATION, "true")]);
    assert!(!wants_sidecar(&ns(&[]), &p));
}

#[test]
fn wants_sidecar_opt_out_annotation_skips() {
    let labelled = ns(&[("sluice-injection", "enabled")]);
    assert!(!wants_sidecar(
        &labelled,
        &annotated(&[(INJECT_ANNOTATION, "false")])
    ));
    assert!(!wants_sidecar(
        &labelled,
        &annotated(&[(ISTIO_INJECT_ANNOTATION, "false")])
    ));
    assert!(wants_sidecar(
        &labelled,
        &annotated(&[(INJECT_ANNOTATION, "true")])
    ));
    // Istio's label form opts out too.
    let mut p = pod(WEB);
    p.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(ISTIO_INJECT_ANNOTATION.to_owned(), "false".to_owned());
    assert!(!wants_sidecar(&labelled, &p));
}

#[test]
fn wants_sidecar_host_network_skips() {
    let mut p = pod(WEB);
    p.spec.as_mut().unwrap().host_network = Some(true);
    assert!(!wants_sidecar(&ns(&[("sluice-injection", "enabled")]), &p));
    assert!(opted_out(&p));
}

#[test]
fn inject_proxy_is_native_sidecar_after_init() {
    let p = injected(&pod(WEB));
    let spec = p.spec.as_ref().unwrap();
    let names: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["sluice-init", "sluice-proxy"]);
    let names: Vec<_> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["web", "cache"],
        "app containers untouched in number"
    );

    let proxy = init(&p, "sluice-proxy");
    let cfg = InjectConfig::default();
    assert_eq!(proxy.restart_policy.as_deref(), Some("Always"));
    assert_eq!(proxy.image.as_deref(), Some(cfg.proxy_image.as_str()));
    assert_eq!(
        arg_after(proxy, "--controller"),
        "https://sluice-controller.sluice-system.svc:15012"
    );
    assert_eq!(arg_after(proxy, "--ca-address"), cfg.ca_address);
    assert_eq!(
        arg_after(proxy, "--ca-root"),
        "/var/run/sluice/root-cert.pem"
    );
    assert_eq!(
        arg_after(proxy, "--token-file"),
        "/var/run/secrets/tokens/sluice-token"
    );
    assert_eq!(arg_after(proxy, "--trust-domain"), "cluster.local");

    for probe in [&proxy.startup_probe, &proxy.readiness_probe] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap();
        assert_eq!(get.path.as_deref(), Some("/healthz/ready"));
        assert_eq!(get.port, IntOrString::Int(15021));
    }

    let sc = proxy.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(1337));
    assert_eq!(sc.run_as_group, Some(1337));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(caps.add, None);

    let requests = proxy.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "50m");
    assert_eq!(requests["memory"].0, "32Mi");
}

#[test]
fn inject_proxy_env_comes_from_downward_api() {
    let p = injected(&pod(WEB));
    let proxy = init(&p, "sluice-proxy");
    assert_eq!(field_path(proxy, "POD_NAME"), "metadata.name");
    assert_eq!(field_path(proxy, "POD_NAMESPACE"), "metadata.namespace");
    assert_eq!(
        env(proxy, "SLUICE_ID").value.as_deref(),
        Some("$(POD_NAME).$(POD_NAMESPACE)")
    );
    // Dependent env vars must come after what they reference.
    let pos = |n: &str| proxy.env.iter().flatten().position(|e| e.name == n);
    assert!(pos("POD_NAME") < pos("SLUICE_ID") && pos("POD_NAMESPACE") < pos("SLUICE_ID"));
    assert_eq!(field_path(proxy, "SLUICE_NAMESPACE"), "metadata.namespace");
    assert_eq!(
        field_path(proxy, "SLUICE_SERVICE_ACCOUNT"),
        "spec.serviceAccountName"
    );
    assert_eq!(field_path(proxy, "SLUICE_IP"), "status.podIP");
    assert_eq!(
        env(proxy, "SLUICE_BIND_IP").value.as_deref(),
        Some("0.0.0.0")
    );
    assert_eq!(
        env(proxy, "SLUICE_APP_IP").value.as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        env(proxy, "SLUICE_WORKLOAD").value.as_deref(),
        Some("web-0")
    );
    assert_eq!(
        env(proxy, "SLUICE_LABELS").value.as_deref(),
        Some(
            "app=web,security.istio.io/tlsMode=istio,service.istio.io/canonical-name=web,\
             service.istio.io/canonical-revision=v2,version=v2"
        )
    );
}

#[test]
fn inject_token_and_root_volumes_are_mounted() {
    let p = injected(&pod(WEB));
    let volumes = p.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    let token = volumes.iter().find(|v| v.name == "sluice-token").unwrap();
    let sat = token.projected.as_ref().unwrap().sources.as_ref().unwrap()[0]
        .service_account_token
        .as_ref()
        .unwrap();
    assert_eq!(sat.audience.as_deref(), Some("sluice"));
    assert_eq!(sat.path, "sluice-token");
    assert_eq!(sat.expiration_seconds, Some(3600));
    let root = volumes
        .iter()
        .find(|v| v.name == "sluice-ca-root-cert")
        .unwrap();
    let cm = root.config_map.as_ref().unwrap();
    assert_eq!(cm.name, "sluice-ca-root-cert");
    assert_eq!(cm.items.as_ref().unwrap()[0].key, "root-cert.pem");

    let mounts: Vec<_> = init(&p, "sluice-proxy")
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert_eq!(
        mounts,
        [
            ("sluice-token", "/var/run/secrets/tokens"),
            ("sluice-ca-root-cert", "/var/run/sluice")
        ]
    );
}

#[test]
fn inject_labels_and_status_follow_istio() {
    let p = injected(&pod(WEB));
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[TLS_MODE_LABEL], "istio");
    assert_eq!(labels[CANONICAL_NAME_LABEL], "web");
    assert_eq!(labels[CANONICAL_REVISION_LABEL], "v2");
    let status: serde_json::Value =
        serde_json::from_str(&p.metadata.annotations.as_ref().unwrap()[STATUS_ANNOTATION]).unwrap();
    assert_eq!(
        status,
        serde_json::json!({
            "initContainers": ["sluice-init", "sluice-proxy"],
            "containers": [],
            "volumes": ["sluice-token", "sluice-ca-root-cert"],
            "image": InjectConfig::default().proxy_image,
        })
    );
}

#[test]
fn inject_default_annotations_capture_everything() {
    let p = injected(&pod(WEB));
    let args = init(&p, "sluice-init").args.clone().unwrap();
    assert_eq!(
        args,
        [
            "init",
            "--proxy-uid",
            "1337",
            "--outbound-port",
            "15001",
            "--inbound-port",
            "15006",
            "--include-outbound-cidrs",
            "*",
            "--exclude-outbound-cidrs",
            "",
            "--include-inbound-ports",
            "*",
            "--exclude-inbound-ports",
            "15021,15090",
            "--exclude-outbound-ports",
            "",
        ]
    );
    let sc = init(&p, "sluice-init").security_context.clone().unwrap();
    assert_eq!(sc.run_as_user, Some(0));
    assert_eq!(sc.run_as_non_root, Some(false));
    let add = sc.capabilities.unwrap().add.unwrap();
    assert_eq!(add, ["NET_ADMIN", "NET_RAW"]);
}

#[test]
fn inject_traffic_annotations_become_init_args() {
    let p = injected(&annotated(&[
        (
            "traffic.sidecar.istio.io/includeOutboundIPRanges",
            "10.0.0.0/8, 172.16.0.1,fd00::/8",
        ),
        (
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            "10.96.0.1/32",
        ),
        (
            "traffic.sidecar.istio.io/includeInboundPorts",
            "9090,8080,8080",
        ),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "9091"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432,3306"),
        // Sluice's spelling wins over Istio's.
        ("traffic.sidecar.sluice.io/excludeOutboundPorts", "6379"),
        (
            "traffic.sidecar.istio.io/excludeInterfaces",
            "net1, eth2+,net1",
        ),
    ]));
    let c = init(&p, "sluice-init");
    assert_eq!(
        arg_after(c, "--include-outbound-cidrs"),
        "10.0.0.0/8,172.16.0.1/32,fd00::/8"
    );
    assert_eq!(arg_after(c, "--exclude-outbound-cidrs"), "10.96.0.1/32");
    assert_eq!(arg_after(c, "--include-inbound-ports"), "8080,9090");
    assert_eq!(arg_after(c, "--exclude-inbound-ports"), "9091,15021,15090");
    assert_eq!(arg_after(c, "--exclude-outbound-ports"), "6379");
    assert_eq!(arg_after(c, "--exclude-interfaces"), "net1,eth2+");
    // Without the annotation the flag is left out (an older init image
    // chosen by `proxyImage` would not know it).
    let plain = injected(&annotated(&[]));
    let args = init(&plain, "sluice-init").args.clone().unwrap_or_default();
    assert!(
        !args.iter().any(|a| a == "--exclude-interfaces"),
        "{args:?}"
    );
}

#[test]
fn inject_empty_include_annotation_disables_capture() {
    let p = injected(&annotated(&[
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", ""),
        ("traffic.sidecar.istio.io/includeInboundPorts", ""),
    ]));
    let c = init(&p, "sluice-init");
    assert_eq!(arg_after(c, "--include-outbound-cidrs"), "");
    assert_eq!(arg_after(c, "--include-inbound-ports"), "");
}

#[test]
fn inject_bad_annotation_is_refused_with_its_name() {
    for (key, value) in [
        (
            "traffic.sidecar.istio.io/includeOutboundIPRanges",
            "10.0.0.0/33",
        ),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "*"),
        (
            "traffic.sidecar.sluice.io/excludeOutboundIPRanges",
            "example.com",
        ),
        ("traffic.sidecar.istio.io/includeInboundPorts", "80,http"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "0"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "70000"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "+80"),
        ("traffic.sidecar.istio.io/excludeInterfaces", "eth0;rm"),
        (
            "traffic.sidecar.istio.io/excludeInterfaces",
            "averyverylongname0",
        ),
    ] {
        let err = inject(&annotated(&[(key, value)]), &InjectConfig::default())
            .expect_err(&format!("{key}: {value:?} must be refused"));
        match &err {
            InjectError::Annotation { annotation, .. } => assert_eq!(annotation, key),
            other => panic!("unexpected error {other}"),
        }
        assert!(err.to_string().contains(key), "{err}");
    }
}

/// The sidecar's `SLUICE_CONCURRENCY`, if injection set it.
fn concurrency(p: &Pod) -> Option<String> {
    init(p, "sluice-proxy")
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "SLUICE_CONCURRENCY")
        .and_then(|e| e.value.clone())
}

#[test]
fn inject_concurrency_comes_from_the_pod_annotation_over_the_mesh_default() {
    // Unset everywhere: the proxy sizes itself.
    assert_eq!(concurrency(&injected(&pod(WEB))), None);
    let mesh = InjectConfig {
        concurrency: Some(2),
        ..InjectConfig::default()
    };
    assert_eq!(
        concurrency(&inject(&pod(WEB), &mesh).unwrap()).as_deref(),
        Some("2")
    );
    for (key, value, want) in [
        (ISTIO_PROXY_CONFIG_ANNOTATION, "concurrency: 1", Some("1")),
        (
            ISTIO_PROXY_CONFIG_ANNOTATION,
            r#"{"concurrency": 0}"#,
            Some("0"),
        ),
        (
            PROXY_CONFIG_ANNOTATION,
            "{concurrency: 4, holdApplicationUntilProxyStarts: true}",
            Some("4"),
        ),
        // Other ProxyConfig fields alone leave the mesh default.
        (
            ISTIO_PROXY_CONFIG_ANNOTATION,
            "holdApplicationUntilProxyStarts: true",
            Some("2"),
        ),
        (ISTIO_PROXY_CONFIG_ANNOTATION, "", Some("2")),
    ] {
        let p = inject(&annotated(&[(key, value)]), &mesh).unwrap();
        assert_eq!(concurrency(&p).as_deref(), want, "{key}: {value}");
    }
    // Sluice's spelling wins over Istio's, but only when it sets concurrency.
    let both = annotated(&[
        (PROXY_CONFIG_ANNOTATION, "concurrency: 3"),
        (ISTIO_PROXY_CONFIG_ANNOTATION, "concurrency: 1"),
    ]);
    assert_eq!(concurrency(&injected(&both)).as_deref(), Some("3"));
    let other_field = annotated(&[
        (PROXY_CONFIG_ANNOTATION, "{}"),
        (ISTIO_PROXY_CONFIG_ANNOTATION, r#"{"concurrency": "4"}"#),
    ]);
    assert_eq!(concurrency(&injected(&other_field)).as_deref(), Some("4"));
}

#[test]
fn inject_concurrency_unset_follows_the_sidecar_cpu_limit_rounded_up() {
    let concurrency = |cfg: &InjectConfig, p: &Pod| concurrency(&inject(p, cfg).unwrap());
    let limited = |cpu: &str| InjectConfig {
        limits: ns(&[("cpu", cpu), ("memory", "64Mi")]),
        ..InjectConfig::default()
    };
    for (cpu, want) in [
        ("2500m", "3"),
        ("500m", "1"),
        ("2", "2"),
        ("1.5", "2"),
        ("4", "4"),
    ] {
        assert_eq!(
            concurrency(&limited(cpu), &pod(WEB)).as_deref(),
            Some(want),
            "limit {cpu}"
        );
    }
    // The mesh default and the pod's annotation both come before the limit.
    let mesh = InjectConfig {
        concurrency: Some(1),
        ..limited("4")
    };
    assert_eq!(concurrency(&mesh, &pod(WEB)).as_deref(), Some("1"));
    let pod_says = annotated(&[(ISTIO_PROXY_CONFIG_ANNOTATION, "concurrency: 2")]);
    assert_eq!(concurrency(&limited("4"), &pod_says).as_deref(), Some("2"));
}

#[test]
fn quantity_reads_kubernetes_quantities() {
    for (q, want) in [
        ("100m", 0.1),
        ("2", 2.0),
        ("1.5", 1.5),
        ("64Mi", 64.0 * 1024.0 * 1024.0),
        ("1Gi", 1024.0 * 1024.0 * 1024.0),
        ("2G", 2e9),
        ("1e3", 1000.0),
        ("250u", 250e-6),
    ] {
        let got = quantity(q).unwrap_or_else(|| panic!("{q} is a quantity"));
        assert!((got - want).abs() <= want * 1e-12, "{q}: {got} != {want}");
    }
    for bad in ["", "lots", "1.2.3", "-1", "1Xi", "m", ".", "1e"] {
        assert_eq!(quantity(bad), None, "{bad:?}");
    }
}

#[test]
fn inject_bad_proxy_config_is_refused_with_the_annotation_and_field() {
    for value in [
        "concurrency: -1",
        "concurrency: \"-1\"",
        "concurrency: two",
        "concurrency: 2.5",
        "concurrency: 4294967296",
        "[concurrency]",
        "concurrency: [",
    ] {
        let err = inject(
            &annotated(&[(ISTIO_PROXY_CONFIG_ANNOTATION, value)]),
            &InjectConfig::default(),
        )
        .expect_err(&format!("{value:?} must be refused"));
        match &err {
            InjectError::Annotation { annotation, .. } => {
                assert_eq!(annotation, ISTIO_PROXY_CONFIG_ANNOTATION);
            }
            other => panic!("unexpected error {other}"),
        }
        if value.starts_with("concurrency: ") && value != "concurrency: [" {
            assert!(err.to_string().contains("concurrency"), "{err}");
        }
    }
}

#[test]
fn parse_resources_reads_requests_and_limits_and_names_bad_fields() {
    let (requests, limits) =
        parse_resources(r#"{"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": 1}}"#)
            .unwrap();
    assert_eq!(requests, ns(&[("cpu", "50m"), ("memory", "32Mi")]));
    assert_eq!(limits, ns(&[("cpu", "1")]));
    let (requests, limits) = parse_resources(r#"{"limits": {}}"#).unwrap();
    assert!(requests.is_empty() && limits.is_empty());
    for (json, names) in [
        (r#"{"request": {}}"#, "request"),
        (r#"{"limits": {"cpu": true}}"#, "limits.cpu"),
        (r#"{"limits": {"cpu": ""}}"#, "limits.cpu"),
        (r#"{"requests": []}"#, "requests"),
        (r#"{"limits": {"cpu": "lots"}}"#, "limits.cpu"),
        (
            r#"{"requests": {"cpu": "50m"}, "limits": {"cpu": "20m"}}"#,
            "more than limits.cpu",
        ),
        ("[]", "object"),
        ("{", "JSON"),
    ] {
        let err = parse_resources(json).expect_err(json);
        assert!(err.contains(names), "{json}: {err}");
    }
}

#[test]
fn inject_http_probes_point_at_proxy_and_originals_are_recorded() {
    let p = injected(&pod(WEB));
    let web = &p.spec.as_ref().unwrap().containers[0];
    let live = web.liveness_probe.as_ref().unwrap();
    let get = live.http_get.as_ref().unwrap();
    assert_eq!(get.path.as_deref(), Some("/app-health/web/livez"));
    assert_eq!(get.port, IntOrString::Int(15021));
    assert_eq!(get.http_headers, None);
    assert_eq!(live.period_seconds, Some(7), "timing kept");
    let ready = web.readiness_probe.as_ref().unwrap().http_get.as_ref();
    assert_eq!(
        ready.and_then(|g| g.path.as_deref()),
        Some("/app-health/web/readyz")
    );
    // TCP and exec probes are left alone.
    assert!(web.startup_probe.as_ref().unwrap().tcp_socket.is_some());
    let cache = &p.spec.as_ref().unwrap().containers[1];
    assert_eq!(
        cache.liveness_probe,
        pod(WEB).spec.unwrap().containers[1].liveness_probe
    );

    let recorded = env(init(&p, "sluice-proxy"), "SLUICE_APP_PROBES")
        .value
        .clone()
        .unwrap();
    let recorded: serde_json::Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(
        recorded,
        serde_json::json!({
            "/app-health/web/livez": {
                "httpGet": {
                    "path": "/healthz", "port": 8080,
                    "httpHeaders": [{"name": "X-Probe", "value": "live"}]
                },
                "timeoutSeconds": 2
            },
            // The named port is resolved for the proxy.
            "/app-health/web/readyz": {"httpGet": {"path": "/ready", "port": 8080}}
        })
    );
}

#[test]
fn inject_rewrite_annotation_false_keeps_probes() {
    let p = injected(&annotated(&[(ISTIO_REWRITE_PROBES_ANNOTATION, "false")]));
    assert_eq!(
        p.spec.as_ref().unwrap().containers,
        pod(WEB).spec.unwrap().containers
    );
    let proxy = init(&p, "sluice-proxy");
    assert!(
        !proxy
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "SLUICE_APP_PROBES")
    );
}

#[test]
fn inject_twice_equals_once() {
    let once = injected(&pod(WEB));
    let twice = injected(&once);
    assert_eq!(once, twice);
    assert!(is_injected(&once));
    assert!(!is_injected(&pod(WEB)));
}

#[test]
fn inject_serialized_twice_is_byte_identical() {
    let a = serde_json::to_vec(&injected(&pod(WEB))).unwrap();
    let b = serde_json::to_vec(&injected(&pod(WEB))).unwrap();
    assert_eq!(a, b);
    let a = serde_yaml::to_string(&injected(&pod(WEB))).unwrap();
    let b = serde_yaml::to_string(&injected(&pod(WEB))).unwrap();
    assert_eq!(a, b);
}

#[test]
fn inject_existing_init_containers_run_after_proxy() {
    let mut p = pod(WEB);
    p.spec.as_mut().unwrap().init_containers = Some(vec![Container {
        name: "migrate".to_owned(),
        ..Container::default()
    }]);
    let p = injected(&p);
    let names: Vec<_> = p
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["sluice-init", "sluice-proxy", "migrate"]);
}

#[test]
fn workload_name_replica_set_owner_strips_template_hash() {
    let p = pod(r#"
metadata:
  name: web-7d4b9c-x2x9q
  labels: {pod-template-hash: 7d4b9c}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4b9c, uid: u, controller: true}
spec: {containers: []}
"#);
    assert_eq!(workload_name(&p), "web");
    let p = pod(r#"
metadata:
  generateName: nightly-29012345-
  ownerReferences:
  - {apiVersion: batch/v1, kind: Job, name: nightly-29012345, uid: u, controller: true}
spec: {containers: []}
"#);
    assert_eq!(workload_name(&p), "nightly");
    let p = pod("metadata: {generateName: solo-}\nspec: {containers: []}\n");
    assert_eq!(workload_name(&p), "solo");
}

#[test]
fn inject_without_ca_address_and_plaintext_controller_omits_certificate_flags() {
    let cfg = InjectConfig {
        ca_address: String::new(),
        controller: "sluice-controller.sluice-system.svc:15010".to_owned(),
        ..InjectConfig::default()
    };
    let p = inject(&pod(WEB), &cfg).unwrap();
    let proxy = init(&p, "sluice-proxy");
    assert_eq!(
        arg_after(proxy, "--controller"),
        "http://sluice-controller.sluice-system.svc:15010"
    );
    let args = proxy.args.clone().unwrap();
    assert!(
        !args
            .iter()
            .any(|a| a.starts_with("--ca-") || a == "--token-file")
    );
}

#[test]
fn inject_https_controller_without_ca_address_keeps_root_and_token() {
    let cfg = InjectConfig {
        ca_address: String::new(),
        ..InjectConfig::default()
    };
    let p = inject(&pod(WEB), &cfg).unwrap();
    let proxy = init(&p, "sluice-proxy");
    assert!(arg_after(proxy, "--controller").starts_with("https://"));
    assert_eq!(
        arg_after(proxy, "--token-file"),
        "/var/run/secrets/tokens/sluice-token"
    );
    assert!(!proxy.args.iter().flatten().any(|a| a == "--ca-address"));
}

#[test]
fn inject_webhook_pod_and_cli_template_get_identical_sidecar() {
    // What `sluicectl inject` sees: the Deployment's template.
    let template = pod("metadata: {labels: {app: web}}\nspec: {containers: [{name: web}]}\n");
    let from_cli = inject_workload(&template, "web", &InjectConfig::default()).unwrap();
    // What the webhook sees: the same template stamped by the ReplicaSet.
    let stamped = pod(r#"
metadata:
  generateName: web-5d8f7c-
  namespace: shop
  labels: {app: web, pod-template-hash: 5d8f7c}
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f7c, uid: u, controller: true}
spec: {containers: [{name: web}]}
"#);
    let from_webhook = inject(&stamped, &InjectConfig::default()).unwrap();
    let bytes = |p: &Pod| serde_json::to_vec(&p.spec).unwrap();
    assert_eq!(bytes(&from_cli), bytes(&from_webhook));
    assert_eq!(
        from_cli.metadata.annotations,
        from_webhook.metadata.annotations
    );
}

#[test]
fn inject_prometheus_annotations_point_at_proxy_unless_app_has_own() {
    let p = injected(&pod(WEB));
    let a = p.metadata.annotations.as_ref().unwrap();
    assert_eq!(a["prometheus.io/port"], "15090");
    assert_eq!(a["prometheus.io/path"], "/stats/prometheus");
    let p = injected(&annotated(&[
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "9100"),
    ]));
    assert_eq!(
        p.metadata.annotations.as_ref().unwrap()["prometheus.io/port"],
        "9100"
    );
}

#[test]
fn inject_resource_annotations_replace_the_mesh_resources_as_istio_does() {
    let resources = |p: &Pod, name: &str| {
        let r = init(p, name).resources.clone().unwrap_or_default();
        let text = |m: Option<
            BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
        >| {
            m.unwrap_or_default()
                .into_iter()
                .map(|(k, v)| format!("{k}={}", v.0))
                .collect::<Vec<_>>()
                .join(",")
        };
        (text(r.requests), text(r.limits))
    };
    let mesh = InjectConfig {
        requests: ns(&[("cpu", "50m"), ("memory", "32Mi")]),
        limits: ns(&[("cpu", "1"), ("memory", "128Mi")]),
        ..InjectConfig::default()
    };
    // No annotation: the mesh's resources, and concurrency from its CPU limit.
    let plain = inject(&pod(WEB), &mesh).unwrap();
    assert_eq!(
        resources(&plain, "sluice-proxy"),
        ("cpu=50m,memory=32Mi".into(), "cpu=1,memory=128Mi".into())
    );
    assert_eq!(concurrency(&plain).as_deref(), Some("1"));
    // Any annotation replaces them all: only what the pod sets remains, in
    // both the sidecar and the init container.
    let p = inject(
        &annotated(&[
            ("sidecar.istio.io/proxyCPU", "200m"),
            ("sidecar.istio.io/proxyCPULimit", "2500m"),
        ]),
        &mesh,
    )
    .unwrap();
    for name in ["sluice-proxy", "sluice-init"] {
        assert_eq!(
            resources(&p, name),
            ("cpu=200m".into(), "cpu=2500m".into()),
            "{name}"
        );
    }
    // The effective CPU limit sets the worker threads.
    assert_eq!(concurrency(&p).as_deref(), Some("3"));
    let p = inject(
        &annotated(&[("sidecar.istio.io/proxyMemory", "64Mi")]),
        &mesh,
    )
    .unwrap();
    assert_eq!(
        resources(&p, "sluice-proxy"),
        ("memory=64Mi".into(), String::new())
    );
    assert_eq!(concurrency(&p), None, "no CPU limit left to follow");
}

#[test]
fn inject_bad_resource_annotation_is_refused_naming_it() {
    for (pairs, named, says) in [
        (
            vec![("sidecar.istio.io/proxyCPU", "lots")],
            "sidecar.istio.io/proxyCPU",
            "requests.cpu",
        ),
        (
            vec![("sidecar.istio.io/proxyMemoryLimit", "")],
            "sidecar.istio.io/proxyMemoryLimit",
            "limits.memory",
        ),
        (
            vec![
                ("sidecar.istio.io/proxyMemory", "1Gi"),
                ("sidecar.istio.io/proxyMemoryLimit", "512Mi"),
            ],
            "sidecar.istio.io/proxyMemory",
            "more than the memory limit 512Mi",
        ),
    ] {
        let err = inject(&annotated(&pairs), &InjectConfig::default())
            .expect_err(&format!("{pairs:?} must be refused"));
        match &err {
            InjectError::Annotation { annotation, reason } => {
                assert_eq!(annotation, named, "{pairs:?}");
                assert!(reason.contains(says), "{pairs:?}: {reason}");
            }
            other => panic!("unexpected error {other}"),
        }
    }
}

#[test]
fn inject_proxy_image_annotation_sets_both_containers_images() {
    let cfg = InjectConfig::default();
    for (annotation, image) in [
        (
            "sidecar.istio.io/proxyImage",
            "registry.local/mesh/sluice-proxy:debug",
        ),
        (
            "sidecar.sluice.io/proxyImage",
            "sluice-proxy@sha256:0123abcd",
        ),
    ] {
        let p = inject(&annotated(&[(annotation, image)]), &cfg).unwrap();
        for name in ["sluice-proxy", "sluice-init"] {
            assert_eq!(
                init(&p, name).image.as_deref(),
                Some(image),
                "{annotation} {name}"
            );
        }
        let status = &p.metadata.annotations.as_ref().unwrap()["sidecar.sluice.io/status"];
        assert!(status.contains(image), "{status}");
    }
    // Sluice's spelling wins when both are set.
    let both = annotated(&[
        ("sidecar.istio.io/proxyImage", "istio-spelling:1"),
        ("sidecar.sluice.io/proxyImage", "sluice-spelling:1"),
    ]);
    let p = inject(&both, &cfg).unwrap();
    assert_eq!(
        init(&p, "sluice-proxy").image.as_deref(),
        Some("sluice-spelling:1")
    );
    // Without one, the mesh's image.
    let p = inject(&annotated(&[]), &cfg).unwrap();
    assert_eq!(
        init(&p, "sluice-proxy").image.as_deref(),
        Some(cfg.proxy_image.as_str())
    );
}

#[test]
fn inject_bad_proxy_image_annotation_is_refused_naming_it() {
    for value in ["", "  ", "two words:1"] {
        let err = inject(
            &annotated(&[("sidecar.istio.io/proxyImage", value)]),
            &InjectConfig::default(),
        )
        .expect_err(&format!("{value:?} must be refused"));
        match &err {
            InjectError::Annotation { annotation, reason } => {
                assert_eq!(annotation, "sidecar.istio.io/proxyImage");
                assert!(reason.contains("image reference"), "{reason}");
            }
            other => panic!("unexpected error {other}"),
        }
    }
}
