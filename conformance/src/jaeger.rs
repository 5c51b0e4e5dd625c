//! A real trace collector for tests: Jaeger (v2, in-memory storage) run as a child process on
//! free loopback ports, with its JSON query API (`/api/services`, `/api/traces`) parsed into spans.
use crate::client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// Environment variable naming the Jaeger binary (set by `scripts/test`).
pub const JAEGER_BIN_ENV: &str = "SLUICE_JAEGER_BIN";
/// Where `scripts/tracing-tools` puts the binary, relative to the workspace root.
pub const JAEGER_CACHE_PATH: &str = ".cache/tracing/bin/jaeger";

/// Why Jaeger could not be started or queried.
#[derive(Debug, thiserror::Error)]
pub enum JaegerError {
    /// The binary is not built.
    #[error(
        "jaeger binary not found (${JAEGER_BIN_ENV}: {env}; searched {searched}); build it: scripts/tracing-tools"
    )]
    MissingBinary {
        /// What `$SLUICE_JAEGER_BIN` held.
        env: String,
        /// Paths searched.
        searched: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Jaeger exited or did not become ready; the message carries its log's tail.
    #[error("jaeger did not start: {why}; log {log}:\n{tail}")]
    Start {
        /// What went wrong.
        why: String,
        /// Whether it exited (e.g. a port taken between choosing and binding it).
        exited: bool,
        /// The log file.
        log: String,
        /// The log's last lines.
        tail: String,
    },
    /// A query failed or answered something unexpected.
    #[error("jaeger query {path}: {why}")]
    Query {
        /// The query path.
        path: String,
        /// What went wrong.
        why: String,
    },
}

/// One span as Jaeger's JSON query API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// 32 lowercase hex digits (left-padded: Jaeger drops leading zeros).
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    /// The `CHILD_OF` reference's span id (else the first reference's), if any.
    pub parent_span_id: Option<String>,
    /// The span's name.
    pub operation_name: String,
    /// The exporting process's `service.name`.
    pub service_name: String,
    /// Tags as text (numbers and booleans rendered), including `span.kind`.
    pub tags: BTreeMap<String, String>,
}

impl Span {
    /// A tag's value.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }

    /// `client`, `server`, `producer`, `consumer` or `internal` (Jaeger's `span.kind` tag).
    pub fn kind(&self) -> Option<&str> {
        self.tag("span.kind")
    }
}

/// One trace: its spans, from every process that reported any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// Every span of the trace, by span id.
    pub spans: Vec<Span>,
}

impl Trace {
    /// The spans of one service and kind.
    pub fn spans_of<'a>(
        &'a self,
        service: &'a str,
        kind: &'a str,
    ) -> impl Iterator<Item = &'a Span> {
        self.spans
            .iter()
            .filter(move |s| s.service_name == service && s.kind() == Some(kind))
    }
}

/// A running Jaeger; dropping it kills the process.
#[derive(Debug)]
pub struct Jaeger {
    child: Child,
    otlp_grpc: SocketAddr,
    otlp_http: SocketAddr,
    query: SocketAddr,
    log: PathBuf,
}

