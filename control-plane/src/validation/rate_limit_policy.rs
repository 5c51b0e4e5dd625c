//! RateLimitPolicy rules: a usable token bucket and well-formed matches.

use super::duration::check_duration;
use super::field::{at, check_selector, check_string_match, header_name, item};
use super::{FieldErrors, Validate};
use crate::crd::RateLimitPolicySpec;

impl Validate for RateLimitPolicySpec {
    fn validate(&self, errors: &mut FieldErrors) {
        let spec = "spec";
        check_selector(errors, &at(spec, "selector"), self.selector.as_ref());
        for (field, value) in [
            ("maxTokens", self.max_tokens),
            ("tokensPerFill", self.tokens_per_fill),
        ] {
            if value <= 0 {
                errors.push(at(spec, field), "must be > 0");
            } else if value > i64::from(u32::MAX) {
                errors.push(at(spec, field), "must be <= 4294967295");
            }
        }
        if self.fill_interval.is_empty() {
            errors.push(at(spec, "fillInterval"), "fillInterval is required");
        } else {
            errors.check(
                at(spec, "fillInterval"),
                check_duration(&self.fill_interval).map(drop),
            );
        }
        for (i, m) in self.match_.iter().enumerate() {
            let p = item(spec, "match", i);
            if m.uri.is_none() && m.method.is_none() && m.headers.is_empty() {
                errors.push(
                    p.clone(),
                    "match must set at least one of uri, method or headers",
                );
            }
            if let Some(uri) = &m.uri {
                check_string_match(errors, &at(&p, "uri"), uri);
            }
            if let Some(method) = &m.method {
                check_string_match(errors, &at(&p, "method"), method);
            }
            for (name, sm) in &m.headers {
                let hp = format!("{p}.headers.{name}");
                errors.check(hp.clone(), header_name(name));
                check_string_match(errors, &hp, sm);
            }
        }
        for (i, principal) in self.source_principals.iter().enumerate() {
            if principal.is_empty() {
                errors.push(
                    item(spec, "sourcePrincipals", i),
                    "empty value is not allowed",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
