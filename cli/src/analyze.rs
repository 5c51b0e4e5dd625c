//! `sluicectl analyze FILE...`: parses and validates Istio/Sluice YAML the way
//! the controller and the admission webhook do, one line per problem.

use sluice_control_plane::resource::parse_documents;
use sluice_control_plane::validation::{Problem, validate, warnings};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Namespace of documents that name none, as `kubectl apply` does.
const DEFAULT_NAMESPACE: &str = "default";

#[derive(clap::Args)]
pub struct Args {
    /// YAML files to check (`-` reads standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// What one file contributed to the report.
#[derive(Default)]
struct Tally {
    objects: usize,
    problems: usize,
    warnings: usize,
    unreadable: usize,
}

pub fn run(args: Args) -> ExitCode {
    let mut tally = Tally::default();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in &args.files {
        let (name, text) = read(file);
        let text = match text {
            Ok(text) => text,
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                tally.unreadable += 1;
                continue;
            }
        };
        for line in analyze_text(&text, &mut tally) {
            // A closed pipe (e.g. `| head`) is not worth a panic.
            if writeln!(out, "{name}: {line}").is_err() {
                return ExitCode::from(1);
            }
        }
    }
    let _ = out.flush();
    let files = args.files.len();
    eprintln!(
        "analyzed {} object{} in {files} file{}: {} problem{}{}{}",
        tally.objects,
        plural(tally.objects),
        plural(files),
        tally.problems,
        plural(tally.problems),
        if tally.warnings > 0 {
            format!(", {} warning{}", tally.warnings, plural(tally.warnings))
        } else {
            String::new()
        },
        if tally.unreadable > 0 {
            format!(
                ", {} unreadable file{}",
                tally.unreadable,
                plural(tally.unreadable)
            )
        } else {
            String::new()
        }
    );
    if tally.unreadable > 0 {
        ExitCode::from(2)
    } else if tally.problems > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn read(file: &Path) -> (String, std::io::Result<String>) {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        let result = std::io::stdin().read_to_string(&mut text).map(|_| text);
        return ("<stdin>".into(), result);
    }
    (file.display().to_string(), std::fs::read_to_string(file))
}

/// Report lines (without the file name) for one file's contents.
fn analyze_text(text: &str, tally: &mut Tally) -> Vec<String> {
    let mut lines = Vec::new();
    let mut warned = Vec::new();
    for doc in parse_documents(text, DEFAULT_NAMESPACE) {
        tally.objects += 1;
        match doc {
            Err(e) => lines.push(e.to_string()),
            Ok(resource) => {
                let key = resource.key();
                for problem in validate(&resource) {
                    lines.push(Problem(&key, &problem).to_string());
                }
                for warning in warnings(&resource) {
                    warned.push(format!("warning: {}", Problem(&key, &warning)));
                }
            }
        }
    }
    tally.problems += lines.len();
    tally.warnings += warned.len();
    lines.extend(warned);
    lines
}
