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
//! audit_retention = 1000      # audit events kept per workspace (by serve and the CLI alike)
//! metrics_listen = "127.0.0.1:9090" # optional: /healthz, /readyz, /metrics without auth
//! tls_cert = "cert.pem"       # optional: https with this certificate chain (PEM) ...
//! tls_key = "key.pem"         # ... and its private key; both reloaded on SIGHUP
//! client_ca = "ca.pem"        # optional: mutual TLS, clients need a certificate it signed
//! [server.users.ci]          # also [server.tokens.NAME] with token / token_env / token_file
//! password_env = "STATEPLUG_CI_PASSWORD"  # or password (plain, argon2 or bcrypt), password_file
//! permissions = [{ workspaces = "dev-*", allow = ["read", "write", "lock"] }]
//! [server.oidc]               # JWTs of an issuer, claims mapped to permissions
//! issuer = "https://gitlab.example.com"
//! audience = "stateplug"
//! jwks_url = "https://gitlab.example.com/oauth/discovery/keys"  # or jwks_file = "jwks.json"
//! rules = [{ claims = { project = "*" }, permissions = [{ workspaces = "{project}-*", allow = ["write"] }] }]
//! ```

mod file;
mod resolve;
mod show;
mod values;

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
    /// Audit events kept per workspace (`audit_retention`, at least 1). Also in every
    /// backend's state options, so the CLI's own records are pruned alike.
    pub audit_retention: usize,
    /// A second address serving `/healthz`, `/readyz` and `/metrics` without auth
    /// (`metrics_listen`); `None` serves them on `listen` alone.
    pub metrics_listen: Option<SocketAddr>,
    /// The users and tokens who may call the server; none (and no `oidc`) means no
    /// authentication.
    pub principals: Vec<crate::access::Principal>,
    /// The OIDC issuer whose JWTs are accepted, and what their claims allow.
    pub oidc: Option<crate::access::OidcSettings>,
    /// TLS (`tls_cert`, `tls_key`, `client_ca`); `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
}

/// Where `serve`'s TLS files are; they are read when the server starts and on SIGHUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, PEM, the server's own first (`tls_cert`).
    pub cert: PathBuf,
    /// Its private key, PEM (`tls_key`).
    pub key: PathBuf,
    /// For mutual TLS: the CA certificates (PEM) a client's certificate must be signed by
    /// (`client_ca`).
    pub client_ca: Option<PathBuf>,
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
    /// `--tls-cert` (relative to the working directory, like the other TLS flags).
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--client-ca`.
    pub client_ca: Option<PathBuf>,
}
