//! Prometheus text-format scraping and the `name{label="value"} OP number` expectations of
//! `metrics` steps.
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[cfg(test)]
mod tests;

/// One sample of the text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (histograms: with `_bucket`/`_count`/`_sum`).
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Why metrics could not be scraped or an expression not understood.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The scrape failed.
    #[error("scrape {addr}: {source}")]
    Scrape {
        /// Scraped address.
        addr: SocketAddr,
        /// The failure.
        #[source]
        source: crate::client::ClientError,
    },
    /// The scrape answered a non-200 status.
    #[error("scrape {addr}: status {status}")]
    Status {
        /// Scraped address.
        addr: SocketAddr,
        /// Status received.
        status: u16,
    },
    /// An expression is malformed.
    #[error("bad metrics expression `{expr}`: {why}")]
    BadExpr {
        /// The expression.
        expr: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Comparison operator of an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// A parsed expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// Metric name.
    pub name: String,
    /// Labels every counted series must carry.
    pub labels: BTreeMap<String, String>,
    /// Comparison.
    pub op: Op,
    /// Right-hand side.
    pub value: f64,
}

/// Parses Prometheus text exposition; unparseable lines are skipped (the sidecar may add
/// formats we do not know, and an expectation on a missing series fails on its own).
pub fn parse_text(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let (parsed, after) = parse_labels(&rest[1..])?;
        labels = parsed;
        rest = after;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses `a="x",b="y"}` (after the opening brace); returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                other => value.push(other),
            }
        };
        labels.insert(key, value);
        s = &s[end + 1..];
    }
}

/// Parses `name{label="value",...} OP number`.
pub fn parse_expectation(expr: &str) -> Result<Expectation, MetricsError> {
    let bad = |why| MetricsError::BadExpr {
        expr: expr.to_string(),
        why,
    };
    let s = expr.trim();
    let name_end = s
        .find(|c: char| c == '{' || c.is_whitespace() || "=!<>".contains(c))
        .ok_or_else(|| bad("missing operator"))?;
    let name = s[..name_end].to_string();
    if name.is_empty() {
        return Err(bad("missing metric name"));
    }
    let mut rest = s[name_end..].trim_start();
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner).ok_or_else(|| bad("malformed labels"))?;
        labels = parsed;
        rest = after.trim_start();
    }
    let ops = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (op, rhs) = ops
        .iter()
        .find_map(|(tok, op)| rest.strip_prefix(tok).map(|r| (*op, r)))
        .ok_or_else(|| bad("operator must be one of == != < <= > >="))?;
    let value = parse_value(rhs.trim()).ok_or_else(|| bad("right-hand side is not a number"))?;
    Ok(Expectation {
        name,
        labels,
        op,
        value,
    })
}

impl Expectation {
    /// Sum of every sample of this name whose labels include the expectation's labels.
    pub fn sum(&self, samples: &[Sample]) -> f64 {
        samples
            .iter()
            .filter(|s| s.name == self.name)
            .filter(|s| self.labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            // A fold from +0.0: `sum()` of no samples is -0.0, which reads oddly in messages.
            .fold(0.0, |acc, s| acc + s.value)
    }

    /// Checks the expectation; on failure says the value found.
    pub fn check(&self, samples: &[Sample]) -> Result<(), f64> {
        let got = self.sum(samples);
        if self.op.holds(got, self.value) {
            Ok(())
        } else {
            Err(got)
        }
    }
}

/// Evaluates every expression against the samples; the error names the first that failed.
pub fn evaluate(exprs: &[String], samples: &[Sample]) -> Result<(), String> {
    for expr in exprs {
        let e = parse_expectation(expr).map_err(|e| e.to_string())?;
        if let Err(got) = e.check(samples) {
            return Err(format!("`{expr}` is false: value {got}"));
        }
    }
    Ok(())
}

/// Scrapes `/stats/prometheus` at `addr`.
pub async fn scrape(addr: SocketAddr) -> Result<Vec<Sample>, MetricsError> {
    let resp = crate::client::http_get(addr, "/stats/prometheus")
        .await
        .map_err(|source| MetricsError::Scrape { addr, source })?;
    if resp.status != 200 {
        return Err(MetricsError::Status {
            addr,
            status: resp.status,
        });
    }
    Ok(parse_text(&String::from_utf8_lossy(&resp.body)))
}
