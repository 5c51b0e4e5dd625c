use super::*;

#[test]
fn split_documents_markers_split_and_text_is_kept() {
    let text = "a: 1\n---\nb: 2\n--- # c\nc: 3\n";
    assert_eq!(split_documents(text), ["a: 1\n", "b: 2\n", " # c\nc: 3\n"]);
    // `---` inside a value is not a marker.
    assert_eq!(split_documents("a: '---'\n  ---x\n").len(), 1);
}

#[test]
fn template_path_unknown_group_is_left_alone() {
    assert!(template_path("example.com/v1", "Deployment").is_none());
    assert!(template_path("v1", "ConfigMap").is_none());
    assert_eq!(
        template_path("batch/v1", "CronJob"),
        Some(&["spec", "jobTemplate", "spec", "template"][..])
    );
}

#[test]
fn inject_text_cron_job_template_is_injected() {
    let text = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n  schedule: '@daily'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: job, image: job:1}]\n";
    let out = inject_text(text, &InjectConfig::default()).unwrap();
    let doc: Value = serde_yaml::from_str(&out).unwrap();
    let tpl = &doc["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(tpl["spec"]["initContainers"][1]["name"], "sluice-proxy");
    assert_eq!(doc["spec"]["schedule"], "@daily");
    let env = tpl["spec"]["initContainers"][1]["env"]
        .as_sequence()
        .unwrap();
    let workload = env.iter().find(|e| e["name"] == "SLUICE_WORKLOAD").unwrap();
    assert_eq!(workload["value"], "nightly");
}

#[test]
fn inject_text_missing_template_names_document_and_field() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n";
    let err = inject_text(text, &InjectConfig::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "document 2 (Deployment web): spec.template: missing"
    );
}

#[test]
fn inject_text_wrong_field_type_names_its_path() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: [{name: web, ports: [{containerPort: eighty}]}]\n";
    let err = inject_text(text, &InjectConfig::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "document 1 (Deployment web): spec.template.spec.containers[0].ports[0].containerPort:"
        ),
        "{msg}"
    );
}

#[test]
fn inject_text_bare_pod_keeps_its_kind_and_gets_sidecar() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: solo}\nspec:\n  containers: [{name: app, image: app:1}]\n";
    let out = inject_text(text, &InjectConfig::default()).unwrap();
    let doc: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(doc["kind"], "Pod");
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["spec"]["initContainers"][0]["name"], "sluice-init");
    // Running it again is a no-op, byte for byte.
    assert_eq!(inject_text(&out, &InjectConfig::default()).unwrap(), out);
}
