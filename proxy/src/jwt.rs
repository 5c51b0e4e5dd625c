//! Request authentication (Istio's RequestAuthentication): JSON Web Tokens
//! found in a request are verified against the rules of the workload. A
//! request without a token passes with no request identity (authorization
//! policies decide what it may do); a token that fails any check is refused
//! with 401, with the reason Envoy's `jwt_authn` filter gives.

mod keys;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use sluice_api::config as pb;

use keys::Key;

/// Allowed clock difference for `exp` and `nbf` (Envoy's default, 60 s).
const CLOCK_SKEW_SECS: u64 = 60;

/// Longest token looked at; a bigger one is refused as malformed.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

const DEFAULT_PARAM: &str = "access_token";

/// Why a rule could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("request authentication {policy}: jwtRules issuer {issuer:?}: {reason}")]
pub struct JwtError {
    pub policy: String,
    pub issuer: String,
    pub reason: String,
}

/// Where a rule looks for tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Header { name: HeaderName, prefix: String },
    Param(String),
    Cookie(String),
}

/// One compiled `jwtRules` entry.
#[derive(Debug)]
struct Rule {
    policy: String,
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<Key>,
    /// The controller could not fetch the keys: every token of this issuer fails.
    jwks_error: Option<String>,
    locations: Vec<Location>,
    payload_header: Option<HeaderName>,
    forward: bool,
    claim_headers: Vec<(HeaderName, String)>,
    space_delimited: Vec<String>,
}

/// The compiled rules of a workload; `None` of these where no
/// RequestAuthentication applies, so requests pay nothing then.
#[derive(Debug, Default)]
pub struct Authn {
    rules: Vec<Rule>,
    /// Every location of every rule, each once, in rule order.
    locations: Vec<Location>,
}

/// The verified identity of a request (Istio's `request.auth.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// `<iss>/<sub>`; only when the token has both (Istio's `*` needs both).
    pub principal: Option<String>,
    /// `aud`, as a list.
    pub audiences: Vec<String>,
    /// `azp`.
    pub presenter: Option<String>,
    pub claims: Map<String, Value>,
    /// Top-level claims whose string value lists words separated by spaces.
    pub space_delimited: Vec<String>,
}

/// Claims Envoy always reads as space-separated lists.
const SPACE_DELIMITED: [&str; 2] = ["scope", "permission"];

impl Identity {
    /// The string values of claim `path` (`[a, b]` is `claims[a][b]`): a
    /// string claim, or the strings of a list claim. Other types give none,
    /// as Istio matches only strings and lists of strings. `scope`,
    /// `permission` and the rule's `spaceDelimitedClaims` are split on spaces.
    pub fn claim_strings<'a>(&'a self, path: &[String]) -> Vec<&'a str> {
        let Some((first, rest)) = path.split_first() else {
            return Vec::new();
        };
        let mut at = self.claims.get(first);
        for step in rest {
            at = at.and_then(|v| v.get(step));
        }
        let split = rest.is_empty()
            && (SPACE_DELIMITED.contains(&first.as_str()) || self.space_delimited.contains(first));
        match at {
            Some(Value::String(s)) if split => s.split(' ').filter(|w| !w.is_empty()).collect(),
            _ => strings_of(at),
        }
    }
}

fn strings_of(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Why a token was refused; the text is Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Malformed,
    UnsupportedAlg,
    UnknownIssuer,
    Expired,
    NotYetValid,
    Audience,
    NoMatchingKey,
    BadSignature,
    KeysUnavailable,
}

