//! The subset of CEL that access-log filters (Istio Telemetry
//! `accessLogging[].filter.expression`) and metric label values
//! (`metrics[].overrides[].tagOverrides[].value`) may use, shared by the
//! controller (which refuses anything outside it, naming what) and the sidecar
//! (which evaluates it per request).
//!
//! Supported: `&&`, `||`, `!`, parentheses, `== != < <= > >=` on integers,
//! strings and booleans, the string methods `startsWith`, `endsWith`,
//! `contains`, `'name' in request.headers`, and the attributes in
//! [`ATTRIBUTES`] plus `request.headers['name']`. Evaluation follows CEL's
//! error rules: a missing header is an error, `false && error` is false,
//! `true || error` is true, and an expression that ends in an error (or a
//! non-boolean) does not log.
//!
//! Label values ([`parse_value`]) may also use `c ? a : b`, `string(x)`,
//! `int(x)`, `has(attribute)` and the attributes of [`TAG_ATTRIBUTES`] (ports
//! and the peers' metadata); a value that ends in an error is `unknown`, as
//! Istio's stats filter reports it.

use std::fmt;

/// Longest accepted expression, in bytes.
pub const MAX_LEN: usize = 1024;
/// Deepest accepted nesting.
const MAX_DEPTH: usize = 32;

/// Attributes a filter may read, with their types.
pub const ATTRIBUTES: &[(&str, Kind)] = &[
    ("response.code", Kind::Int),
    ("response.code_details", Kind::Str),
    ("request.method", Kind::Str),
    ("request.path", Kind::Str),
    ("request.url_path", Kind::Str),
    ("request.host", Kind::Str),
    ("request.scheme", Kind::Str),
    ("request.protocol", Kind::Str),
    ("request.useragent", Kind::Str),
    ("request.id", Kind::Str),
    ("request.size", Kind::Int),
    ("response.size", Kind::Int),
    ("connection.mtls", Kind::Bool),
    ("connection.requested_server_name", Kind::Str),
    ("source.address", Kind::Str),
    ("destination.address", Kind::Str),
    ("upstream.address", Kind::Str),
    ("xds.cluster_name", Kind::Str),
    ("xds.route_name", Kind::Str),
];

/// What label values may read besides [`ATTRIBUTES`]: Envoy's port
/// attributes and the peers' metadata (Istio ≥ 1.24 names them
/// `filter_state.upstream_peer.<field>` / `filter_state.downstream_peer.<field>`;
/// the older top-level `upstream_peer` / `downstream_peer` are accepted too).
pub const TAG_ATTRIBUTES: &[(&str, Kind)] = &[
    ("destination.port", Kind::Int),
    ("source.port", Kind::Int),
    ("response.grpc_status", Kind::Int),
    ("filter_state.upstream_peer.app", Kind::Str),
    ("filter_state.upstream_peer.version", Kind::Str),
    ("filter_state.upstream_peer.service", Kind::Str),
    ("filter_state.upstream_peer.revision", Kind::Str),
    ("filter_state.upstream_peer.workload", Kind::Str),
    ("filter_state.upstream_peer.namespace", Kind::Str),
    ("filter_state.upstream_peer.cluster", Kind::Str),
    ("filter_state.downstream_peer.app", Kind::Str),
    ("filter_state.downstream_peer.version", Kind::Str),
    ("filter_state.downstream_peer.service", Kind::Str),
    ("filter_state.downstream_peer.revision", Kind::Str),
    ("filter_state.downstream_peer.workload", Kind::Str),
    ("filter_state.downstream_peer.namespace", Kind::Str),
    ("filter_state.downstream_peer.cluster", Kind::Str),
];

/// The peers themselves, for `has(filter_state.upstream_peer)`: whether
/// there is metadata of that peer at all.
pub const PEERS: [&str; 2] = ["filter_state.upstream_peer", "filter_state.downstream_peer"];

/// The peer-metadata prefixes of older Istio versions, read as the
/// `filter_state.` ones.
const LEGACY_PEERS: [(&str, &str); 2] = [
    ("upstream_peer.", "filter_state.upstream_peer."),
    ("downstream_peer.", "filter_state.downstream_peer."),
];

/// A value's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 64-bit integer.
    Int,
    /// String.
    Str,
    /// Boolean.
    Bool,
}

/// A value during evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
}

/// Why an expression is not in the supported subset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CelError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, CelError> {
    Err(CelError(msg.into()))
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
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

