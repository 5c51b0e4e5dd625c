//! Checks what dashboards query against what real processes export: every
//! metric a panel or variable reads must be in a scrape, with every label the
//! query names.
use super::promql::{self, MetricUse};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[path = "check/tests.rs"]
#[cfg(test)]
mod tests;

/// Labels Prometheus itself adds to every scraped series (the target's
/// address and job, and the pod's namespace and name from Kubernetes service
/// discovery), so no process exports them.
pub const TARGET_LABELS: [&str; 4] = ["instance", "job", "namespace", "pod"];

/// One query of a dashboard and where it is.
#[derive(Debug, Clone)]
pub struct Query {
    /// Dashboard title.
    pub dashboard: String,
    /// Panel title and target refId, or `variable <name>`.
    pub place: String,
    /// The PromQL (or Grafana variable query).
    pub expr: String,
    /// Whether it is a variable query (`label_values(...)`).
    pub variable: bool,
}

impl Query {
    /// The metrics it reads.
    pub fn uses(&self) -> Result<Vec<MetricUse>, String> {
        if self.variable {
            promql::variable_uses(&self.expr)
        } else {
            promql::metric_uses(&self.expr)
        }
    }
}

/// Every panel target and query variable of a dashboard.
pub fn queries(dashboard: &Value) -> Vec<Query> {
    let title = dashboard["title"]
        .as_str()
        .unwrap_or("(untitled)")
        .to_owned();
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(p) = panels.pop() {
        // Collapsed rows keep their panels inside.
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                out.push(Query {
                    dashboard: title.clone(),
                    place: format!(
                        "panel {:?} target {}",
                        p["title"].as_str().unwrap_or(""),
                        t["refId"].as_str().unwrap_or("?")
                    ),
                    expr: expr.to_owned(),
                    variable: false,
                });
            }
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let q = &v["query"];
        let expr = q.as_str().or_else(|| q["query"].as_str()).unwrap_or("");
        out.push(Query {
            dashboard: title.clone(),
            place: format!("variable {}", v["name"].as_str().unwrap_or("?")),
            expr: expr.to_owned(),
            variable: true,
        });
    }
    out
}

/// What scrapes showed: sample names with the union of their label names,
/// and the metric families their `# TYPE` lines declare.
#[derive(Debug, Default)]
pub struct Exported {
    /// Sample name → label names seen on it.
    pub samples: BTreeMap<String, BTreeSet<String>>,
    /// Family name → type.
    pub families: BTreeMap<String, String>,
}

impl Exported {
    /// Adds one scrape's text exposition.
    pub fn add(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    self.families.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let end = line
                .find(|c: char| c == '{' || c.is_whitespace())
                .unwrap_or(line.len());
            let labels = self.samples.entry(line[..end].to_owned()).or_default();
            if line[end..].starts_with('{') {
                labels.extend(label_names(&line[end + 1..]));
            }
        }
    }

    /// Whether `name` is a sample name the scrapes showed, or one a declared
    /// family has (a histogram `foo` has `foo_bucket`, `foo_sum`, `foo_count`;
    /// a counter `foo` has `foo_total`), so a family without samples counts.
    pub fn has(&self, name: &str) -> bool {
        self.samples.contains_key(name) || self.family_of(name).is_some()
    }

    fn family_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let candidates: &[(&str, &[&str])] = &[
            ("_bucket", &["histogram"]),
            ("_sum", &["histogram", "summary"]),
            ("_count", &["histogram", "summary"]),
            ("_total", &["counter"]),
            ("_info", &["info"]),
            (
                "",
                &[
                    "gauge", "counter", "unknown", "untyped", "summary", "stateset",
                ],
            ),
        ];
        candidates.iter().find_map(|(suffix, kinds)| {
            let family = name.strip_suffix(suffix)?;
            let kind = self.families.get(family)?;
            kinds.contains(&kind.as_str()).then_some(family)
        })
    }
}

/// Label names of `a="x",b="y\"z"} 1` (after the opening brace).
fn label_names(mut s: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if s.starts_with('}') || s.is_empty() {
            return out;
        }
        let Some(eq) = s.find('=') else {
            return out;
        };
        out.push(s[..eq].trim().to_owned());
        let mut chars = s[eq + 1..].char_indices();
        // Skip the opening quote, then the value up to its closing quote.
        chars.next();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return out;
        };
        s = &s[end..];
    }
}

/// Every problem with `queries` against `exported`, one line each naming the
/// dashboard, the panel or variable and the metric or label.
pub fn problems(queries: &[Query], exported: &Exported) -> Vec<String> {
    let mut out = Vec::new();
    for q in queries {
        let at = format!("{} / {}", q.dashboard, q.place);
        let uses = match q.uses() {
            Ok(u) => u,
            Err(e) => {
                out.push(format!("{at}: cannot read query: {e}\n    {}", q.expr));
                continue;
            }
        };
        if uses.is_empty() {
            out.push(format!("{at}: reads no metric\n    {}", q.expr));
        }
        for u in uses {
            if !exported.has(&u.name) {
                out.push(format!("{at}: metric {} is not exported", u.name));
                continue;
            }
            let seen = exported.samples.get(&u.name);
            for label in &u.labels {
                if TARGET_LABELS.contains(&label.as_str()) {
                    continue;
                }
                match seen {
                    None => out.push(format!(
                        "{at}: metric {} has no samples, so label {label} cannot be checked",
                        u.name
                    )),
                    Some(labels) if !labels.contains(label) => out.push(format!(
                        "{at}: metric {} has no label {label} (it has: {})",
                        u.name,
                        labels.iter().cloned().collect::<Vec<_>>().join(", ")
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    out
}
