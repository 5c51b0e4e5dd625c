//! Builds the seed corpora from real inputs: snapshots the controller's own
//! translation makes from the seed mesh and the conformance scenarios,
//! ClientHellos rustls sends, PROXY headers the outbound side writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use rustls::pki_types::ServerName;
use serde_yaml::Value;
use sluice_api::config as pb;
use sluice_control_plane::index::MeshIndex;
use sluice_control_plane::resource::parse_documents;
use sluice_control_plane::translate::{ProxyIdentity, translate};

/// A conformance scenario's mesh: its workloads and its Istio YAML.
struct Mesh {
    workloads: Vec<Workload>,
    config: String,
    requests: Vec<Sent>,
}

/// `(from, url, headers)` of a scenario's request.
type Sent = (String, String, Vec<(String, String)>);

struct Workload {
    service: String,
    namespace: String,
    account: String,
    port: Option<u16>,
    tcp: bool,
    versions: Vec<String>,
}

/// Writes every target's seeds under `dir/<target>/`.
pub fn write_all(dir: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut meshes = Vec::new();
    if let Ok(seed) = std::fs::read_to_string(repo.join("../shared/seed-mesh.yaml")) {
        meshes.push(seed_mesh(seed));
    }
    for group in ["routing", "resilience", "security"] {
        let scenarios = repo.join("conformance/scenarios").join(group);
        let mut paths: Vec<_> = std::fs::read_dir(&scenarios)
            .expect("scenarios")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("scenario");
            if let Some(mesh) = scenario(&text) {
                meshes.push(mesh);
            }
        }
    }
    let mut yaml = Vec::new();
    let mut snapshots = Vec::new();
    let mut routes = Vec::new();
    let mut authz = Vec::new();
    for (i, mesh) in meshes.iter().enumerate() {
        yaml.push(mesh.config.clone().into_bytes());
        let index = index_of(mesh);
        for w in &mesh.workloads {
            let cfg = translate(&index, &identity(w));
            let snapshot = pb::Snapshot {
                version: format!("seed-{i}"),
                config: Some(cfg.clone()),
                ..Default::default()
            };
            snapshots.push(snapshot.encode_to_vec());
            for (from, url, headers) in &mesh.requests {
                if *from == w.service {
                    routes.push(framed(&cfg.encode_to_vec(), "", url, headers));
                }
            }
            let Some(security) = cfg.inbound.as_ref().and_then(|i| i.security.clone()) else {
                continue;
            };
            if security.policies.is_empty() {
                continue;
            }
            for (_, url, headers) in mesh.requests.iter().take(3) {
                let principal = "cluster.local/ns/default/sa/sleep";
                authz.push(framed(&security.encode_to_vec(), principal, url, headers));
            }
        }
    }
    // One snapshot per mesh is plenty for decoding; keep every distinct one small.
    snapshots.truncate(40);
    routes.truncate(60);
    authz.truncate(40);
    write(dir, "yaml_analyze", &yaml);
    write(dir, "snapshot", &snapshots);
    write(dir, "route_match", &routes);
    write(dir, "authz", &authz);
    let hellos = client_hellos();
    write(dir, "tls_client_hello", &hellos);
    let headers = proxy_headers();
    write(dir, "proxy_protocol", &headers);
    let mut detect = vec![
        b"GET / HTTP/1.1\r\nHost: reviews\r\n\r\n".to_vec(),
        b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(),
        b"CONNECT reviews:9080 HTTP/1.1\r\n\r\n".to_vec(),
    ];
    detect.extend(hellos.into_iter().take(2));
    detect.extend(headers.into_iter().take(2));
    write(dir, "detect", &detect);
    write(dir, "http1_head_guard", &http1_streams());
}

/// Client byte streams (after a read-size byte): keep-alive sequences with
/// every body framing, and the smuggling shapes the guard refuses.
fn http1_streams() -> Vec<Vec<u8>> {
    let streams: [&[u8]; 5] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n",
        b"POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nx-t: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /s HTTP/1.1\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
    ];
    streams
        .iter()
        .enumerate()
        .map(|(i, s)| [&[i as u8 * 7][..], s].concat())
        .collect()
}

fn write(dir: &Path, target: &str, inputs: &[Vec<u8>]) {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    // Seeds are rebuilt whole (maps and TLS randoms differ per run); inputs the
    // fuzzer added under other names stay.
    for old in std::fs::read_dir(&dir).expect("corpus dir").flatten() {
        if old.file_name().to_string_lossy().starts_with("seed-") {
            std::fs::remove_file(old.path()).expect("remove old seed");
        }
    }
    for input in inputs {
        // FNV-1a names keep regenerated seeds stable and deduplicated.
        let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        std::fs::write(dir.join(format!("seed-{hash:016x}")), input).expect("write seed");
    }
}

/// `[u16 length][message]` then the connection facts and a request head, as
/// `sluice_proxy::fuzzing::split_request` reads them.
fn framed(message: &[u8], principal: &str, url: &str, headers: &[(String, String)]) -> Vec<u8> {
    let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(&message[..usize::from(len)]);
    out.extend_from_slice(
        format!("{principal}\n\n10.1.0.7\n10.1.0.9:9080\nGET {url}\n").as_bytes(),
    );
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\n").as_bytes());
    }
    out
}

