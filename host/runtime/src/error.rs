//! The runtime's error type: the contract's errors, plus what can go wrong around a plugin
//! (loading it, granting it directories, running it).

use std::path::PathBuf;
use std::time::Duration;

use stateplug_sdk::LockInfo;
use stateplug_state::{Refusal, StoreError};

/// Result of host operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a plugin load or a backend call can fail with. Each message says what was wrong
/// and, where there is something to do, what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No object or lock at the path.
    #[error("`{path}` not found")]
    NotFound {
        /// The path asked for.
        path: String,
    },
    /// Held by someone else.
    #[error("`{path}` is locked by {}", holder.holder())]
    Locked {
        /// The path asked for.
        path: String,
        /// The holder's lock.
        holder: Box<LockInfo>,
    },
    /// A write's or delete's precondition did not hold; nothing changed.
    #[error(
        "`{path}` was not changed: its precondition failed (it already exists, or changed since it was read); read it again and retry"
    )]
    PreconditionFailed {
        /// The path asked for.
        path: String,
    },
    /// The backend configuration is wrong.
    #[error("plugin `{plugin}`: invalid configuration: {message}")]
    InvalidConfig {
        /// The plugin's name.
        plugin: String,
        /// Which key and what is expected.
        message: String,
    },
    /// The path breaks the contract's rules.
    #[error("{0}")]
    InvalidPath(String),
    /// Refused by the storage or by the sandbox.
    #[error("plugin `{plugin}`: access denied: {message}")]
    Denied {
        /// The plugin's name.
        plugin: String,
        /// What was refused.
        message: String,
    },
    /// A transient failure; a retry may work.
    #[error("plugin `{plugin}`: temporarily unavailable: {message}")]
    Unavailable {
        /// The plugin's name.
        plugin: String,
        /// The cause.
        message: String,
    },
    /// Any other failure reported by the plugin.
    #[error("plugin `{plugin}`: {message}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// The plugin's message.
        message: String,
    },
    /// The plugin broke: it trapped, panicked, ran out of memory, or exceeded its deadline.
    /// Its instance was thrown away; the next call runs on a fresh one.
    #[error("plugin `{plugin}` crashed and was restarted: {cause}")]
    Crashed {
        /// The plugin's name.
        plugin: String,
        /// Why, in words (deadline, memory cap, panic message, ...).
        cause: String,
    },
    /// The plugin did not answer in time.
    #[error(
        "plugin `{plugin}` did not answer within {timeout:?} and was restarted; raise `timeout` in its grants if the storage is slow"
    )]
    Timeout {
        /// The plugin's name.
        plugin: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// A plugin file could not be loaded.
    #[error("cannot load plugin {source_name}: {reason}")]
    Load {
        /// Where it came from (path or `built-in NAME`).
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A directory grant could not be set up.
    #[error("cannot grant directory {}: {reason}", path.display())]
    Grant {
        /// The host directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The host itself failed (wasmtime setup, I/O of the compiled cache, ...).
    #[error("{0}")]
    Host(String),
}

impl Error {
    /// Whether the failure was a lock held by someone else.
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Locked { .. })
    }

    /// Whether the failure was a missing object.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// The kind of failure in one stable word (`not_found`, `locked`, `crashed`, ...): the
    /// `outcome` label of the plugin call metrics, never the message, which is unbounded.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::Locked { .. } => "locked",
            Error::PreconditionFailed { .. } => "precondition_failed",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::InvalidPath(_) => "invalid_path",
            Error::Denied { .. } => "denied",
            Error::Unavailable { .. } => "unavailable",
            Error::Plugin { .. } => "plugin_error",
            Error::Crashed { .. } => "crashed",
            Error::Timeout { .. } => "timeout",
            Error::Load { .. } => "load",
            Error::Grant { .. } => "grant",
            Error::Host(_) => "host",
        }
    }
}

impl StoreError for Error {
    fn refusal(&self) -> Refusal<'_> {
        match self {
            Error::NotFound { .. } => Refusal::NotFound,
            Error::PreconditionFailed { .. } => Refusal::PreconditionFailed,
            Error::Locked { holder, .. } => Refusal::Locked(holder),
            _ => Refusal::Other,
        }
    }
}

/// The runtime's own failure while `doing` something.
pub(crate) fn host_error(doing: &str, err: &wasmtime::Error) -> Error {
    Error::Host(format!("{doing}: {}", chain(err)))
}

/// Formats a wasmtime error with its chain of causes but without the native backtrace that
/// `RUST_BACKTRACE=1` would attach to `{:?}`.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
