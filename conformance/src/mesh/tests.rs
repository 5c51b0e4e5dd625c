use super::store::{ConfigStore, parse_docs};
use super::sync;

const VS_A: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a]}\n";

#[test]
fn store_apply_same_key_replaces_document() {
    let mut s = ConfigStore::default();
    s.apply(&format!(
        "{VS_A}---\nkind: DestinationRule\nmetadata: {{name: a, namespace: x}}\n"
    ))
    .unwrap();
    s.apply("kind: VirtualService\nmetadata: {name: a, namespace: default}\nspec: {hosts: [b]}\n")
        .unwrap();
    let text = s.render().unwrap();
    let docs = parse_docs(&text).unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].0.kind, "VirtualService");
    assert_eq!(docs[0].1["spec"]["hosts"][0].as_str(), Some("b"));
    assert_eq!(docs[1].0.namespace, "x");
}

#[test]
fn store_delete_removes_only_named_documents() {
    let mut s = ConfigStore::default();
    s.apply(&format!(
        "{VS_A}---\nkind: VirtualService\nmetadata: {{name: b}}\n"
    ))
    .unwrap();
    assert_eq!(
        s.delete("kind: VirtualService\nmetadata: {name: a}\n")
            .unwrap(),
        1
    );
    let docs = parse_docs(&s.render().unwrap()).unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].0.name, "b");
}

#[test]
fn parse_docs_without_kind_is_error() {
    assert!(parse_docs("metadata: {name: a}\n").is_err());
    assert!(parse_docs("---\n---\n").unwrap().is_empty());
}

#[test]
fn syncz_lagging_lists_unacked_and_missing_proxies() {
    let body = br#"{"revision": 7, "proxies": [
        {"id": "a.default", "versionSent": "7", "versionAcked": "7", "lastNack": null},
        {"id": "b.default", "versionSent": "7", "versionAcked": "6",
         "lastNack": {"version": "7", "error": "bad route"}}]}"#;
    let s = sync::parse(body).unwrap();
    assert_eq!(s.revision, 7);
    let ids = [
        "a.default".to_string(),
        "b.default".into(),
        "c.default".into(),
    ];
    let lag = s.lagging(&ids);
    assert_eq!(lag.len(), 2);
    assert!(
        lag[0].contains("acked 6, last NACK 7: bad route"),
        "{lag:?}"
    );
    assert!(lag[1].contains("c.default (not connected)"));
    assert!(
        !s.pending,
        "an older controller's syncz has no pending field"
    );
    let pending = sync::parse(br#"{"revision": 7, "proxies": [], "pending": true}"#).unwrap();
    assert!(pending.pending);
}

#[test]
fn bins_find_missing_binary_says_how_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let err = super::bins::find("sluice-no-such-binary", Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("sluice-no-such-binary"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("cargo build --workspace --bins"), "{err}");
}
