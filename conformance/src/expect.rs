//! Checks the outcomes of a request step against its `expect` block and says what differed.
use crate::client::Outcome;
use crate::scenario::{DEFAULT_TOLERANCE, Expect};
use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
mod tests;

/// Key for "no HTTP response" in status shares.
pub const NO_RESPONSE: &str = "error";
/// Key for "no echo answered" in version shares.
pub const NO_ECHO: &str = "none";

/// Checks every expectation; the error is one human sentence about the first that failed.
pub fn check(expect: &Expect, outcomes: &[Outcome]) -> Result<(), String> {
    let n = outcomes.len();
    if n == 0 {
        return Err("no requests were sent".into());
    }
    let tolerance = expect.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    if let Some(want) = &expect.status {
        let got = count(outcomes, |o| {
            o.status
                .map_or_else(|| NO_RESPONSE.to_string(), |s| s.to_string())
        });
        shares("status", want, &got, n, tolerance, outcomes)?;
    }
    if let Some(want) = &expect.version {
        let got = count(outcomes, |o| o.version().unwrap_or(NO_ECHO).to_string());
        shares("version", want, &got, n, tolerance, outcomes)?;
    }
    for (name, value) in &expect.headers {
        for (i, o) in outcomes.iter().enumerate() {
            let found = o.headers.get(name.as_str()).and_then(|v| v.to_str().ok());
            if found != Some(value.as_str()) {
                return Err(format!(
                    "response {i}: header {name} is {}, expected {value:?}{}",
                    found.map_or_else(|| "missing".to_string(), |f| format!("{f:?}")),
                    describe(o)
                ));
            }
        }
    }
    for (status, headers) in &expect.status_headers {
        let with_status: Vec<(usize, &Outcome)> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.status.is_some_and(|s| s.to_string() == *status))
            .collect();
        if with_status.is_empty() {
            return Err(format!(
                "no response with status {status}, expected some carrying {headers:?} (n={n})"
            ));
        }
        for (name, value) in headers {
            for (i, o) in &with_status {
                let found = o.headers.get(name.as_str()).and_then(|v| v.to_str().ok());
                if found != Some(value.as_str()) {
                    return Err(format!(
                        "response {i} (status {status}): header {name} is {}, expected {value:?}{}",
                        found.map_or_else(|| "missing".to_string(), |f| format!("{f:?}")),
                        describe(o)
                    ));
                }
            }
        }
    }
    if let Some(want) = expect.instances {
        let distinct: BTreeSet<String> = outcomes.iter().filter_map(Outcome::instance).collect();
        if distinct.len() != want {
            return Err(format!(
                "{} distinct instances answered ({}), expected {want} (n={n})",
                distinct.len(),
                distinct.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    if let Some(needle) = &expect.body_contains {
        for (i, o) in outcomes.iter().enumerate() {
            let body = String::from_utf8_lossy(&o.body);
            if !body.contains(needle.as_str()) {
                return Err(format!(
                    "response {i}: body does not contain {needle:?}: {}{}",
                    clip(&body),
                    describe(o)
                ));
            }
        }
    }
    for (i, o) in outcomes.iter().enumerate() {
        let ms = o.latency.as_millis();
        if let Some(min) = expect.min_latency_ms
            && ms < u128::from(min)
        {
            return Err(format!(
                "response {i}: latency {ms} ms, expected >= {min} ms"
            ));
        }
        if let Some(max) = expect.max_latency_ms
            && ms > u128::from(max)
        {
            return Err(format!(
                "response {i}: latency {ms} ms, expected <= {max} ms"
            ));
        }
    }
    Ok(())
}

fn count(outcomes: &[Outcome], key: impl Fn(&Outcome) -> String) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        *m.entry(key(o)).or_insert(0) += 1;
    }
    m
}

/// Compares the share of every listed key. Keys not listed are not checked on
/// their own: when the listed shares add up to 1 they are bounded anyway, and
/// a partial list (`{v2: 0.0}`) asks about those keys only.
fn shares(
    what: &str,
    want: &BTreeMap<String, f64>,
    got: &BTreeMap<String, usize>,
    n: usize,
    tolerance: f64,
    outcomes: &[Outcome],
) -> Result<(), String> {
    for (key, &expected) in want {
        let share = got.get(key).copied().unwrap_or(0) as f64 / n as f64;
        if (share - expected).abs() > tolerance + 1e-9 {
            let seen: Vec<String> = got.iter().map(|(k, c)| format!("{k}: {c}")).collect();
            // An example of the odd ones out makes sidecar errors obvious in the report.
            let example = outcomes
                .iter()
                .find(|o| {
                    let k = match what {
                        "status" => o.status.map_or(NO_RESPONSE.to_string(), |s| s.to_string()),
                        _ => o.version().unwrap_or(NO_ECHO).to_string(),
                    };
                    &k == key && expected == 0.0 || &k != key && expected > 0.0
                })
                .map(describe)
                .unwrap_or_default();
            return Err(format!(
                "{what} {key} share {share:.2}, expected {expected:.2} ± {tolerance:.2} (n={n}; got {}){example}",
                seen.join(", ")
            ));
        }
    }
    Ok(())
}

/// A short description of one outcome for failure messages.
pub fn describe(o: &Outcome) -> String {
    match (&o.error, o.status) {
        (Some(e), _) => format!("; e.g. no response: {e}"),
        (None, Some(s)) => format!(
            "; e.g. status {s} from {} body {}",
            o.instance()
                .unwrap_or_else(|| "the sidecar (no echo)".into()),
            clip(&String::from_utf8_lossy(&o.body))
        ),
        (None, None) => String::new(),
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() > 160 {
        format!("{:?}…", s.chars().take(160).collect::<String>())
    } else {
        format!("{s:?}")
    }
}
