//! Just enough PromQL to find which metrics a dashboard query reads and which
//! labels it filters or groups them by: a tokenizer (with Grafana's `$var`
//! placeholders) and a walk over the tokens, not a full parser.
use std::collections::BTreeSet;

#[path = "promql/tests.rs"]
#[cfg(test)]
mod tests;

/// One token of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// A metric name, label name, function or keyword.
    Ident(String),
    /// A quoted string, unescaped.
    Str(String),
    /// A number or duration (`0.99`, `5m`, `1e3`).
    Number(String),
    /// A Grafana variable (`$namespace`, `${service}`, `$__rate_interval`).
    Var(String),
    /// Brackets, commas, operators.
    Punct(&'static str),
}

/// Operators and brackets, longest first so `=~` wins over `=`.
const PUNCT: [&str; 24] = [
    "=~", "!~", "!=", "==", "<=", ">=", "(", ")", "{", "}", "[", "]", ",", "=", "<", ">", "+", "-",
    "*", "/", "%", "^", ":", "@",
];

/// Words that are never metric names when not followed by `(`.
const KEYWORDS: [&str; 14] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Aggregation operators, which take `by (...)`/`without (...)`.
const AGGREGATIONS: [&str; 13] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
];

/// Splits a query into tokens.
pub fn tokenize(query: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let take_while = |mut j: usize, f: &dyn Fn(char) -> bool| {
        while j < chars.len() && f(chars[j]) {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            i = take_while(i, &|c| c != '\n');
        } else if c.is_ascii_alphabetic() || c == '_' {
            let end = take_while(i, &|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            out.push(Token::Ident(chars[i..end].iter().collect()));
            i = end;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let end = take_while(i, &|c| c.is_ascii_alphanumeric() || c == '.');
            out.push(Token::Number(chars[i..end].iter().collect()));
            i = end;
        } else if c == '$' {
            let (name, end) = if chars.get(i + 1) == Some(&'{') {
                let close = take_while(i + 2, &|c| c != '}');
                if close >= chars.len() {
                    return Err(format!("unclosed ${{ at {i}"));
                }
                (chars[i + 2..close].iter().collect::<String>(), close + 1)
            } else {
                let end = take_while(i + 1, &|c| c.is_ascii_alphanumeric() || c == '_');
                (chars[i + 1..end].iter().collect(), end)
            };
            if name.is_empty() {
                return Err(format!("empty variable at {i}"));
            }
            out.push(Token::Var(name));
            i = end;
        } else if c == '"' || c == '\'' || c == '`' {
            let (s, end) = string(&chars, i)?;
            out.push(Token::Str(s));
            i = end;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let p = PUNCT
                .iter()
                .find(|p| rest.starts_with(**p))
                .ok_or_else(|| format!("unexpected {c:?} at {i}"))?;
            out.push(Token::Punct(p));
            i += p.len();
        }
    }
    Ok(out)
}

/// A quoted string starting at `start`; backslash escapes only in `"`/`'`.
fn string(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars[start];
    let mut s = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            c if c == quote => return Ok((s, i + 1)),
            '\\' if quote != '`' => {
                let next = chars.get(i + 1).ok_or("dangling backslash")?;
                s.push(*next);
                i += 2;
            }
            c => {
                s.push(c);
                i += 1;
            }
        }
    }
    Err(format!("unclosed string at {start}"))
}

/// A metric a query reads and the labels it names for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricUse {
    /// The name as written (`foo_bucket` for a histogram's buckets).
    pub name: String,
    /// Labels in its matchers, or in a `by`/`without`/`on`/`group_*` list
    /// that applies to it.
    pub labels: BTreeSet<String>,
}

/// The metrics a PromQL query reads, in order of appearance.
pub fn metric_uses(query: &str) -> Result<Vec<MetricUse>, String> {
    let tokens = tokenize(query)?;
    let close = matching(&tokens)?;
    // (position, use) of each metric; label lists as (span, labels).
    let mut metrics: Vec<(usize, MetricUse)> = Vec::new();
    let mut spans: Vec<((usize, usize), Vec<String>)> = Vec::new();
    let mut everywhere: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let next = tokens.get(i + 1);
        match &tokens[i] {
            Token::Ident(kw) if kw == "by" || kw == "without" => {
                // Trailing form, recorded at the aggregation; skip the list.
                let end = close.get(i + 1).copied().flatten();
                i = end.ok_or_else(|| format!("{kw} without a label list"))? + 1;
            }
            Token::Ident(kw)
                if ["on", "ignoring", "group_left", "group_right"].contains(&kw.as_str()) =>
            {
                if next == Some(&Token::Punct("(")) {
                    let list = label_list(&tokens, &close, i + 1)?;
                    // What `ignoring` lists may be absent; what the others
                    // list must be on the series they join.
                    if kw != "ignoring" {
                        everywhere.extend(list);
                    }
                    i = close[i + 1].ok_or("unclosed label list")? + 1;
                } else {
                    i += 1;
                }
            }
            Token::Ident(word) if next == Some(&Token::Punct("(")) => {
                // A function or aggregation call; its arguments are walked on.
                if AGGREGATIONS.contains(&word.as_str())
                    && let Some(after) = close[i + 1]
                    && let Some(Token::Ident(kw)) = tokens.get(after + 1)
                    && (kw == "by" || kw == "without")
                {
                    let list = label_list(&tokens, &close, after + 2)?;
                    spans.push(((i + 1, after), list));
                }
                i += 1;
            }
            Token::Ident(word) if AGGREGATIONS.contains(&word.as_str()) => {
                // `sum by (a) (...)`: the list comes before the arguments.
                let Some(Token::Ident(kw)) = next else {
                    return Err(format!("{word} without arguments"));
                };
                if kw != "by" && kw != "without" {
                    return Err(format!("{word} {kw}: expected by/without"));
                }
                let list = label_list(&tokens, &close, i + 2)?;
                let args = close[i + 2].map(|c| c + 1).ok_or("unclosed label list")?;
                if tokens.get(args) != Some(&Token::Punct("(")) {
                    return Err(format!("{word} {kw} (...): arguments missing"));
                }
                let end = close[args].ok_or("unclosed arguments")?;
                spans.push(((args, end), list));
                i = args;
            }
            Token::Ident(word) if KEYWORDS.contains(&word.as_str()) => i += 1,
            Token::Ident(name) => {
                let mut labels = BTreeSet::new();
                i += 1;
                if tokens.get(i) == Some(&Token::Punct("{")) {
                    let end = close[i].ok_or("unclosed {")?;
                    labels = matcher_labels(&tokens[i + 1..end])?;
                    i = end + 1;
                }
                metrics.push((
                    i,
                    MetricUse {
                        name: name.clone(),
                        labels,
                    },
                ));
            }
            Token::Punct("{") => {
                // A selector without a name: `{__name__="foo", ...}`.
                let end = close[i].ok_or("unclosed {")?;
                let mut labels = matcher_labels(&tokens[i + 1..end])?;
                let name = name_matcher(&tokens[i + 1..end])
                    .ok_or("a selector without a metric name needs __name__=\"...\"")?;
                labels.remove("__name__");
                metrics.push((i, MetricUse { name, labels }));
                i = end + 1;
            }
            Token::Punct("[") => i = close[i].ok_or("unclosed [")? + 1,
            _ => i += 1,
        }
    }
    Ok(metrics
        .into_iter()
        .map(|(pos, mut m)| {
            for ((start, end), list) in &spans {
                if *start < pos && pos <= *end {
                    m.labels.extend(list.iter().cloned());
                }
            }
            m.labels.extend(everywhere.iter().cloned());
            m
        })
        .collect())
}

