//! Loads scenario files, runs each against its own local mesh (several at once) and collects
//! `PASS`/`FAIL` results.
use crate::mesh::kube::Kube;
use crate::scenario::{self, LoadError, Scenario};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod play;

#[cfg(test)]
mod tests;

pub use play::play;

/// How to run a suite.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Scenarios running at once (at least 1).
    pub parallel: usize,
    /// Where the binaries are (else `$SLUICE_BIN_DIR` or next to the current executable).
    pub bin_dir: Option<PathBuf>,
    /// Only scenarios whose name contains this.
    pub filter: Option<String>,
    /// Keep logs of passing scenarios too.
    pub keep_logs: bool,
    /// Run against these Kubernetes API servers instead of config folders: one lane per
    /// kubeconfig, scenarios one at a time in each lane (they share namespaces).
    pub kubeconfigs: Vec<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            parallel: 2,
            bin_dir: None,
            filter: None,
            keep_logs: false,
            kubeconfigs: Vec::new(),
        }
    }
}

/// Why a suite could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A scenario file is invalid.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Two scenarios share a name.
    #[error("duplicate scenario name {name:?} in {first} and {second}")]
    Duplicate {
        /// The name.
        name: String,
        /// First file.
        first: String,
        /// Second file.
        second: String,
    },
    /// A path could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Nothing to run.
    #[error("no scenarios found in the given paths (filter: {0:?})")]
    Empty(Option<String>),
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// `Err(why)` when it failed.
    pub outcome: Result<(), String>,
    /// Logs and config of the mesh, kept when it failed.
    pub log_dir: Option<PathBuf>,
    /// How long it took.
    pub duration: Duration,
}

impl ScenarioResult {
    /// The report line: `PASS name` or `FAIL name: why`.
    pub fn line(&self) -> String {
        match &self.outcome {
            Ok(()) => format!("PASS {}", self.name),
            Err(why) => format!("FAIL {}: {why}", self.name),
        }
    }
}

/// Results of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// In file order.
    pub results: Vec<ScenarioResult>,
}

impl Summary {
    /// How many passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.outcome.is_ok()).count()
    }
    /// How many failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
    /// The closing line: `N passed, N failed`.
    pub fn line(&self) -> String {
        format!("{} passed, {} failed", self.passed(), self.failed())
    }
}

/// Every `*.yaml`/`*.yml` under the paths (files as given, folders recursively), sorted.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, RunError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| RunError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RunError> {
    let io = |source| RunError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Loads every scenario under `paths`, rejecting invalid files and duplicate names.
pub fn load_all(paths: &[PathBuf], filter: Option<&str>) -> Result<Vec<Scenario>, RunError> {
    let mut seen: Vec<(String, PathBuf)> = Vec::new();
    let mut out = Vec::new();
    for file in collect_files(paths)? {
        let s = scenario::load(&file)?;
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == s.name) {
            return Err(RunError::Duplicate {
                name: s.name,
                first: first.display().to_string(),
                second: file.display().to_string(),
            });
        }
        seen.push((s.name.clone(), file));
        if filter.is_none_or(|f| s.name.contains(f)) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(RunError::Empty(filter.map(str::to_string)));
    }
    Ok(out)
}

/// Loads and runs every scenario under `paths`; `on_result` sees each result as it
/// finishes.
pub async fn run_paths(
    paths: &[PathBuf],
    opts: &RunOptions,
    on_result: &mut dyn FnMut(&ScenarioResult),
) -> Result<Summary, RunError> {
    let scenarios = load_all(paths, opts.filter.as_deref())?;
    Ok(run_scenarios(&scenarios, opts, on_result).await)
}

/// Runs scenarios, `opts.parallel` at a time (or one per Kubernetes lane); results come back
/// in the given order.
pub async fn run_scenarios(
    scenarios: &[Scenario],
    opts: &RunOptions,
    on_result: &mut dyn FnMut(&ScenarioResult),
) -> Summary {
    let mut summary = Summary::default();
    if opts.kubeconfigs.is_empty() {
        let mut stream = futures::stream::iter(scenarios.iter().map(|s| run_one(s, opts, None)))
            .buffered(opts.parallel.max(1));
        while let Some(result) = stream.next().await {
            on_result(&result);
            summary.results.push(result);
        }
        return summary;
    }
    // Each lane takes the next scenario when its previous one ends.
    let queue = std::sync::Mutex::new(scenarios.iter());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let lanes: Vec<_> = opts
        .kubeconfigs
        .iter()
        .map(|kc| {
            let (queue, tx) = (&queue, tx.clone());
            let kube = Kube::new(kc.clone());
            async move {
                loop {
                    let next = queue.lock().ok().and_then(|mut q| q.next());
                    let Some(s) = next else { break };
                    let _ = tx.send(run_one(s, opts, Some(kube.clone())).await);
                }
            }
        })
        .collect();
    drop(tx);
    let all = futures::future::join_all(lanes);
    tokio::pin!(all);
    let mut done = false;
    loop {
        tokio::select! {
            _ = &mut all, if !done => done = true,
            r = rx.recv() => match r {
                Some(result) => {
                    on_result(&result);
                    summary.results.push(result);
                }
                None => break,
            },
        }
    }
    let order: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    summary
        .results
        .sort_by_key(|r| order.iter().position(|n| *n == r.name));
    summary
}

/// Runs one scenario in a fresh work dir (removed when it passes, unless `keep_logs`).
pub async fn run_one(scenario: &Scenario, opts: &RunOptions, kube: Option<Kube>) -> ScenarioResult {
    let start = Instant::now();
    let work_dir = work_dir_for(&scenario.name);
    let outcome = match std::fs::create_dir_all(&work_dir) {
        Ok(()) => play(scenario, &work_dir, opts.bin_dir.clone(), kube).await,
        Err(e) => Err(format!("create {}: {e}", work_dir.display())),
    };
    let keep = outcome.is_err() || opts.keep_logs;
    if !keep {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    ScenarioResult {
        name: scenario.name.clone(),
        outcome,
        log_dir: keep.then_some(work_dir),
        duration: start.elapsed(),
    }
}

fn work_dir_for(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::env::temp_dir()
        .join("sluice-conformance")
        .join(format!(
            "{safe}-{}-{:06x}",
            std::process::id(),
            fastrand::u32(..0xff_ffff)
        ))
}