/// String methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `s.startsWith(x)`
    StartsWith,
    /// `s.endsWith(x)`
    EndsWith,
    /// `s.contains(x)`
    Contains,
}

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A literal.
    Lit(Value),
    /// An attribute from [`ATTRIBUTES`].
    Attr(&'static str, Kind),
    /// `request.headers['name']` (name lower-cased).
    Header(String),
    /// `'name' in request.headers`.
    HasHeader(String),
    /// `!e`
    Not(Box<Expr>),
    /// `a && b`
    And(Box<Expr>, Box<Expr>),
    /// `a || b`
    Or(Box<Expr>, Box<Expr>),
    /// `a OP b`
    Cmp(Cmp, Box<Expr>, Box<Expr>),
    /// `a.method(b)`
    Call(Method, Box<Expr>, Box<Expr>),
    /// `c ? a : b` (both branches of one type).
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `string(x)`
    ToString(Box<Expr>),
    /// `int(x)`
    ToInt(Box<Expr>),
    /// `has(attribute)`: whether the attribute has a value here.
    Has(&'static str),
}

/// What evaluation reads from the request being logged.
pub trait Attributes {
    /// The value of a supported attribute, `None` when it has none here.
    /// For a name of [`PEERS`], any value when that peer's metadata is known.
    fn attribute(&self, name: &str) -> Option<Value>;
    /// A request header's value (name lower-case), `None` when absent.
    fn header(&self, name: &str) -> Option<String>;
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Int(i64),
    Str(String),
    Op(&'static str),
}

fn tokens(src: &str) -> Result<Vec<Token>, CelError> {
    const OPS: [&str; 17] = [
        "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "(", ")", "[", "]", ".", ",", "?", ":",
    ];
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return err("unterminated string literal"),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some(&e @ ('\\' | '\'' | '"')) => s.push(e),
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            _ => return err("unsupported escape in string literal"),
                        }
                        i += 1;
                    }
                    Some(&other) => s.push(other),
                }
                i += 1;
            }
            i += 1;
            out.push(Token::Str(s));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            // CEL's unsigned suffix: `400u` compares like 400 here.
            if chars.get(i) == Some(&'u') {
                i += 1;
            }
            let n = text
                .parse::<i64>()
                .map_err(|_| CelError(format!("integer `{text}` out of range")))?;
            out.push(Token::Int(n));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return err(format!("unexpected character `{c}`"));
            };
            i += op.len();
            out.push(Token::Op(op));
        }
    }
    Ok(out)
}

/// Parses `src`, a boolean filter, checking attributes, methods and types.
pub fn parse(src: &str) -> Result<Expr, CelError> {
    let e = parse_with(src, false)?;
    if kind(&e) != Some(Kind::Bool) {
        return err("the expression must be a boolean");
    }
    Ok(e)
}

/// Parses `src`, a label value of any type, which may also use
/// [`TAG_ATTRIBUTES`], `?:`, `string()`, `int()` and `has()`.
pub fn parse_value(src: &str) -> Result<Expr, CelError> {
    if src.trim().is_empty() {
        return err("the expression is empty");
    }
    parse_with(src, true)
}