fn seed_mesh(config: String) -> Mesh {
    let w = |service: &str, namespace: &str, port: u16| Workload {
        service: service.into(),
        namespace: namespace.into(),
        account: service.into(),
        port: Some(port),
        tcp: false,
        versions: vec!["v1".into(), "v2".into(), "v3".into()],
    };
    Mesh {
        workloads: vec![
            w("productpage", "default", 9080),
            w("reviews", "default", 9080),
            w("orders", "production", 8080),
        ],
        config,
        requests: vec![
            (
                "productpage".into(),
                "http://reviews:9080/reviews/1".into(),
                vec![("end-user".into(), "jason".into())],
            ),
            (
                "reviews".into(),
                "http://orders.production:8080/orders".into(),
                Vec::new(),
            ),
        ],
    }
}

fn scenario(text: &str) -> Option<Mesh> {
    let doc: Value = serde_yaml::from_str(text).ok()?;
    let config = doc.get("config")?.as_str()?.to_owned();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let workloads = doc
        .get("workloads")?
        .as_sequence()?
        .iter()
        .filter_map(|w| {
            let service = s(w, "service")?;
            let versions = w
                .get("versions")
                .and_then(Value::as_mapping)
                .map(|m| {
                    m.keys()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_else(|| vec!["v1".to_owned()]);
            Some(Workload {
                namespace: s(w, "namespace").unwrap_or_else(|| "default".into()),
                account: s(w, "serviceAccount").unwrap_or_else(|| service.clone()),
                port: w
                    .get("port")
                    .and_then(Value::as_u64)
                    .and_then(|p| p.try_into().ok()),
                tcp: s(w, "protocol").as_deref() == Some("tcp"),
                versions,
                service,
            })
        })
        .collect();
    let requests = doc
        .get("steps")
        .and_then(Value::as_sequence)
        .map(|steps| {
            steps
                .iter()
                .filter_map(|step| {
                    let r = step.get("request")?;
                    let headers = r
                        .get("headers")
                        .and_then(Value::as_mapping)
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| {
                                    Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Some((s(r, "from")?, s(r, "url")?, headers))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Mesh {
        workloads,
        config,
        requests,
    })
}

/// ServiceEntries and WorkloadEntries for the scenario's workloads (the local
/// mesh makes them the same way), then the scenario's own YAML.
fn index_of(mesh: &Mesh) -> MeshIndex {
    let mut text = String::new();
    let mut ip = 10u8;
    for w in &mesh.workloads {
        let Some(port) = w.port else { continue };
        let protocol = if w.tcp { "TCP" } else { "HTTP" };
        text.push_str(&format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {s}, namespace: {ns}}}\n\
             spec:\n  hosts: [{s}.{ns}.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n\
             \x20 ports: [{{number: {port}, name: p, protocol: {protocol}}}]\n  workloadSelector: {{labels: {{app: {s}}}}}\n---\n",
            s = w.service,
            ns = w.namespace,
        ));
        for v in &w.versions {
            ip = ip.wrapping_add(1);
            text.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: {s}-{v}, namespace: {ns}}}\n\
                 spec: {{address: 127.0.9.{ip}, labels: {{app: {s}, version: {v}, security.istio.io/tlsMode: istio}}, serviceAccount: {a}}}\n---\n",
                s = w.service,
                ns = w.namespace,
                a = w.account,
            ));
        }
    }
    text.push_str(&mesh.config);
    let resources = parse_documents(&text, "default")
        .into_iter()
        .filter_map(Result::ok);
    MeshIndex::from_resources(1, resources)
}

fn identity(w: &Workload) -> ProxyIdentity {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_owned(), w.service.clone());
    if let Some(v) = w.versions.first() {
        labels.insert("version".to_owned(), v.clone());
    }
    ProxyIdentity {
        id: format!("{}-seed", w.service),
        workload: format!("{}-v1", w.service),
        namespace: w.namespace.clone(),
        service_account: w.account.clone(),
        labels,
        ips: vec!["127.0.9.1".parse().expect("ip")],
        trust_domain: "cluster.local".into(),
    }
}

/// First flights of real TLS 1.3 clients: with and without SNI, with the mesh ALPNs.
fn client_hellos() -> Vec<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cases: [(&str, &[&[u8]]); 4] = [
        ("reviews.default.svc.cluster.local", &[b"h2"]),
        (
            "outbound_.9080_.v1_.reviews.default.svc.cluster.local",
            &[b"sluice-tcp"],
        ),
        ("127.0.9.1", &[b"h2", b"http/1.1"]),
        ("api.example.com", &[]),
    ];
    cases
        .iter()
        .map(|(name, alpn)| {
            let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            let server = ServerName::try_from(name.to_string()).expect("server name");
            let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server).expect("client");
            let mut out = Vec::new();
            conn.write_tls(&mut out).expect("client hello");
            out
        })
        .collect()
}

/// Headers the outbound side writes, plus LOCAL and truncated ones.
fn proxy_headers() -> Vec<Vec<u8>> {
    let a = |s: &str| s.parse::<SocketAddr>().expect("addr");
    let mut out = vec![
        sluice_proxy::proxy_protocol::encode(a("10.1.0.7:40000"), a("10.1.0.9:9080")),
        sluice_proxy::proxy_protocol::encode(a("[fd00::7]:40000"), a("[fd00::9]:9080")),
        sluice_proxy::proxy_protocol::encode(a("10.1.0.7:1"), a("[fd00::9]:9080")),
    ];
    let mut local = sluice_proxy::proxy_protocol::SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out.push(local);
    let mut truncated = out[0].clone();
    truncated.truncate(20);
    out.push(truncated);
    out
}
