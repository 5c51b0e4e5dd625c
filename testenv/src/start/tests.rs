use super::*;

#[test]
fn locate_in_empty_dir_names_the_build_script() {
    let dir = tempfile::tempdir().unwrap();
    let err = match Binaries::locate_in(dir.path()) {
        Ok(_) => panic!("an empty directory has no binaries"),
        Err(err) => err,
    };
    assert!(matches!(err, Error::MissingBinary { name: "etcd", .. }));
    assert!(err.to_string().contains("scripts/k8s-tools"), "{err}");
}

#[test]
fn kubeconfig_yaml_carries_server_token_and_ca_data() {
    let yaml = kubeconfig_yaml("https://127.0.0.1:6443", "CA", "tok");
    assert!(yaml.contains("server: https://127.0.0.1:6443"));
    assert!(yaml.contains("token: tok"));
    // base64("CA")
    assert!(yaml.contains("certificate-authority-data: Q0E="));
}

#[tokio::test]
async fn start_with_crashing_etcd_keeps_its_log() {
    let bin = tempfile::tempdir().unwrap();
    for name in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        let path = bin.path().join(name);
        std::fs::write(&path, "#!/bin/sh\necho \"$0 refuses to run\"\nexit 3\n").unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }
    let bins = Binaries::locate_in(bin.path()).unwrap();
    let err = match start_with(bins).await {
        Ok(_) => panic!("a crashing etcd cannot start"),
        Err(err) => err,
    };
    let Error::Start { dir, source } = &err else {
        panic!("unexpected error {err}");
    };
    assert!(
        matches!(**source, Error::Exited { name: "etcd", .. }),
        "{source}"
    );
    assert!(err.to_string().contains(&dir.display().to_string()));
    let log = std::fs::read_to_string(dir.join("etcd.log")).unwrap();
    assert!(log.contains("refuses to run"), "{log}");
    std::fs::remove_dir_all(dir).unwrap();
}
