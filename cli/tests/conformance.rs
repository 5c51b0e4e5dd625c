//! `sluicectl conformance run` end to end: real controller, sidecars and echo processes.
//! Needs the workspace binaries next to sluicectl (`cargo build --workspace --bins`).
use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sluicectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluicectl"))
        .arg("conformance")
        .arg("run")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run sluicectl")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn conformance_run_routing_suite_all_pass() {
    // The whole suite runs in scripts/test; here the routing half guards the CLI.
    let out = sluicectl(&["conformance/scenarios/routing"]);
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    let (passed, failed) = last
        .split_once(" passed, ")
        .unwrap_or_else(|| panic!("no summary line: {last:?}"));
    assert!(passed.parse::<usize>().unwrap() >= 15, "{last}");
    assert_eq!(failed, "0 failed");
    assert!(stdout.lines().filter(|l| l.starts_with("PASS ")).count() >= 15);
}

#[test]
fn conformance_run_every_step_kind_passes() {
    let out = sluicectl(&["conformance/testdata/steps", "--parallel", "1"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["PASS runner-step-kinds", "1 passed, 0 failed"]
    );
}

#[test]
fn conformance_run_failing_scenario_reports_step_and_shares() {
    let out = sluicectl(&["conformance/testdata/failing"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL deliberately-failing-wrong-version: "))
        .unwrap_or_else(|| panic!("no FAIL line:\n{stdout}\n{}", text(&out.stderr)));
    assert!(
        line.contains("step 2: version v2 share 0.00, expected 1.00 ± 0.00 (n=10; got v1: 10)"),
        "{line}"
    );
    assert_eq!(stdout.lines().last(), Some("0 passed, 1 failed"));
    // The logs of a failed scenario are kept and named on stderr.
    assert!(
        text(&out.stderr).contains("logs: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn conformance_run_typo_field_is_an_error_naming_file_and_field() {
    let out = sluicectl(&["conformance/testdata/typo"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("typo-field.yaml"), "{stderr}");
    assert!(stderr.contains("steps[0].expect"), "{stderr}");
    assert!(stderr.contains("unknown field `verison`"), "{stderr}");
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn conformance_run_duplicate_names_is_an_error() {
    let dir = tempfile_dir();
    let doc = "name: twice\nsource: https://x\nworkloads: [{service: a}]\n";
    std::fs::write(dir.join("a.yaml"), doc).unwrap();
    std::fs::write(dir.join("b.yaml"), doc).unwrap();
    let out = sluicectl(&[dir.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("duplicate scenario name \"twice\""),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sluicectl-conformance-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