fn parse_with(src: &str, values: bool) -> Result<Expr, CelError> {
    if src.len() > MAX_LEN {
        return err(format!("expression longer than {MAX_LEN} bytes"));
    }
    let mut p = Parser {
        toks: tokens(src)?,
        pos: 0,
        depth: 0,
        values,
    };
    let e = p.cond()?;
    if let Some(t) = p.toks.get(p.pos) {
        return err(format!("unexpected {t:?} after the expression"));
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    /// Label-value syntax ([`parse_value`]) allowed.
    values: bool,
}

fn kind(e: &Expr) -> Option<Kind> {
    match e {
        Expr::Lit(Value::Int(_)) | Expr::ToInt(_) => Some(Kind::Int),
        Expr::Lit(Value::Str(_)) | Expr::Header(_) | Expr::ToString(_) => Some(Kind::Str),
        Expr::Lit(Value::Bool(_)) => Some(Kind::Bool),
        Expr::Attr(_, k) => Some(*k),
        Expr::Cond(_, a, _) => kind(a),
        _ => Some(Kind::Bool),
    }
}

/// The attribute called `path` that `values` syntax may read.
fn attribute(path: &str, values: bool) -> Option<(&'static str, Kind)> {
    let path = LEGACY_PEERS
        .iter()
        .find_map(|(old, new)| {
            path.strip_prefix(old)
                .filter(|_| values)
                .map(|field| format!("{new}{field}"))
        })
        .unwrap_or_else(|| path.to_owned());
    let extra: &[(&'static str, Kind)] = if values { TAG_ATTRIBUTES } else { &[] };
    ATTRIBUTES
        .iter()
        .chain(extra)
        .find(|(n, _)| *n == path)
        .copied()
}

impl Parser {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Token::Op(o)) if *o == op)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let hit = self.peek_op(op);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect_op(&mut self, op: &str) -> Result<(), CelError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            err(format!("expected `{op}`"))
        }
    }

    fn deeper(&mut self) -> Result<(), CelError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(format!("nested deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    /// `c ? a : b`, the lowest precedence (label values only).
    fn cond(&mut self) -> Result<Expr, CelError> {
        let c = self.or()?;
        if !self.peek_op("?") {
            return Ok(c);
        }
        if !self.values {
            return err("`?:` is not supported in filters");
        }
        self.pos += 1;
        self.deeper()?;
        let a = self.cond()?;
        self.expect_op(":")?;
        let b = self.cond()?;
        self.depth -= 1;
        let c = bool_operand(c)?;
        if kind(&a) != kind(&b) {
            return err(format!(
                "the branches of `?:` are {} and {}",
                kind_name(kind(&a)),
                kind_name(kind(&b))
            ));
        }
        Ok(Expr::Cond(Box::new(c), Box::new(a), Box::new(b)))
    }

    fn or(&mut self) -> Result<Expr, CelError> {
        self.deeper()?;
        let mut left = self.and()?;
        while self.eat_op("||") {
            let right = self.and()?;
            left = Expr::Or(
                Box::new(bool_operand(left)?),
                Box::new(bool_operand(right)?),
            );
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, CelError> {
        let mut left = self.relation()?;
        while self.eat_op("&&") {
            let right = self.relation()?;
            left = Expr::And(
                Box::new(bool_operand(left)?),
                Box::new(bool_operand(right)?),
            );
        }
        Ok(left)
    }

    fn relation(&mut self) -> Result<Expr, CelError> {
        let left = self.unary()?;
        if matches!(self.toks.get(self.pos), Some(Token::Ident(w)) if w == "in") {
            self.pos += 1;
            let Expr::Lit(Value::Str(name)) = left else {
                return err("only `'name' in request.headers` is supported for `in`");
            };
            if !self.eat_path(&["request", "headers"]) {
                return err("only `'name' in request.headers` is supported for `in`");
            }
            return Ok(Expr::HasHeader(name.to_ascii_lowercase()));
        }
        let ops = [
            ("==", Cmp::Eq),
            ("!=", Cmp::Ne),
            ("<=", Cmp::Le),
            (">=", Cmp::Ge),
            ("<", Cmp::Lt),
            (">", Cmp::Gt),
        ];
        for (text, op) in ops {
            if self.eat_op(text) {
                let right = self.unary()?;
                let (lk, rk) = (kind(&left), kind(&right));
                if lk != rk {
                    return err(format!(
                        "`{text}` compares {} with {}",
                        kind_name(lk),
                        kind_name(rk)
                    ));
                }
                if lk == Some(Kind::Bool) && !matches!(op, Cmp::Eq | Cmp::Ne) {
                    return err(format!("`{text}` does not apply to booleans"));
                }
                return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
            }
        }
        Ok(left)
    }

    fn eat_path(&mut self, words: &[&str]) -> bool {
        let start = self.pos;
        for (i, w) in words.iter().enumerate() {
            if i > 0 && !self.eat_op(".") {
                self.pos = start;
                return false;
            }
            match self.toks.get(self.pos) {
                Some(Token::Ident(x)) if x == w => self.pos += 1,
                _ => {
                    self.pos = start;
                    return false;
                }
            }
        }
        true
    }

    fn unary(&mut self) -> Result<Expr, CelError> {
        if self.eat_op("!") {
            self.deeper()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(bool_operand(inner)?)));
        }
        let mut e = self.primary()?;
        // Method calls on strings: `x.startsWith('a')`.
        while self.peek_op(".") {
            self.pos += 1;
            let Some(Token::Ident(name)) = self.toks.get(self.pos).cloned() else {
                return err("expected a method name after `.`");
            };
            self.pos += 1;
            let method = match name.as_str() {
                "startsWith" => Method::StartsWith,
                "endsWith" => Method::EndsWith,
                "contains" => Method::Contains,
                other => {
                    return err(format!(
                        "unsupported function `{other}` (supported: startsWith, endsWith, contains)"
                    ));
                }
            };
            self.expect_op("(")?;
            let arg = self.or()?;
            self.expect_op(")")?;
            if kind(&e) != Some(Kind::Str) || kind(&arg) != Some(Kind::Str) {
                return err(format!("`{name}` takes a string and a string argument"));
            }
            e = Expr::Call(method, Box::new(e), Box::new(arg));
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, CelError> {
        let Some(tok) = self.toks.get(self.pos).cloned() else {
            return err("unexpected end of the expression");
        };
        self.pos += 1;
        match tok {
            Token::Int(n) => Ok(Expr::Lit(Value::Int(n))),
            Token::Str(s) => Ok(Expr::Lit(Value::Str(s))),
            Token::Op("(") => {
                let e = self.cond()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Token::Op(o) => err(format!("unexpected `{o}`")),
            Token::Ident(w) if w == "true" => Ok(Expr::Lit(Value::Bool(true))),
            Token::Ident(w) if w == "false" => Ok(Expr::Lit(Value::Bool(false))),
            Token::Ident(f) if self.values && self.peek_op("(") => self.function(&f),
            Token::Ident(first) => {
                let mut path = first;
                // Attribute paths are `a.b`; a `.` followed by `(` later is a
                // method call, handled by the caller.
                while self.peek_op(".")
                    && matches!(self.toks.get(self.pos + 1), Some(Token::Ident(_)))
                    && !matches!(self.toks.get(self.pos + 2), Some(Token::Op("(")))
                {
                    if let Some(Token::Ident(next)) = self.toks.get(self.pos + 1) {
                        path.push('.');
                        path.push_str(next);
                    }
                    self.pos += 2;
                }
                if path == "request.headers" {
                    self.expect_op("[")?;
                    let Some(Token::Str(name)) = self.toks.get(self.pos).cloned() else {
                        return err("request.headers[...] takes a string literal");
                    };
                    self.pos += 1;
                    self.expect_op("]")?;
                    return Ok(Expr::Header(name.to_ascii_lowercase()));
                }
                match attribute(&path, self.values) {
                    Some((name, k)) => Ok(Expr::Attr(name, k)),
                    None => err(unsupported(&path, self.values)),
                }
            }
        }
    }

    /// `string(x)`, `int(x)`, `has(attribute)`; the name is eaten, `(` is next.
    fn function(&mut self, name: &str) -> Result<Expr, CelError> {
        self.expect_op("(")?;
        self.deeper()?;
        let e = match name {
            "has" => {
                let mut path = String::new();
                while let Some(Token::Ident(w)) = self.toks.get(self.pos) {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(w);
                    self.pos += 1;
                    if !(self.peek_op(".")
                        && matches!(self.toks.get(self.pos + 1), Some(Token::Ident(_))))
                    {
                        break;
                    }
                    self.pos += 1;
                }
                if path == "request.headers" && self.eat_op("[") {
                    let Some(Token::Str(name)) = self.toks.get(self.pos).cloned() else {
                        return err("request.headers[...] takes a string literal");
                    };
                    self.pos += 1;
                    self.expect_op("]")?;
                    Expr::HasHeader(name.to_ascii_lowercase())
                } else if let Some(peer) = PEERS.iter().find(|p| {
                    **p == path
                        || LEGACY_PEERS.iter().any(|(old, new)| {
                            new.strip_suffix('.') == Some(*p)
                                && old.strip_suffix('.') == Some(&path)
                        })
                }) {
                    Expr::Has(peer)
                } else {
                    match attribute(&path, true) {
                        Some((name, _)) => Expr::Has(name),
                        None if path.is_empty() => return err("has() takes an attribute"),
                        None => return err(unsupported(&path, true)),
                    }
                }
            }
            "string" => Expr::ToString(Box::new(self.cond()?)),
            "int" => {
                let arg = self.cond()?;
                if kind(&arg) == Some(Kind::Bool) {
                    return err("int() takes an integer or a string");
                }
                Expr::ToInt(Box::new(arg))
            }
            other => {
                return err(format!(
                    "unsupported function `{other}` (supported: string, int, has)"
                ));
            }
        };
        self.expect_op(")")?;
        self.depth -= 1;
        Ok(e)
    }
}

fn unsupported(path: &str, values: bool) -> String {
    let extra: &[(&'static str, Kind)] = if values { TAG_ATTRIBUTES } else { &[] };
    format!(
        "unsupported attribute `{path}` (supported: {}, request.headers['name'])",
        ATTRIBUTES
            .iter()
            .chain(extra)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn kind_name(k: Option<Kind>) -> &'static str {
    match k {
        Some(Kind::Int) => "an integer",
        Some(Kind::Str) => "a string",
        Some(Kind::Bool) | None => "a boolean",
    }
}

fn bool_operand(e: Expr) -> Result<Expr, CelError> {
    if kind(&e) == Some(Kind::Bool) {
        Ok(e)
    } else {
        err(format!(
            "{} used where a boolean is needed",
            kind_name(kind(&e))
        ))
    }
}

/// Evaluation failed (a missing attribute or header), as CEL's error value.
#[derive(Debug, PartialEq, Eq)]
pub struct NoValue;

impl Expr {
    /// Whether the request is logged: true only when the expression
    /// evaluates to `true` without an error.
    pub fn matches(&self, a: &dyn Attributes) -> bool {
        matches!(self.eval(a), Ok(Value::Bool(true)))
    }

    /// The value as a metric label: strings as they are, integers in
    /// decimal, booleans `true` / `false`; `None` when evaluation fails.
    pub fn label(&self, a: &dyn Attributes) -> Option<String> {
        match self.eval(a).ok()? {
            Value::Str(s) => Some(s),
            Value::Int(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
        }
    }

    /// Attributes the expression reads.
    pub fn attributes(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Attr(n, _) | Expr::Has(n) = e
                && !out.contains(n)
            {
                out.push(*n);
            }
        });
        out
    }

    /// Header names the expression reads (lower-case), so a caller can keep
    /// only those until the request is logged.
    pub fn headers(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Header(n) | Expr::HasHeader(n) = e
                && !out.contains(n)
            {
                out.push(n.clone());
            }
        });
        out
    }

    fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::ToString(e) | Expr::ToInt(e) => e.walk(f),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) | Expr::Call(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Cond(c, a, b) => {
                c.walk(f);
                a.walk(f);
                b.walk(f);
            }
            _ => {}
        }
    }

    fn eval(&self, a: &dyn Attributes) -> Result<Value, NoValue> {
        Ok(match self {
            Expr::Lit(v) => v.clone(),
            Expr::Attr(name, _) => a.attribute(name).ok_or(NoValue)?,
            Expr::Header(name) => Value::Str(a.header(name).ok_or(NoValue)?),
            Expr::HasHeader(name) => Value::Bool(a.header(name).is_some()),
            Expr::Not(e) => Value::Bool(!truth(e.eval(a))?),
            Expr::And(x, y) => match (truth(x.eval(a)), truth(y.eval(a))) {
                (Ok(false), _) | (_, Ok(false)) => Value::Bool(false),
                (Ok(true), Ok(true)) => Value::Bool(true),
                _ => return Err(NoValue),
            },
            Expr::Or(x, y) => match (truth(x.eval(a)), truth(y.eval(a))) {
                (Ok(true), _) | (_, Ok(true)) => Value::Bool(true),
                (Ok(false), Ok(false)) => Value::Bool(false),
                _ => return Err(NoValue),
            },
            Expr::Cmp(op, x, y) => {
                let (l, r) = (x.eval(a)?, y.eval(a)?);
                let ord = match (&l, &r) {
                    (Value::Int(l), Value::Int(r)) => l.cmp(r),
                    (Value::Str(l), Value::Str(r)) => l.cmp(r),
                    (Value::Bool(l), Value::Bool(r)) => l.cmp(r),
                    _ => return Err(NoValue),
                };
                Value::Bool(match op {
                    Cmp::Eq => ord.is_eq(),
                    Cmp::Ne => ord.is_ne(),
                    Cmp::Lt => ord.is_lt(),
                    Cmp::Le => ord.is_le(),
                    Cmp::Gt => ord.is_gt(),
                    Cmp::Ge => ord.is_ge(),
                })
            }
            Expr::Call(m, s, arg) => {
                let (Value::Str(s), Value::Str(arg)) = (s.eval(a)?, arg.eval(a)?) else {
                    return Err(NoValue);
                };
                Value::Bool(match m {
                    Method::StartsWith => s.starts_with(&arg),
                    Method::EndsWith => s.ends_with(&arg),
                    Method::Contains => s.contains(&arg),
                })
            }
            Expr::Cond(c, x, y) => {
                if truth(c.eval(a))? {
                    x.eval(a)?
                } else {
                    y.eval(a)?
                }
            }
            Expr::ToString(e) => Value::Str(match e.eval(a)? {
                Value::Str(s) => s,
                Value::Int(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
            }),
            Expr::ToInt(e) => Value::Int(match e.eval(a)? {
                Value::Int(n) => n,
                Value::Str(s) => s.trim().parse().map_err(|_| NoValue)?,
                Value::Bool(_) => return Err(NoValue),
            }),
            Expr::Has(name) => Value::Bool(a.attribute(name).is_some()),
        })
    }
}

fn truth(v: Result<Value, NoValue>) -> Result<bool, NoValue> {
    match v? {
        Value::Bool(b) => Ok(b),
        _ => Err(NoValue),
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(kind_name(Some(*self)))
    }
}

#[cfg(test)]
mod tests;
