use super::*;

#[tokio::test]
async fn sync_root_malformed_secret_name_is_refused_before_any_request() {
    // The name is checked first: no API server is needed (none listens here).
    let config = kube::Config::new("https://127.0.0.1:9".parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in ["sluice-ca", "/sluice-ca", "sluice-system/", ""] {
        let err = sync_root(client.clone(), bad, dir.path(), "cluster.local")
            .await
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!("--ca-secret {bad}: expected NAMESPACE/NAME")
        );
    }
}
