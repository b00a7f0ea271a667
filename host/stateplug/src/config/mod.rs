//! Configuration: `stateplug.toml`, environment overrides and command-line flags, resolved
//! into named backends (plugin + plugin config + sandbox grants + state options) and the
//! server's settings. Precedence: flags > environment > file > built-in defaults.
//!
//! `file.rs` reads the file, `resolve.rs` applies the precedence, `values.rs` parses each
//! setting, `show.rs` prints the result (`config show`).
//!
//! ```toml
//! default = "team"
//!
//! [backends.team]
//! plugin = "local"            # a built-in name, or a path to a .wasm
//! dirs = ["./state"]          # granted directories (the first is /data inside the plugin)
//! memory = "256MiB"           # sandbox memory cap
//! timeout = "30s"             # deadline per plugin call
//! history = 10                # versions kept per workspace
//! lock_ttl = "2h"             # locks older than this may be taken over
//! backup_count = 3            # every other key goes to the plugin
//!
//! [server]
//! listen = "127.0.0.1:8080"
//! body_limit = "256MiB"
//! kv_sweep_interval = "30s"   # how often expired key-values are deleted
//! [server.users]
//! ci = { password_env = "STATEPLUG_CI_PASSWORD" }
//! ```

mod file;
mod resolve;
mod show;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use stateplug_runtime::Grants;
use stateplug_state::StateOptions;

pub use values::parse_size;

/// A configuration mistake: which setting, what is wrong, and what is expected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

/// Result of configuration.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn invalid(message: impl Into<String>) -> Error {
    Error(message.into())
}

/// The config file's name, looked for in the current directory and its parents.
pub const CONFIG_FILE: &str = "stateplug.toml";
/// Name and data directory of the backend used when there is no configuration at all.
pub const IMPLICIT_BACKEND: &str = "local";
pub(crate) const IMPLICIT_DIR: &str = "./.stateplug/state";
/// Drop-in plugins, looked for here and in `$XDG_DATA_HOME/stateplug/plugins` unless the
/// config file names `plugin_dir`. Not inside the default data directory, so no plugin granted
/// that directory can plant a plugin.
pub(crate) const DEFAULT_PLUGIN_DIR: &str = "./.stateplug/plugins";
/// Default address of `stateplug serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default cap on a request body.
pub const DEFAULT_BODY_LIMIT: usize = 256 << 20;
/// Default time between two sweeps of expired key-values by `serve`.
pub const DEFAULT_KV_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Backend keys that configure the host rather than the plugin.
pub(crate) const HOST_KEYS: &[&str] = &[
    "plugin",
    "dirs",
    "memory",
    "memory_total",
    "timeout",
    "instances",
    "max_connections",
    "history",
    "lock_ttl",
    "sha256",
    "env",
    "allow_hosts",
];

/// Where a backend's plugin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PluginRef {
    /// A plugin's name: a built-in, or one found in the plugin directories.
    Named(String),
    /// A `.wasm` file.
    File(PathBuf),
}

/// A backend, resolved from all configuration sources.
#[derive(Debug, Clone)]
pub struct BackendSettings {
    /// Its name.
    pub name: String,
    /// Its plugin.
    pub plugin: PluginRef,
    /// Key/value configuration for the plugin's `open`.
    pub plugin_config: Vec<(String, String)>,
    /// The sandbox.
    pub grants: Grants,
    /// State-layer options.
    pub state: StateOptions,
    /// When set, only a plugin binary with this SHA-256 (hex) is accepted.
    pub sha256: Option<String>,
    /// Where plugins named by `plugin` are looked for (after the built-ins).
    pub plugin_dirs: Vec<PathBuf>,
}

/// The server's resolved settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Time between two sweeps of expired key-values (`kv_sweep_interval`).
    pub kv_sweep_interval: Duration,
    /// Basic-auth users and their passwords; empty means no authentication.
    pub users: BTreeMap<String, String>,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// The selected backend.
    pub backend: BackendSettings,
    /// The server's settings.
    pub server: ServerSettings,
}

/// What the command line says about configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--backend NAME`.
    pub backend: Option<String>,
    /// `--plugin NAME|PATH`: use this plugin directly, ignoring the file's backends.
    pub plugin: Option<String>,
    /// `-c key=value`, in order.
    pub backend_config: Vec<(String, String)>,
    /// `--listen`.
    pub listen: Option<String>,
}
