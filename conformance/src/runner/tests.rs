use super::play::target_workload;
use super::*;

fn workloads() -> Vec<crate::scenario::Workload> {
    serde_yaml::from_str(
        "[{service: reviews}, {service: reviews, namespace: other}, {service: ratings}]",
    )
    .unwrap()
}

#[test]
fn target_workload_resolves_short_and_long_names() {
    let w = workloads();
    assert_eq!(
        target_workload(&w, "reviews", "default").unwrap().namespace,
        "default"
    );
    assert_eq!(
        target_workload(&w, "reviews", "other").unwrap().namespace,
        "other"
    );
    assert_eq!(
        target_workload(&w, "reviews.other", "default")
            .unwrap()
            .namespace,
        "other"
    );
    let long = target_workload(&w, "reviews.other.svc.cluster.local", "default").unwrap();
    assert_eq!(long.namespace, "other");
    assert!(target_workload(&w, "nothing", "default").is_none());
}

#[test]
fn load_all_duplicate_names_is_error() {
    let dir = tempfile::tempdir().unwrap();
    let doc = "name: same\nsource: https://x\nworkloads: [{service: a}]\n";
    std::fs::write(dir.path().join("a.yaml"), doc).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.yml"), doc).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let err = load_all(&[dir.path().to_path_buf()], None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate scenario name \"same\""), "{err}");
}

#[test]
fn load_all_filter_without_match_is_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "name: one\nsource: https://x\nworkloads: [{service: a}]\n",
    )
    .unwrap();
    assert_eq!(
        load_all(&[dir.path().to_path_buf()], Some("on"))
            .unwrap()
            .len(),
        1
    );
    assert!(load_all(&[dir.path().to_path_buf()], Some("zzz")).is_err());
}
