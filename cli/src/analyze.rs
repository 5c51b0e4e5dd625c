//! `sluicectl analyze FILE...`: parses and validates Istio/Sluice YAML the way
//! the controller and the admission webhook do, one line per problem.

use sluice_control_plane::resource::{ParseError, Resource, parse_documents};
use sluice_control_plane::validation::{FieldError, Problem, validate, warnings};
use std::collections::BTreeSet;
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
    // Every file is read first: a VirtualService may name a Gateway that
    // another file defines.
    let mut files = Vec::new();
    let mut gateways = BTreeSet::new();
    for file in &args.files {
        let (name, text) = read(file);
        match text {
            Ok(text) => {
                let resources = parse_documents(&text, DEFAULT_NAMESPACE);
                for r in resources.iter().flatten() {
                    if let Resource::Gateway(_) = r {
                        gateways.insert((r.namespace().to_owned(), r.name().to_owned()));
                    }
                }
                files.push((name, resources));
            }
            Err(e) => {
                eprintln!("{name}: cannot read: {e}");
                tally.unreadable += 1;
            }
        }
    }
    for (name, resources) in files {
        for line in analyze_resources(resources, &gateways, &mut tally) {
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

/// Report lines (without the file name) for one file's documents;
/// `gateways` are the (namespace, name) of every Gateway analyzed.
fn analyze_resources(
    resources: Vec<Result<Resource, ParseError>>,
    gateways: &BTreeSet<(String, String)>,
    tally: &mut Tally,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut warned = Vec::new();
    for doc in resources {
        tally.objects += 1;
        match doc {
            Err(e) => lines.push(e.to_string()),
            Ok(resource) => {
                let key = resource.key();
                for problem in validate(&resource) {
                    lines.push(Problem(&key, &problem).to_string());
                }
                let mut all = warnings(&resource);
                if let Resource::VirtualService(vs) = &resource {
                    all.extend(missing_gateways(
                        resource.namespace(),
                        &vs.spec.gateways,
                        gateways,
                    ));
                }
                for warning in all {
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

/// Gateways a VirtualService names that none of the analyzed files define
/// (Istio's analyzer reports these as IST0101, ReferencedResourceNotFound).
fn missing_gateways(
    namespace: &str,
    names: &[String],
    gateways: &BTreeSet<(String, String)>,
) -> Vec<FieldError> {
    names
        .iter()
        .enumerate()
        .filter(|(_, g)| g.as_str() != "mesh")
        .filter_map(|(i, g)| {
            let (ns, name) = gateway_ref(namespace, g);
            (!gateways.contains(&(ns.to_owned(), name.to_owned()))).then(|| {
                FieldError::new(
                    format!("spec.gateways[{i}]"),
                    format!(
                        "gateway `{ns}/{name}` is not among the analyzed objects (Istio: IST0101 ReferencedResourceNotFound)"
                    ),
                )
            })
        })
        .collect()
}

/// The namespace and name a `gateways` entry refers to: `ns/name`, `name`
/// (the VirtualService's namespace) or the legacy `name.ns.svc...` form.
fn gateway_ref<'a>(namespace: &'a str, entry: &'a str) -> (&'a str, &'a str) {
    if let Some((ns, name)) = entry.split_once('/') {
        return (ns, name);
    }
    let mut labels = entry.split('.');
    match (labels.next(), labels.next()) {
        (Some(name), Some(ns)) => (ns, name),
        _ => (namespace, entry),
    }
}
