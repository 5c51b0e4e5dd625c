//! Fails when the committed generated code no longer matches `proto/`.
//! Regenerate with `SLUICE_REGENERATE=1 cargo test -p sluice-api --test generated`.

use std::path::Path;

#[test]
fn generated_code_matches_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let protos = [
        root.join("proto/sluice/config/v1/config.proto"),
        root.join("proto/sluice/ca/v1/ca.proto"),
    ];
    let fds = protox::compile(&protos, [root.join("proto")]).expect("protos compile");
    let out = tempfile::tempdir().expect("tempdir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Maps encode in key order, so equal configs encode to equal bytes:
        // the controller compares and shares entries by their encoding.
        .btree_map(".")
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("codegen");
    for file in ["sluice.config.v1.rs", "sluice.ca.v1.rs"] {
        let fresh = std::fs::read_to_string(out.path().join(file)).expect("generated");
        let committed_path = root.join("src/gen").join(file);
        if std::env::var_os("SLUICE_REGENERATE").is_some() {
            std::fs::write(&committed_path, &fresh).expect("write generated code");
            continue;
        }
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        assert!(
            committed == fresh,
            "api/src/gen/{file} is stale: run SLUICE_REGENERATE=1 cargo test -p sluice-api --test generated"
        );
    }
}
