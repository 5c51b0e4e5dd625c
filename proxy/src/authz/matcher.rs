//! Value matchers of AuthorizationPolicy fields, built once at compile time:
//! Istio strings (exact, `prefix*`, `*suffix`, `*`), IP blocks and path templates.

#[cfg(test)]
mod tests;

pub(crate) use crate::ip_block::IpBlock;

/// One Istio string value: exact, prefix (`abc*`), suffix (`*abc`) or presence (`*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StrMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// `*`: any non-empty value.
    Present,
}

impl StrMatch {
    /// Reads a value the way the istio/api `Rule` doc describes.
    pub(crate) fn parse(value: &str) -> Self {
        if value == "*" {
            StrMatch::Present
        } else if let Some(rest) = value.strip_prefix('*') {
            StrMatch::Suffix(rest.into())
        } else if let Some(rest) = value.strip_suffix('*') {
            StrMatch::Prefix(rest.into())
        } else {
            StrMatch::Exact(value.into())
        }
    }

    /// Like `parse`, lowered so that `matches_ignore_case` need not lower the input.
    pub(crate) fn parse_lowercase(value: &str) -> Self {
        StrMatch::parse(&value.to_ascii_lowercase())
    }

    /// Case-sensitive match.
    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        match self {
            StrMatch::Exact(p) => value == p.as_bytes(),
            StrMatch::Prefix(p) => value.starts_with(p.as_bytes()),
            StrMatch::Suffix(p) => value.ends_with(p.as_bytes()),
            StrMatch::Present => !value.is_empty(),
        }
    }

    /// ASCII case-insensitive match; the pattern was built by `parse_lowercase`.
    pub(crate) fn matches_ignore_case(&self, value: &[u8]) -> bool {
        match self {
            StrMatch::Exact(p) => value.eq_ignore_ascii_case(p.as_bytes()),
            StrMatch::Prefix(p) => value
                .get(..p.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes())),
            StrMatch::Suffix(p) => value
                .len()
                .checked_sub(p.len())
                .and_then(|start| value.get(start..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case(p.as_bytes())),
            StrMatch::Present => !value.is_empty(),
        }
    }
}

/// One piece of a path template. An operator owns the text after it up to
/// the next `/`, so matching never backtracks (the path is network input).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Token {
    Text(Box<str>),
    /// `{*}<suffix>`: one path segment, longer than `suffix` and ending with it.
    Segment(Box<str>),
    /// `{**}<suffix>`: the rest of the path (any number of segments, zero
    /// included), ending with `suffix`; only allowed last.
    Rest(Box<str>),
}

/// A `paths` value: an Istio string, or a template using `{*}` / `{**}`
/// (istio/api `Operation.paths`, interpreted as an Envoy URI template).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathMatch {
    Plain(StrMatch),
    Template(Box<[Token]>),
}

impl PathMatch {
    /// Parses a path value; refuses `{**}` anywhere but in the last segment
    /// and two operators in one segment.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        if !value.contains("{*}") && !value.contains("{**}") {
            return Ok(PathMatch::Plain(StrMatch::parse(value)));
        }
        let mut tokens = Vec::new();
        let mut rest = value;
        while !rest.is_empty() {
            let (rest_op, op_len) = if rest.starts_with("{**}") {
                (true, 4)
            } else if rest.starts_with("{*}") {
                (false, 3)
            } else {
                let end = next_operator(rest).unwrap_or(rest.len());
                tokens.push(Token::Text(rest[..end].into()));
                rest = &rest[end..];
                continue;
            };
            let after = &rest[op_len..];
            let seg_end = after.find('/').unwrap_or(after.len());
            let suffix = &after[..seg_end];
            if next_operator(suffix).is_some() {
                return Err(format!("{value:?}: one operator per path segment"));
            }
            if rest_op {
                if seg_end != after.len() {
                    return Err(format!("{value:?}: {{**}} must be the last operator"));
                }
                tokens.push(Token::Rest(suffix.into()));
            } else {
                tokens.push(Token::Segment(suffix.into()));
            }
            rest = &after[seg_end..];
        }
        Ok(PathMatch::Template(tokens.into()))
    }

    /// Whether the path (without query) matches.
    pub(crate) fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathMatch::Plain(m) => m.matches(path),
            PathMatch::Template(tokens) => template_matches(tokens, path),
        }
    }
}

fn next_operator(s: &str) -> Option<usize> {
    match (s.find("{*}"), s.find("{**}")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// One linear pass: each token consumes a known stretch of the path.
fn template_matches(tokens: &[Token], mut path: &[u8]) -> bool {
    for token in tokens {
        match token {
            Token::Text(t) => match path.strip_prefix(t.as_bytes()) {
                Some(rest) => path = rest,
                None => return false,
            },
            Token::Segment(suffix) => {
                let end = path.iter().position(|b| *b == b'/').unwrap_or(path.len());
                let seg = &path[..end];
                if seg.len() <= suffix.len() || !seg.ends_with(suffix.as_bytes()) {
                    return false;
                }
                path = &path[end..];
            }
            Token::Rest(suffix) => return path.ends_with(suffix.as_bytes()),
        }
    }
    path.is_empty()
}
