//! The chart's Grafana dashboards, rendered by a real Helm 3 (built by
//! `scripts/k8s-tools`): one ConfigMap per dashboard file, labelled for the
//! Grafana sidecar, each holding the dashboard JSON unchanged, and none when
//! `dashboards.enabled=false`.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn helm_bin() -> PathBuf {
    let bin = std::env::var_os("SLUICE_K8S_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".cache/k8s/bin"))
        .join("helm");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/k8s-tools",
        bin.display()
    );
    bin
}

/// `helm template` of the chart with `extra` flags, as parsed documents.
fn render(extra: &[&str]) -> Vec<Value> {
    let home = tempfile::tempdir().expect("helm home");
    let chart = workspace().join("charts/sluice");
    let out = Command::new(helm_bin())
        .args(["template", "sluice"])
        .arg(&chart)
        .args(["-n", "monitoring-test", "--kube-version", "1.36.0"])
        .args(extra)
        .env("HELM_CACHE_HOME", home.path())
        .env("HELM_CONFIG_HOME", home.path())
        .env("HELM_DATA_HOME", home.path())
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn dashboard_config_maps(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect()
}

/// Every `dashboards/*.json` of the chart, by file stem.
fn dashboard_files() -> BTreeMap<String, Value> {
    let dir = workspace().join("charts/sluice/dashboards");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards folder") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read dashboard");
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let stem = path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            out.insert(stem, json);
        }
    }
    out
}

#[test]
fn chart_dashboards_render_one_labelled_config_map_each_with_the_json() {
    let files = dashboard_files();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["controller", "mesh", "service", "workload"]);
    let docs = render(&[]);
    let maps = dashboard_config_maps(&docs);
    assert_eq!(maps.len(), files.len(), "one ConfigMap per dashboard");
    let mut uids = Vec::new();
    for (stem, file_json) in &files {
        let name = format!("sluice-dashboard-{stem}");
        let map = maps
            .iter()
            .find(|m| m["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no ConfigMap {name}"));
        assert_eq!(map["metadata"]["namespace"], "monitoring-test");
        let data = map["data"].as_object().expect("data");
        assert_eq!(data.len(), 1, "{name}: one key");
        let text = data[&format!("sluice-{stem}.json")]
            .as_str()
            .expect("string value");
        let rendered: Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
        assert_eq!(&rendered, file_json, "{name}: JSON changed by rendering");
        // What Grafana needs to load and select it: a uid, a title, panels and
        // the Prometheus data source as a variable.
        let uid = rendered["uid"].as_str().expect("uid").to_owned();
        assert!(rendered["title"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(rendered["panels"].as_array().is_some_and(|p| !p.is_empty()));
        let vars = rendered["templating"]["list"]
            .as_array()
            .expect("variables");
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
            "{name}: no prometheus datasource variable"
        );
        uids.push(uid);
    }
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), files.len(), "dashboard uids must differ");
}

#[test]
fn chart_dashboards_disabled_renders_no_config_map() {
    let docs = render(&["--set", "dashboards.enabled=false"]);
    assert!(dashboard_config_maps(&docs).is_empty());
    // The rest of the chart is still there.
    assert!(docs.iter().any(|d| d["kind"] == "Deployment"));
}
