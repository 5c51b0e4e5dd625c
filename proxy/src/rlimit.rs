//! Raises the open-file soft limit to the hard limit at startup: each proxied connection
//! holds two descriptors, and service managers often start processes with a soft limit of
//! 1024 while allowing far more.

#[cfg(test)]
mod tests;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Stand-in for an unlimited hard limit, which Linux refuses as a soft limit for open
/// files (it caps them at `fs.nr_open`, 1,048,576 by default).
const UNLIMITED_NOFILE: u64 = 1 << 20;

/// The open-file soft limit before and after [`raise_nofile`] (`None` = unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimit {
    /// Soft limit found at startup.
    pub before: Option<u64>,
    /// Soft limit in force now.
    pub after: Option<u64>,
}

/// The soft limit could not be raised.
#[derive(Debug, thiserror::Error)]
#[error("raising the open-file soft limit from {from:?} to {to}: {source}")]
pub struct RaiseNofileError {
    from: Option<u64>,
    to: u64,
    #[source]
    source: std::io::Error,
}

/// The soft limit to set for `current` and `maximum` (`None` = unlimited), or `None` when
/// the soft limit is already as high as it can go.
pub fn wanted_soft_limit(current: Option<u64>, maximum: Option<u64>) -> Option<u64> {
    let ceiling = maximum.unwrap_or(UNLIMITED_NOFILE);
    match current {
        None => None,
        Some(c) if c >= ceiling => None,
        Some(_) => Some(ceiling),
    }
}

/// Raises this process's open-file soft limit to its hard limit.
pub fn raise_nofile() -> Result<NofileLimit, RaiseNofileError> {
    let limit = getrlimit(Resource::Nofile);
    let Some(to) = wanted_soft_limit(limit.current, limit.maximum) else {
        return Ok(NofileLimit {
            before: limit.current,
            after: limit.current,
        });
    };
    let raised = Rlimit {
        current: Some(to),
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).map_err(|e| RaiseNofileError {
        from: limit.current,
        to,
        source: e.into(),
    })?;
    Ok(NofileLimit {
        before: limit.current,
        after: getrlimit(Resource::Nofile).current,
    })
}

/// [`raise_nofile`], logging the outcome; a failure leaves the limit as it was.
pub fn raise_nofile_or_warn() {
    match raise_nofile() {
        Ok(l) if l.before != l.after => {
            tracing::info!(before = ?l.before, after = ?l.after, "raised the open-file limit")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("{e}; serving with the limit as it is"),
    }
}
