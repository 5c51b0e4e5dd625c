//! Results of `sluicectl check`: one outcome per check, grouped in categories,
//! printed as linkerd prints them (`√`, `‼`, `×` with a `see:` hint) or as JSON.

use serde::Serialize;
use std::fmt::Write;

/// How one check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The check passed.
    Success,
    /// Something needs attention, or could not be verified; does not fail the run.
    Warning,
    /// The check failed; the run exits 1.
    Error,
}

impl Outcome {
    /// The mark printed before the description.
    pub fn mark(self) -> &'static str {
        match self {
            Outcome::Success => "√",
            Outcome::Warning => "‼",
            Outcome::Error => "×",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// What was checked, phrased as the expectation (`controller pods are Ready`).
    pub description: String,
    /// How it ended.
    pub result: Outcome,
    /// What was found, when not a plain success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What to do about it, when not a plain success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Checks of one area (`kubernetes-api`, `sluice-crds`, ...).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Category {
    /// Name printed as the heading.
    pub category_name: &'static str,
    /// Results in the order they ran.
    pub checks: Vec<CheckResult>,
}

impl Category {
    /// An empty category.
    pub fn new(name: &'static str) -> Self {
        Self {
            category_name: name,
            checks: Vec::new(),
        }
    }

    /// Records a passed check.
    pub fn pass(&mut self, description: impl Into<String>) {
        self.push(description, Outcome::Success, None, None);
    }

    /// Records a warning: `why` it is not a success and `hint` what to do.
    pub fn warn(&mut self, description: impl Into<String>, why: impl Into<String>, hint: &str) {
        self.push(
            description,
            Outcome::Warning,
            Some(why.into()),
            Some(hint.to_owned()),
        );
    }

    /// Records a failed check: `why` it failed and `hint` how to fix it.
    pub fn fail(&mut self, description: impl Into<String>, why: impl Into<String>, hint: &str) {
        self.push(
            description,
            Outcome::Error,
            Some(why.into()),
            Some(hint.to_owned()),
        );
    }

    /// Whether any check of this category failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.result == Outcome::Error)
    }

    fn push(
        &mut self,
        description: impl Into<String>,
        result: Outcome,
        error: Option<String>,
        hint: Option<String>,
    ) {
        self.checks.push(CheckResult {
            description: description.into(),
            result,
            error,
            hint,
        });
    }
}

/// Everything one run found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// True when no check failed (warnings allowed).
    pub success: bool,
    /// Categories in the order they ran.
    pub categories: Vec<Category>,
}

impl Report {
    /// A report of `categories`.
    pub fn new(categories: Vec<Category>) -> Self {
        let success = !categories.iter().any(Category::failed);
        Self {
            success,
            categories,
        }
    }

    /// How many checks ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.categories
            .iter()
            .flat_map(|c| &c.checks)
            .filter(|c| c.result == outcome)
            .count()
    }

    /// The text output: a heading per category, a line per check, the
    /// error and `see:` hint indented under it, then the summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for category in &self.categories {
            let _ = writeln!(out, "{}", category.category_name);
            let _ = writeln!(out, "{}", "-".repeat(category.category_name.len()));
            for check in &category.checks {
                let _ = writeln!(out, "{} {}", check.result.mark(), check.description);
                if let Some(error) = &check.error {
                    for line in error.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
                if let Some(hint) = &check.hint {
                    let _ = writeln!(out, "    see: {hint}");
                }
            }
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    /// The last line: the overall mark and the counts.
    pub fn summary(&self) -> String {
        let (passed, warned, failed) = (
            self.count(Outcome::Success),
            self.count(Outcome::Warning),
            self.count(Outcome::Error),
        );
        let mark = if failed > 0 {
            Outcome::Error.mark()
        } else {
            Outcome::Success.mark()
        };
        format!(
            "Status check results are {mark} ({passed} passed, {warned} warning{}, {failed} failed)",
            if warned == 1 { "" } else { "s" }
        )
    }
}
