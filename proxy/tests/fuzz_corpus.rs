//! Replays every committed fuzz corpus file and crash reproducer
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same
//! functions the fuzz targets call, so plain `cargo test` on stable catches a
//! regression without fuzzing. `corpus_regenerate` (ignored) rebuilds the seeds
//! from real snapshots, ClientHellos and the conformance scenarios.

#[path = "../../fuzz/src/analyze.rs"]
mod analyze;
#[path = "fuzz_corpus/seeds.rs"]
mod seeds;

use std::path::{Path, PathBuf};

/// A fuzz target's entry point.
type Target = fn(&[u8]);

/// Every fuzz target by name, with its entry point.
const TARGETS: &[(&str, Target)] = &[
    ("detect", sluice_proxy::fuzzing::detect),
    ("tls_client_hello", sluice_proxy::fuzzing::tls_client_hello),
    ("proxy_protocol", sluice_proxy::fuzzing::proxy_protocol),
    ("snapshot", sluice_proxy::fuzzing::snapshot),
    ("route_match", sluice_proxy::fuzzing::route_match),
    ("authz", sluice_proxy::fuzzing::authz),
    ("http1_head_guard", sluice_proxy::fuzzing::http1_head_guard),
    ("yaml_analyze", analyze::yaml),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn replay(kind: &str, name: &str, run: Target) -> usize {
    let inputs = files(&fuzz_dir().join(kind).join(name));
    for path in &inputs {
        let data = std::fs::read(path).expect("read corpus file");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{name} panicked on {}", path.display());
    }
    inputs.len()
}

#[test]
fn corpus_every_target_seeds_replay_without_panic() {
    for (name, run) in TARGETS {
        let n = replay("corpus", name, *run);
        assert!(n > 0, "fuzz/corpus/{name} has no seeds");
    }
}

#[test]
fn regressions_every_crash_reproducer_replays_without_panic() {
    for (name, run) in TARGETS {
        replay("regressions", name, *run);
    }
    // Every folder under regressions/ names a target, so no reproducer is skipped.
    for entry in std::fs::read_dir(fuzz_dir().join("regressions")).expect("regressions dir") {
        let entry = entry.expect("entry");
        if !entry.path().is_dir() {
            continue;
        }
        let dir = entry.file_name();
        let dir = dir.to_string_lossy();
        assert!(
            TARGETS.iter().any(|(n, _)| *n == dir),
            "fuzz/regressions/{dir} is not a target"
        );
    }
}

#[test]
#[ignore = "rewrites fuzz/corpus; run by hand after changing the seeds' sources"]
fn corpus_regenerate() {
    seeds::write_all(&fuzz_dir().join("corpus"));
}
