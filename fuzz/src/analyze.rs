//! YAML/CRD parsing and validation as `sluicectl analyze` runs it on a file:
//! every document parses into a resource or a `ParseError`, and every resource
//! validates into field errors and warnings; none of it may panic. Also
//! compiled into `proxy/tests/fuzz_corpus.rs` so plain `cargo test` replays it.

use sluice_control_plane::resource::{parse_documents, parse_keys};
use sluice_control_plane::validation::{Problem, validate, warnings};

/// Analyzes `data` as a YAML file (invalid UTF-8 is not a YAML file: skipped).
pub fn yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs = parse_documents(text, "default");
    let keys = parse_keys(text, "default");
    // The cheap key scan and the full parse must see the same objects.
    for (doc, key) in docs.iter().zip(&keys) {
        if let (Ok(resource), Ok(key)) = (doc, key) {
            assert_eq!(
                &resource.key(),
                key,
                "parse_keys disagrees with parse_documents"
            );
        }
    }
    for doc in docs {
        match doc {
            Err(e) => {
                let _ = e.to_string();
            }
            Ok(resource) => {
                let key = resource.key();
                for problem in validate(&resource).iter().chain(&warnings(&resource)) {
                    let _ = Problem(&key, problem).to_string();
                }
            }
        }
    }
}