/// The metrics and label of a Grafana variable query: `label_values(metric,
/// label)`, `label_values(label)` (no metric: an error, nothing to check it
/// against) or `query_result(query)`.
pub fn variable_uses(query: &str) -> Result<Vec<MetricUse>, String> {
    let query = query.trim();
    if let Some(inner) = call_body(query, "query_result") {
        return metric_uses(inner);
    }
    let inner = call_body(query, "label_values")
        .ok_or_else(|| format!("unsupported variable query {query:?}"))?;
    // A label name holds no comma, so the last comma separates it.
    let comma = inner
        .rfind(',')
        .ok_or_else(|| format!("{query}: label_values needs a metric"))?;
    let label = match tokenize(&inner[comma + 1..])?.as_slice() {
        [Token::Ident(l)] => l.clone(),
        other => return Err(format!("{query}: label expected, got {other:?}")),
    };
    let mut uses = metric_uses(&inner[..comma])?;
    if uses.is_empty() {
        return Err(format!("{query}: no metric"));
    }
    for u in &mut uses {
        u.labels.insert(label.clone());
    }
    Ok(uses)
}

/// The text between `name(` and the final `)`.
fn call_body<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .strip_prefix(name)?
        .trim_start()
        .strip_prefix('(')?
        .strip_suffix(')')
}

/// For every opening bracket, the index of its closing one.
fn matching(tokens: &[Token]) -> Result<Vec<Option<usize>>, String> {
    let mut close = vec![None; tokens.len()];
    let mut stack: Vec<(usize, &'static str)> = Vec::new();
    for (n, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct(open @ ("(" | "{" | "[")) => stack.push((n, open)),
            Token::Punct(shut @ (")" | "}" | "]")) => {
                let (at, open) = stack.pop().ok_or_else(|| format!("unbalanced {shut}"))?;
                let expected = match open {
                    "(" => ")",
                    "{" => "}",
                    _ => "]",
                };
                if *shut != expected {
                    return Err(format!("{open} closed by {shut}"));
                }
                close[at] = Some(n);
            }
            _ => {}
        }
    }
    match stack.last() {
        Some((_, open)) => Err(format!("unclosed {open}")),
        None => Ok(close),
    }
}

/// `( a, b )` starting at `open`: the label names.
fn label_list(
    tokens: &[Token],
    close: &[Option<usize>],
    open: usize,
) -> Result<Vec<String>, String> {
    if tokens.get(open) != Some(&Token::Punct("(")) {
        return Err("label list expected".into());
    }
    let end = close[open].ok_or("unclosed label list")?;
    tokens[open + 1..end]
        .iter()
        .filter(|t| **t != Token::Punct(","))
        .map(|t| match t {
            Token::Ident(l) => Ok(l.clone()),
            other => Err(format!("label expected in list, got {other:?}")),
        })
        .collect()
}

/// The label names of `a="x", b=~"$v"` matchers.
fn matcher_labels(tokens: &[Token]) -> Result<BTreeSet<String>, String> {
    let mut labels = BTreeSet::new();
    for m in tokens.split(|t| *t == Token::Punct(",")) {
        match m {
            [] => {}
            [
                Token::Ident(l),
                Token::Punct("=" | "!=" | "=~" | "!~"),
                Token::Str(_) | Token::Var(_),
            ] => {
                labels.insert(l.clone());
            }
            other => return Err(format!("bad label matcher {other:?}")),
        }
    }
    Ok(labels)
}

fn name_matcher(tokens: &[Token]) -> Option<String> {
    tokens.windows(3).find_map(|w| match w {
        [Token::Ident(l), Token::Punct("="), Token::Str(v)] if l == "__name__" => Some(v.clone()),
        _ => None,
    })
}
