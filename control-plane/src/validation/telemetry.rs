//! Telemetry rules: Istio's (one tracing provider per entry, sampling within
//! 0..100, one source per custom tag) plus what sidecars cannot do.

use super::field::{at, check_enum, check_selector, item};
use super::{FieldErrors, Validate};
use crate::crd::TelemetrySpec;
use crate::crd::telemetry::{CustomTag, METRIC_NAMES, TagOverride, WorkloadModeSelector};

const MODES: &[&str] = &["CLIENT_AND_SERVER", "CLIENT", "SERVER"];

impl Validate for TelemetrySpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        check_selector(errors, &at(spec, "selector"), self.selector.as_ref());
        if self.target_ref.is_some() {
            errors.push(
                at(spec, "targetRef"),
                "targetRef attaches to gateways and waypoints, which Sluice does not run; \
                 use selector for sidecars",
            );
        }
        if !self.target_refs.is_empty() {
            errors.push(
                at(spec, "targetRefs"),
                "targetRefs attach to gateways and waypoints, which Sluice does not run; \
                 use selector for sidecars",
            );
        }
        for (i, t) in self.tracing.iter().enumerate() {
            let p = item(spec, "tracing", i);
            check_mode(errors, &p, t.match_.as_ref());
            if t.providers.len() > 1 {
                errors.push(
                    at(&p, "providers"),
                    "at most one tracing provider can be set",
                );
            }
            for (j, provider) in t.providers.iter().enumerate() {
                if provider.name.is_empty() {
                    errors.push(at(&item(&p, "providers", j), "name"), "name is required");
                }
            }
            if let Some(pct) = t.random_sampling_percentage
                && !(0.0..=100.0).contains(&pct)
            {
                errors.push(
                    at(&p, "randomSamplingPercentage"),
                    format!("{pct} must be within 0 and 100"),
                );
            }
            for (name, tag) in &t.custom_tags {
                check_tag(errors, &format!("{p}.customTags.{name}"), name, tag);
            }
        }
        for (i, a) in self.access_logging.iter().enumerate() {
            let p = item(spec, "accessLogging", i);
            check_mode(errors, &p, a.match_.as_ref());
            for (j, provider) in a.providers.iter().enumerate() {
                if provider.name.is_empty() {
                    errors.push(at(&item(&p, "providers", j), "name"), "name is required");
                }
            }
            if let Some(f) = &a.filter {
                // Outside the supported subset, logging everything instead
                // would flood the log the filter was written to keep quiet.
                if let Err(e) = sluice_api::cel::parse(&f.expression) {
                    errors.push(at(&at(&p, "filter"), "expression"), e.to_string());
                }
            }
        }
        for (i, m) in self.metrics.iter().enumerate() {
            let p = item(spec, "metrics", i);
            if let Some(interval) = &m.reporting_interval {
                errors.check(
                    at(&p, "reportingInterval"),
                    super::duration::check_duration(interval).map(drop),
                );
            }
            for (j, provider) in m.providers.iter().enumerate() {
                if provider.name.is_empty() {
                    errors.push(at(&item(&p, "providers", j), "name"), "name is required");
                }
            }
            for (j, o) in m.parsed_overrides().enumerate() {
                let op = item(&p, "overrides", j);
                let o = match o {
                    Ok(o) => o,
                    Err(e) => {
                        errors.push(op, e);
                        continue;
                    }
                };
                if let Some(sel) = &o.match_ {
                    let path = at(&op, "match");
                    check_enum(
                        errors,
                        at(&path, "metric"),
                        sel.metric.as_deref(),
                        METRIC_NAMES,
                    );
                    check_enum(errors, at(&path, "mode"), sel.mode.as_deref(), MODES);
                    if sel.metric.is_some() && sel.custom_metric.is_some() {
                        errors.push(path, "only one of metric or customMetric can be set");
                    }
                }
                for (tag, t) in &o.tag_overrides {
                    let path = format!("{op}.tagOverrides.{tag}");
                    check_tag_override(errors, &path, tag, t);
                }
            }
        }
    }
}

/// A `tagOverrides` entry: Istio's rules (a value with UPSERT, none with
/// REMOVE), a name Prometheus accepts, and a value in the CEL subset the
/// sidecars evaluate.
fn check_tag_override(errors: &mut FieldErrors, path: &str, name: &str, t: &TagOverride) {
    check_enum(
        errors,
        at(path, "operation"),
        t.operation.as_deref(),
        &["UPSERT", "REMOVE"],
    );
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__");
    if !valid_name {
        errors.push(
            path,
            "a tag name must be a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting \
             with __)",
        );
    }
    let value = t.value.as_deref().filter(|v| !v.is_empty());
    match (t.operation.as_deref(), value) {
        (Some("REMOVE"), Some(_)) => errors.push(
            at(path, "value"),
            "value must not be set when operation is REMOVE",
        ),
        (Some("REMOVE"), None) => {}
        (_, None) => errors.push(
            at(path, "value"),
            "value must be set when operation is UPSERT",
        ),
        (_, Some(v)) => {
            if let Err(e) = sluice_api::cel::parse_value(v) {
                errors.push(at(path, "value"), format!("{e} in `{v}`"));
            }
        }
    }
}

fn check_mode(errors: &mut FieldErrors, path: &str, m: Option<&WorkloadModeSelector>) {
    let mode = m.and_then(|m| m.mode.as_deref());
    check_enum(errors, at(&at(path, "match"), "mode"), mode, MODES);
}

fn check_tag(errors: &mut FieldErrors, path: &str, name: &str, tag: &CustomTag) {
    if name.is_empty() {
        errors.push(path, "tag name must not be empty");
    }
    let sources = [
        tag.literal.is_some(),
        tag.environment.is_some(),
        tag.header.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => errors.push(path, "one of literal, environment or header must be set"),
        1 => {}
        _ => errors.push(
            path,
            "only one of literal, environment or header can be set",
        ),
    }
    for (field, named) in [("environment", &tag.environment), ("header", &tag.header)] {
        if let Some(n) = named
            && n.name.is_empty()
        {
            errors.push(at(&at(path, field), "name"), "name is required");
        }
    }
}

#[cfg(test)]
mod tests;