impl Jaeger {
    /// Writes a config into `work_dir` (which must exist), starts Jaeger on free loopback
    /// ports and waits until its query API and OTLP receivers answer.
    pub async fn start(work_dir: &Path) -> Result<Self, JaegerError> {
        let bin = find_binary()?;
        // Free ports are only free until Jaeger binds them; another process may win one.
        let mut attempt = 1;
        loop {
            match Self::start_once(&bin, work_dir).await {
                Err(JaegerError::Start { exited: true, .. }) if attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn start_once(bin: &Path, work_dir: &Path) -> Result<Self, JaegerError> {
        let [otlp_grpc, otlp_http, query, query_grpc] = free_ports()?;
        let config = work_dir.join("jaeger.yaml");
        let log = work_dir.join("jaeger.log");
        std::fs::write(
            &config,
            config_yaml(otlp_grpc, otlp_http, query, query_grpc),
        )
        .map_err(io(format!("write {}", config.display())))?;
        let out = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("clone {}", log.display())))?;
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            // Jaeger traces itself to localhost:4317 by default, which may be anyone's port.
            .env("OTEL_SDK_DISABLED", "true")
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(io(format!("start {}", bin.display())))?;
        let mut jaeger = Self {
            child,
            otlp_grpc,
            otlp_http,
            query,
            log,
        };
        jaeger.wait_ready(Duration::from_secs(60)).await?;
        Ok(jaeger)
    }

    /// The OTLP/gRPC receiver (what sidecars export to).
    pub fn otlp_grpc_addr(&self) -> SocketAddr {
        self.otlp_grpc
    }

    /// The OTLP/HTTP receiver (`POST /v1/traces`, JSON or protobuf).
    pub fn otlp_http_addr(&self) -> SocketAddr {
        self.otlp_http
    }

    /// The query API (and UI).
    pub fn query_addr(&self) -> SocketAddr {
        self.query
    }

    /// Jaeger's own log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), JaegerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(io("wait for jaeger".into()))?
            {
                return Err(self.start_error(format!("exited ({status})"), true));
            }
            // The query extension starts before the pipelines, so both sides are checked.
            let query_up = self.services().await.is_ok();
            let grpc_up = tokio::net::TcpStream::connect(self.otlp_grpc).await.is_ok();
            let http_up = tokio::net::TcpStream::connect(self.otlp_http).await.is_ok();
            if query_up && grpc_up && http_up {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(
                    format!(
                        "not ready within {timeout:?} (query API: {query_up}, OTLP gRPC: {grpc_up}, OTLP HTTP: {http_up})"
                    ),
                    false,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn start_error(&self, why: String, exited: bool) -> JaegerError {
        JaegerError::Start {
            why,
            exited,
            log: self.log.display().to_string(),
            tail: log_tail(&self.log, 30),
        }
    }

    /// `GET path` as JSON; `None` on 404.
    async fn get_json(&self, path: &str) -> Result<Option<Value>, JaegerError> {
        let err = |why: String| JaegerError::Query {
            path: path.to_string(),
            why,
        };
        let resp = client::http_get(self.query, path)
            .await
            .map_err(|e| err(e.to_string()))?;
        match resp.status {
            200 => serde_json::from_slice(&resp.body)
                .map(Some)
                .map_err(|e| err(format!("not JSON: {e}"))),
            404 => Ok(None),
            status => Err(err(format!(
                "status {status}: {}",
                String::from_utf8_lossy(&resp.body)
            ))),
        }
    }

    /// Every service name that reported spans (`GET /api/services`), sorted.
    pub async fn services(&self) -> Result<Vec<String>, JaegerError> {
        let path = "/api/services";
        let v = self
            .get_json(path)
            .await?
            .ok_or_else(|| JaegerError::Query {
                path: path.into(),
                why: "status 404: not a Jaeger query API".into(),
            })?;
        let mut names: Vec<String> = match v.get("data") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            // An empty store answers `"data": null`.
            Some(Value::Null) | None => Vec::new(),
            Some(other) => {
                return Err(JaegerError::Query {
                    path: path.into(),
                    why: format!("data is not a list: {other}"),
                });
            }
        };
        names.sort();
        Ok(names)
    }

    /// The service's traces of the last hour (`GET /api/traces?service=NAME`), up to 1000.
    pub async fn traces(&self, service: &str) -> Result<Vec<Trace>, JaegerError> {
        let path = format!(
            "/api/traces?service={}&limit=1000&lookback=1h",
            encode(service)
        );
        let v = self.get_json(&path).await?.unwrap_or(Value::Null);
        parse_traces(&v).map_err(|why| JaegerError::Query { path, why })
    }

    /// One trace by id (`GET /api/traces/ID`); `None` when Jaeger has no such trace.
    pub async fn trace(&self, trace_id: &str) -> Result<Option<Trace>, JaegerError> {
        let path = format!("/api/traces/{}", encode(trace_id));
        let Some(v) = self.get_json(&path).await? else {
            return Ok(None);
        };
        let mut traces = parse_traces(&v).map_err(|why| JaegerError::Query { path, why })?;
        Ok(traces.pop())
    }

    /// Polls `traces(service)` until `found` picks something out of them, or `timeout` passes
    /// (then `None`: exporters batch, so absence is only ever "not within the time given").
    pub async fn wait_traces<T>(
        &self,
        service: &str,
        timeout: Duration,
        mut found: impl FnMut(&[Trace]) -> Option<T>,
    ) -> Result<Option<T>, JaegerError> {
        let deadline = Instant::now() + timeout;
        loop {
            let traces = self.traces(service).await?;
            if let Some(t) = found(&traces) {
                return Ok(Some(t));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> JaegerError {
    move |source| JaegerError::Io { what, source }
}

/// `$SLUICE_JAEGER_BIN`, else `.cache/tracing/bin/jaeger` under the workspace root (found from
/// this crate's source dir and from the running executable's ancestors).
pub fn find_binary() -> Result<PathBuf, JaegerError> {
    let env = std::env::var_os(JAEGER_BIN_ENV);
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = &env {
        candidates.push(PathBuf::from(p));
    }
    if let Some(root) = Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
        candidates.push(root.join(JAEGER_CACHE_PATH));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).map(|d| d.join(JAEGER_CACHE_PATH)));
    }
    let mut seen = std::collections::BTreeSet::new();
    candidates.retain(|p| seen.insert(p.clone()));
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    Err(JaegerError::MissingBinary {
        env: env.map_or_else(|| "unset".into(), |p| p.to_string_lossy().into_owned()),
        searched: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Four distinct free loopback ports (bound together, then released for Jaeger to take).
fn free_ports() -> Result<[SocketAddr; 4], JaegerError> {
    let bind = || {
        TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .map_err(io("bind a free port".into()))
    };
    let held = [bind()?, bind()?, bind()?, bind()?];
    let mut out = [SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0); 4];
    for (slot, l) in out.iter_mut().zip(&held) {
        *slot = l.local_addr().map_err(io("read a bound port".into()))?;
    }
    Ok(out)
}

/// Jaeger v2 (OpenTelemetry Collector) config: OTLP in, batch, in-memory store, query API out;
/// the collector's own metrics listener (:8888 by default) is off so parallel runs don't clash.
fn config_yaml(
    otlp_grpc: SocketAddr,
    otlp_http: SocketAddr,
    query: SocketAddr,
    query_grpc: SocketAddr,
) -> String {
    format!(
        "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: \"{query}\"
    grpc:
      endpoint: \"{query_grpc}\"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: \"{otlp_grpc}\"
      http:
        endpoint: \"{otlp_http}\"
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"
    )
}

/// Percent-encodes everything but unreserved characters (service names hold dots only, but a
/// test may pass anything).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Pads Jaeger's trace ids (which drop leading zeros) to 32 digits, span ids to 16.
fn pad_hex(id: &str, width: usize) -> String {
    format!("{:0>width$}", id.to_ascii_lowercase())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses the `{"data": [trace...]}` answer of `/api/traces`.
fn parse_traces(v: &Value) -> Result<Vec<Trace>, String> {
    let items = match v.get("data") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Null) | None => &[],
        Some(other) => return Err(format!("data is not a list: {other}")),
    };
    items.iter().map(parse_trace).collect()
}

fn parse_trace(t: &Value) -> Result<Trace, String> {
    let field = |v: &Value, k: &str| -> Result<String, String> {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("missing {k} in {v}"))
    };
    let trace_id = pad_hex(&field(t, "traceID")?, 32);
    let processes = t.get("processes").and_then(Value::as_object);
    let spans = t
        .get("spans")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(spans.len());
    for s in spans {
        let refs = s
            .get("references")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let parent = refs
            .iter()
            .find(|r| r.get("refType").and_then(Value::as_str) == Some("CHILD_OF"))
            .or_else(|| refs.first())
            .map(|r| field(r, "spanID"))
            .transpose()?
            .map(|id| pad_hex(&id, 16));
        let tags = s
            .get("tags")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|tag| {
                let key = tag.get("key")?.as_str()?;
                Some((key.to_string(), text(tag.get("value")?)))
            })
            .collect();
        let service_name = s
            .get("processID")
            .and_then(Value::as_str)
            .and_then(|p| processes?.get(p))
            .and_then(|p| p.get("serviceName"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        out.push(Span {
            trace_id: pad_hex(&field(s, "traceID")?, 32),
            span_id: pad_hex(&field(s, "spanID")?, 16),
            parent_span_id: parent,
            operation_name: field(s, "operationName")?,
            service_name,
            tags,
        });
    }
    // Jaeger's endpoints list spans in different orders; one order makes traces comparable.
    out.sort_by(|a, b| a.span_id.cmp(&b.span_id));
    Ok(Trace {
        trace_id,
        spans: out,
    })
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