impl Failure {
    /// Envoy's message, the body of the 401.
    pub fn message(self) -> &'static str {
        match self {
            Failure::Malformed => {
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
            }
            Failure::UnsupportedAlg => "Jwt header [alg] is not supported",
            Failure::UnknownIssuer => "Jwt issuer is not configured",
            Failure::Expired => "Jwt is expired",
            Failure::NotYetValid => "Jwt not yet valid",
            Failure::Audience => "Audiences in Jwt are not allowed",
            Failure::NoMatchingKey => "Jwks doesn't have key to match kid or alg from Jwt",
            Failure::BadSignature => "Jwt verification fails",
            Failure::KeysUnavailable => "Jwks remote fetch is failed",
        }
    }

    /// Envoy answers 403 to a token for another audience, 401 otherwise.
    pub fn status(self) -> http::StatusCode {
        match self {
            Failure::Audience => http::StatusCode::FORBIDDEN,
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// Envoy's response code details for access logs.
    pub fn details(self) -> &'static str {
        match self {
            Failure::Malformed => {
                "jwt_authn_access_denied{Jwt_is_not_in_the_form_of_Header.Payload.Signature_with_two_dots_and_3_sections}"
            }
            Failure::UnsupportedAlg => "jwt_authn_access_denied{Jwt_header_[alg]_is_not_supported}",
            Failure::UnknownIssuer => "jwt_authn_access_denied{Jwt_issuer_is_not_configured}",
            Failure::Expired => "jwt_authn_access_denied{Jwt_is_expired}",
            Failure::NotYetValid => "jwt_authn_access_denied{Jwt_not_yet_valid}",
            Failure::Audience => "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}",
            Failure::NoMatchingKey => {
                "jwt_authn_access_denied{Jwks_doesn't_have_key_to_match_kid_or_alg_from_Jwt}"
            }
            Failure::BadSignature => "jwt_authn_access_denied{Jwt_verification_fails}",
            Failure::KeysUnavailable => "jwt_authn_access_denied{Jwks_remote_fetch_is_failed}",
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Malformed => "malformed",
            Failure::UnsupportedAlg => "unsupported_alg",
            Failure::UnknownIssuer => "unknown_issuer",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::Audience => "audience",
            Failure::NoMatchingKey => "no_matching_key",
            Failure::BadSignature => "bad_signature",
            Failure::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// What request authentication decided.
#[derive(Debug)]
pub enum Outcome {
    /// No token anywhere a rule looks.
    Anonymous,
    Verified(Box<Identity>),
    Refused(Failure),
}

/// A token found in a request, and where.
struct Found<'s, 'h> {
    token: &'h str,
    at: &'s Location,
}

/// A token split and decoded, signature not yet checked.
struct Parsed {
    alg: String,
    kid: Option<String>,
    claims: Map<String, Value>,
    /// `header.payload`, what the signature covers.
    signed_len: usize,
    signature: Vec<u8>,
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn parse(token: &str) -> Result<Parsed, Failure> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Failure::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Malformed);
    };
    let header = decode_json(h).ok_or(Failure::Malformed)?;
    let claims = decode_json(p).ok_or(Failure::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| Failure::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) if keys::supported(a) => a.clone(),
        _ => return Err(Failure::UnsupportedAlg),
    };
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(Parsed {
        alg,
        kid,
        claims,
        signed_len: h.len() + 1 + p.len(),
        signature,
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A NumericDate claim: seconds since the epoch.
fn numeric_date(v: Option<&Value>) -> Result<Option<u64>, Failure> {
    match v {
        None => Ok(None),
        // A non-negative number; a fraction is cut off (as jwt_verify_lib does).
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(Failure::Malformed),
        Some(_) => Err(Failure::Malformed),
    }
}

/// Keeps the most telling failure: a token that was checked and failed says
/// more than one whose issuer no rule knows (Envoy's order of preference).
fn note(failure: &mut Option<Failure>, e: Failure) {
    match failure {
        None => *failure = Some(e),
        Some(Failure::UnknownIssuer) if e != Failure::UnknownIssuer => *failure = Some(e),
        Some(_) => {}
    }
}

/// Audiences compare without an `http://` or `https://` scheme and a final `/`.
fn normal_audience(a: &str) -> &str {
    let a = a
        .strip_prefix("https://")
        .or_else(|| a.strip_prefix("http://"))
        .unwrap_or(a);
    a.strip_suffix('/').unwrap_or(a)
}

impl Rule {
    /// Whether this rule checks tokens of `iss` (a rule without an issuer
    /// checks every token).
    fn accepts(&self, iss: Option<&str>) -> bool {
        self.issuer.is_empty() || iss == Some(self.issuer.as_str())
    }

    /// Checks one parsed token whose `iss` is this rule's.
    fn check(&self, token: &str, parsed: &Parsed, now: u64) -> Result<(), Failure> {
        let exp = numeric_date(parsed.claims.get("exp"))?;
        let nbf = numeric_date(parsed.claims.get("nbf"))?;
        if exp.is_some_and(|exp| now > exp.saturating_add(CLOCK_SKEW_SECS)) {
            return Err(Failure::Expired);
        }
        if nbf.is_some_and(|nbf| now.saturating_add(CLOCK_SKEW_SECS) < nbf) {
            return Err(Failure::NotYetValid);
        }
        let aud = parsed.claims.get("aud");
        let well_typed = match aud {
            None | Some(Value::String(_)) => true,
            Some(Value::Array(items)) => items.iter().all(Value::is_string),
            Some(_) => false,
        };
        if !well_typed {
            return Err(Failure::Malformed);
        }
        if !self.audiences.is_empty() {
            let aud = strings_of(aud);
            let hit = aud.iter().any(|a| {
                self.audiences
                    .iter()
                    .any(|w| normal_audience(w) == normal_audience(a))
            });
            if !hit {
                return Err(Failure::Audience);
            }
        }
        if self.jwks_error.is_some() {
            return Err(Failure::KeysUnavailable);
        }
        let signed = token
            .as_bytes()
            .get(..parsed.signed_len)
            .unwrap_or_default();
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| k.fits(&parsed.alg))
            .filter(|k| match (&parsed.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .peekable();
        if candidates.peek().is_none() {
            return Err(Failure::NoMatchingKey);
        }
        if candidates.any(|k| k.verify(&parsed.alg, signed, &parsed.signature)) {
            Ok(())
        } else {
            Err(Failure::BadSignature)
        }
    }
}

fn header_name(what: &str, name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{what}: {name:?} is not a valid header name"))
}

fn default_locations() -> Vec<Location> {
    vec![
        Location::Header {
            name: http::header::AUTHORIZATION,
            prefix: "Bearer ".into(),
        },
        Location::Param(DEFAULT_PARAM.into()),
    ]
}

fn compile_rule(r: &pb::JwtRule) -> Result<Rule, String> {
    let (keys, jwks_error) = if r.jwks_error.is_empty() {
        let (keys, skipped) = keys::parse_set(&r.jwks).map_err(|e| format!("jwks: {e}"))?;
        for why in skipped {
            tracing::warn!(policy = %r.policy, issuer = %r.issuer, "JWKS key skipped: {why}");
        }
        (keys, None)
    } else {
        (Vec::new(), Some(r.jwks_error.clone()))
    };
    let mut locations = Vec::new();
    for h in &r.from_headers {
        locations.push(Location::Header {
            name: header_name("fromHeaders", &h.name)?,
            prefix: h.prefix.clone(),
        });
    }
    locations.extend(r.from_params.iter().cloned().map(Location::Param));
    locations.extend(r.from_cookies.iter().cloned().map(Location::Cookie));
    if r.from_headers.is_empty() && r.from_params.is_empty() && r.from_cookies.is_empty() {
        locations = default_locations();
    }
    let payload_header = (!r.output_payload_to_header.is_empty())
        .then(|| header_name("outputPayloadToHeader", &r.output_payload_to_header))
        .transpose()?;
    let claim_headers = r
        .output_claim_to_headers
        .iter()
        .map(|c| {
            if c.claim.is_empty() {
                return Err("outputClaimToHeaders: claim is empty".to_owned());
            }
            Ok((
                header_name("outputClaimToHeaders", &c.header)?,
                c.claim.clone(),
            ))
        })
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        policy: r.policy.clone(),
        issuer: r.issuer.clone(),
        audiences: r.audiences.clone(),
        keys,
        jwks_error,
        locations,
        payload_header,
        forward: r.forward_original_token,
        claim_headers,
        space_delimited: r.space_delimited_claims.clone(),
    })
}

/// `name=value` of a query string. Token characters (base64url and dots)
/// need no escaping, so values are compared undecoded; one that is escaped
/// fails verification.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `uri` without the query parameters named in `names` (Envoy removes a
/// verified token's parameter unless it is forwarded).
fn without_params(uri: &http::Uri, names: &[String]) -> Option<http::Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| {
            let key = kv.split_once('=').map_or(*kv, |(k, _)| k);
            !names.iter().any(|n| n == key)
        })
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    http::Uri::from_parts(parts).ok()
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

impl Authn {
    /// Compiles the controller's rules; `None` when there are none.
    pub fn compile(rules: &[pb::JwtRule]) -> Result<Option<Self>, JwtError> {
        if rules.is_empty() {
            return Ok(None);
        }
        let mut out = Authn::default();
        for r in rules {
            let rule = compile_rule(r).map_err(|reason| JwtError {
                policy: r.policy.clone(),
                issuer: r.issuer.clone(),
                reason,
            })?;
            for l in &rule.locations {
                if !out.locations.contains(l) {
                    out.locations.push(l.clone());
                }
            }
            out.rules.push(rule);
        }
        Ok(Some(out))
    }

    /// The tokens of a request: one per header value (every value of a
    /// repeated header), query parameter or cookie that holds one.
    fn find<'s, 'h>(
        &'s self,
        headers: &'h HeaderMap,
        query: Option<&'h str>,
    ) -> Vec<Found<'s, 'h>> {
        let mut found = Vec::new();
        let mut push = |token: &'h str, at: &'s Location| {
            let token = token.trim();
            if !token.is_empty() {
                found.push(Found { token, at });
            }
        };
        for at in &self.locations {
            match at {
                Location::Header { name, prefix } => {
                    let values = headers.get_all(name).iter();
                    for v in values.filter_map(|v| v.to_str().ok()) {
                        if let Some(t) = strip_prefix(v, prefix) {
                            push(t, at);
                        }
                    }
                }
                Location::Param(name) => {
                    if let Some(t) = query.and_then(|q| query_param(q, name)) {
                        push(t, at);
                    }
                }
                Location::Cookie(name) => {
                    if let Some(t) = cookie(headers, name) {
                        push(t, at);
                    }
                }
            }
        }
        found
    }

    /// Drops a caller's own values of the headers only this proxy sets.
    pub fn strip_output_headers(&self, headers: &mut HeaderMap) {
        for rule in &self.rules {
            if let Some(h) = &rule.payload_header {
                headers.remove(h);
            }
            for (h, _) in &rule.claim_headers {
                headers.remove(h);
            }
        }
    }

    /// Verifies the tokens of a request. On success each token is removed
    /// from its header or query parameter (unless its rule forwards it) and
    /// the output headers are set.
    pub fn authenticate(&self, headers: &mut HeaderMap, uri: &mut http::Uri) -> Outcome {
        let mut strip = Vec::new();
        let outcome = self.authenticate_inner(headers, uri.query(), now_secs(), &mut strip);
        if !strip.is_empty()
            && let Some(stripped) = without_params(uri, &strip)
        {
            *uri = stripped;
        }
        outcome
    }

    #[cfg(test)]
    fn authenticate_at(&self, headers: &mut HeaderMap, query: Option<&str>, now: u64) -> Outcome {
        self.authenticate_inner(headers, query, now, &mut Vec::new())
    }

    /// `strip` gets the query parameters to remove from the request.
    fn authenticate_inner(
        &self,
        headers: &mut HeaderMap,
        query: Option<&str>,
        now: u64,
        strip: &mut Vec<String>,
    ) -> Outcome {
        self.strip_output_headers(headers);
        // (rule, where, claims, payload) of every verified token.
        let mut verified: Vec<(&Rule, &Location, Map<String, Value>, String)> = Vec::new();
        let mut failure = None;
        {
            let found = self.find(headers, query);
            if found.is_empty() {
                return Outcome::Anonymous;
            }
            for f in &found {
                let parsed = match parse(f.token) {
                    Ok(p) => p,
                    Err(e) => {
                        note(&mut failure, e);
                        continue;
                    }
                };
                let iss = match parsed.claims.get("iss") {
                    None => None,
                    Some(Value::String(s)) => Some(s.as_str()),
                    Some(_) => {
                        note(&mut failure, Failure::Malformed);
                        continue;
                    }
                };
                // The rules of this issuer that look where the token was.
                let mut rules = self
                    .rules
                    .iter()
                    .filter(|r| r.accepts(iss) && r.locations.contains(f.at))
                    .peekable();
                if rules.peek().is_none() {
                    note(&mut failure, Failure::UnknownIssuer);
                    continue;
                }
                let mut last = None;
                let hit = rules.find(|r| match r.check(f.token, &parsed, now) {
                    Ok(()) => true,
                    Err(e) => {
                        last = Some(e);
                        false
                    }
                });
                match hit {
                    Some(rule) => {
                        let payload = f.token.split('.').nth(1).unwrap_or_default().to_owned();
                        verified.push((rule, f.at, parsed.claims, payload));
                    }
                    None => {
                        if let Some(e) = last {
                            note(&mut failure, e);
                        }
                    }
                }
            }
        }
        // Every token found is checked, and one that fails refuses the
        // request even when another passed (Envoy's behaviour).
        if let Some(e) = failure {
            return Outcome::Refused(e);
        }
        for (rule, at, claims, payload) in &verified {
            if !rule.forward {
                match at {
                    Location::Header { name, .. } => {
                        headers.remove(name);
                    }
                    Location::Param(name) => strip.push(name.clone()),
                    // Envoy leaves cookies as they are.
                    Location::Cookie(_) => {}
                }
            }
            if let Some(h) = &rule.payload_header
                && let Ok(v) = HeaderValue::from_str(payload.trim_end_matches('='))
            {
                headers.insert(h.clone(), v);
            }
            for (h, claim) in &rule.claim_headers {
                let mut steps = claim.split('.');
                let mut at = claims.get(steps.next().unwrap_or_default());
                for step in steps {
                    at = at.and_then(|v| v.get(step));
                }
                if let Some(v) = at.and_then(claim_header_value) {
                    headers.insert(h.clone(), v);
                }
            }
        }
        // The identity is the first verified token's.
        let Some((rule, _, claims, _)) = verified.into_iter().next() else {
            return Outcome::Refused(Failure::UnknownIssuer);
        };
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let identity = Identity {
            principal: (!iss.is_empty() && !sub.is_empty()).then(|| format!("{iss}/{sub}")),
            audiences: strings_of(claims.get("aud"))
                .into_iter()
                .map(str::to_owned)
                .collect(),
            presenter: claims.get("azp").and_then(Value::as_str).map(str::to_owned),
            claims,
            space_delimited: rule.space_delimited.clone(),
        };
        Outcome::Verified(Box::new(identity))
    }

    /// `<namespace>/<name>` of the policies in force (for logs and dumps).
    pub fn policies(&self) -> Vec<&str> {
        let mut p: Vec<&str> = self.rules.iter().map(|r| r.policy.as_str()).collect();
        p.dedup();
        p
    }
}

/// The token in a header value: the whole value without a prefix, else the
/// run of base64url characters and dots right after the first `prefix`
/// (case-sensitive, as Envoy reads it).
fn strip_prefix<'v>(value: &'v str, prefix: &str) -> Option<&'v str> {
    if prefix.is_empty() {
        return Some(value);
    }
    let start = value.find(prefix)? + prefix.len();
    let rest = value.get(start..)?;
    let end = rest
        .bytes()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        .unwrap_or(rest.len());
    rest.get(..end)
}

/// A claim as Envoy writes it into a header: strings as they are, whole
/// numbers as integers, booleans as words, objects and lists as base64 JSON.
fn claim_header_value(v: &Value) -> Option<HeaderValue> {
    let text = match v {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f >= 0.0 => format!("{f:.0}"),
            (None, Some(f)) => format!("{f:.6}"),
            (None, None) => n.to_string(),
        },
        Value::Array(_) | Value::Object(_) => {
            base64::engine::general_purpose::STANDARD.encode(v.to_string())
        }
        _ => return None,
    };
    // Claims may hold any UTF-8 text; header values take its bytes as they are.
    HeaderValue::from_bytes(text.as_bytes()).ok()
}
