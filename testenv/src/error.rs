//! Why a test environment could not start or answer.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// A failure of the test environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A control-plane binary is missing from the binary directory.
    #[error("{name} not found in {}: run scripts/k8s-tools (or set SLUICE_K8S_BIN)", dir.display())]
    MissingBinary {
        /// The binary that was looked for.
        name: &'static str,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A file or socket operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating certificates or keys failed.
    #[error("generating PKI")]
    Pki(#[from] rcgen::Error),
    /// Setting up the TLS client for readiness probes failed.
    #[error("setting up TLS")]
    Tls(#[from] rustls::Error),
    /// A control-plane process exited while it should have been serving.
    #[error("{name} exited with {status}; its log is {}", log.display())]
    Exited {
        /// The process.
        name: &'static str,
        /// How it ended.
        status: ExitStatus,
        /// Its stdout and stderr.
        log: PathBuf,
    },
    /// A readiness condition did not hold in time.
    #[error("{what} not ready after {waited:?}")]
    NotReady {
        /// What was awaited.
        what: String,
        /// How long it was awaited.
        waited: Duration,
    },
    /// An HTTP answer could not be parsed.
    #[error("malformed HTTP response from {0}")]
    MalformedResponse(String),
    /// `kubectl` failed.
    #[error("kubectl {args} failed ({status}): {stderr}")]
    Kubectl {
        /// The arguments, space separated.
        args: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Starting failed; the working directory with every log was kept.
    #[error("test environment failed to start (logs kept in {}): {source}", dir.display())]
    Start {
        /// The kept working directory.
        dir: PathBuf,
        /// Why starting failed.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// Whether a process exited because a port picked for it was taken in
    /// the meantime, which a new attempt with other ports avoids.
    pub(crate) fn is_port_clash(&self) -> bool {
        match self {
            Error::Exited { log, .. } => std::fs::read_to_string(log)
                .is_ok_and(|text| text.contains("address already in use")),
            _ => false,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}
