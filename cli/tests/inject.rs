//! `sluicectl inject` as users run it: the real binary, YAML on stdin or in a file.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn sluicectl_inject(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sluicectl starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("sluicectl runs")
}

const CONFIG_MAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings   # kept verbatim, comment included
data:
  mode: \"fast\"
";

const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web, version: v1}
      annotations:
        traffic.sidecar.istio.io/excludeOutboundPorts: \"5432\"
    spec:
      containers:
      - name: web
        image: web:1
        readinessProbe:
          httpGet: {path: /ready, port: 8080}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings   # kept verbatim, comment included
data:
  mode: \"fast\"
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: migrate:1
";

fn docs(text: &str) -> Vec<serde_yaml::Value> {
    text.split("---\n")
        .map(|d| serde_yaml::from_str(d).expect("output is YAML"))
        .collect()
}

fn init_names(template: &serde_yaml::Value) -> Vec<String> {
    template["spec"]["initContainers"]
        .as_sequence()
        .expect("initContainers")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn inject_deployment_and_job_templates_get_sidecar_config_map_untouched() {
    let out = sluicectl_inject(
        &["-f", "-", "--proxy-image", "registry.test/sluice-proxy:dev"],
        MANIFESTS,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs = docs(&stdout);
    assert_eq!(docs.len(), 3);

    let web = &docs[0]["spec"]["template"];
    assert_eq!(init_names(web), ["sluice-init", "sluice-proxy"]);
    let proxy = &web["spec"]["initContainers"][1];
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["image"], "registry.test/sluice-proxy:dev");
    let init_args = web["spec"]["initContainers"][0]["args"]
        .as_sequence()
        .unwrap();
    let i = init_args
        .iter()
        .position(|a| a == "--exclude-outbound-ports")
        .unwrap();
    assert_eq!(init_args[i + 1], "5432");
    assert_eq!(
        web["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/app-health/web/readyz"
    );
    assert_eq!(
        web["metadata"]["labels"]["security.istio.io/tlsMode"],
        "istio"
    );
    // The rest of the Deployment is as written.
    assert_eq!(docs[0]["metadata"]["namespace"], "shop");
    assert_eq!(docs[0]["spec"]["selector"]["matchLabels"]["app"], "web");

    let job = &docs[2]["spec"]["template"];
    assert_eq!(init_names(job), ["sluice-init", "sluice-proxy"]);
    assert_eq!(job["spec"]["restartPolicy"], "Never");

    // The ConfigMap comes back byte for byte.
    assert!(
        stdout.contains(&format!("---\n{CONFIG_MAP}---\n")),
        "{stdout}"
    );

    // Same input, same bytes; and injected output is a fixed point.
    let again = sluicectl_inject(
        &["-f", "-", "--proxy-image", "registry.test/sluice-proxy:dev"],
        MANIFESTS,
    );
    assert_eq!(String::from_utf8(again.stdout).unwrap(), stdout);
    let twice = sluicectl_inject(
        &["-f", "-", "--proxy-image", "registry.test/sluice-proxy:dev"],
        &stdout,
    );
    assert_eq!(String::from_utf8(twice.stdout).unwrap(), stdout);
}

#[test]
fn inject_opted_out_template_is_left_alone() {
    let text = MANIFESTS.replace(
        "traffic.sidecar.istio.io/excludeOutboundPorts: \"5432\"",
        "sidecar.sluice.io/inject: \"false\"",
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let out = sluicectl_inject(&["-f", file.path().to_str().unwrap()], "");
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (deployment, rest) = stdout.split_once("---\n").unwrap();
    assert_eq!(deployment, text.split_once("---\n").unwrap().0);
    assert!(rest.contains("sluice-proxy"), "the Job is still injected");
}

#[test]
fn inject_bad_annotation_fails_naming_document_and_annotation() {
    let text = MANIFESTS.replace("\"5432\"", "\"5432,postgres\"");
    let out = sluicectl_inject(&["-f", "-"], &text);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing half-injected is printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("document 1 (Deployment web)")
            && stderr.contains("traffic.sidecar.istio.io/excludeOutboundPorts")
            && stderr.contains("postgres"),
        "{stderr}"
    );
}
