//! The shipped examples in `testdata/`: every `valid/` document passes
//! parsing and validation, every `invalid/` file yields problems.

use sluice_control_plane::resource::parse_documents;
use sluice_control_plane::validation::{Problem, validate};
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML in {}", dir.display());
    files
}

/// Every problem of a file, as analyze prints them (without the file name).
fn problems(path: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let docs = parse_documents(&text, "default");
    let count = docs.len();
    let mut lines = Vec::new();
    for doc in docs {
        match doc {
            Err(e) => lines.push(e.to_string()),
            Ok(r) => {
                let key = r.key();
                lines.extend(validate(&r).iter().map(|p| Problem(&key, p).to_string()));
            }
        }
    }
    (count, lines)
}

#[test]
fn testdata_valid_documents_have_no_problems() {
    let mut kinds = std::collections::BTreeSet::new();
    for file in files("valid") {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in parse_documents(&text, "default") {
            kinds.insert(doc.as_ref().map(|r| r.kind()).unwrap_or("?"));
        }
        let (_, lines) = problems(&file);
        assert!(lines.is_empty(), "{}: {lines:#?}", file.display());
    }
    assert_eq!(
        kinds.len(),
        sluice_control_plane::resource::KINDS.len(),
        "every kind has a valid example: {kinds:?}"
    );
}

#[test]
fn testdata_invalid_files_each_have_problems() {
    for file in files("invalid") {
        let (count, lines) = problems(&file);
        assert!(
            count > 0 && !lines.is_empty(),
            "{}: no problem found",
            file.display()
        );
    }
}
