//! Configuration: `stateplug.toml`, environment overrides and command-line flags, resolved
//! into named backends (plugin + plugin config + sandbox grants + state options) and the
//! server's settings. Precedence: flags > environment > file > built-in defaults.
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
//! [server.users]
//! ci = { password_env = "STATEPLUG_CI_PASSWORD" }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sandbox::{DirGrant, Grants};
use crate::state::{DEFAULT_HISTORY, StateOptions};
use crate::{HostGrant, Plugin, PluginMetadata, Runtime};

/// The config file's name, looked for in the current directory and its parents.
pub const CONFIG_FILE: &str = "stateplug.toml";
/// Where a granted directory appears inside the plugin when no guest path is given.
pub const DEFAULT_GUEST_DIR: &str = "/data";
/// Name and data directory of the backend used when there is no configuration at all.
pub const IMPLICIT_BACKEND: &str = "local";
const IMPLICIT_DIR: &str = "./.stateplug/state";
/// Drop-in plugins, looked for here and in `$XDG_DATA_HOME/stateplug/plugins` unless the
/// config file names `plugin_dir`. Not inside the default data directory, so no plugin granted
/// that directory can plant a plugin.
const DEFAULT_PLUGIN_DIR: &str = "./.stateplug/plugins";
/// Default address of `stateplug serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default cap on a request body.
pub const DEFAULT_BODY_LIMIT: usize = 256 << 20;

/// Backend keys that configure the host rather than the plugin.
const HOST_KEYS: &[&str] = &[
    "plugin",
    "dirs",
    "memory",
    "timeout",
    "history",
    "lock_ttl",
    "sha256",
    "env",
    "allow_hosts",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    default: Option<String>,
    plugin_dir: Option<toml::Value>,
    #[serde(default)]
    backends: BTreeMap<String, toml::Table>,
    #[serde(default)]
    server: ServerFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    listen: Option<String>,
    body_limit: Option<toml::Value>,
    #[serde(default)]
    users: BTreeMap<String, UserFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    password: Option<String>,
    password_env: Option<String>,
}

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
pub struct BackendConfig {
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
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Basic-auth users and their passwords; empty means no authentication.
    pub users: BTreeMap<String, String>,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub file: Option<PathBuf>,
    /// The selected backend.
    pub backend: BackendConfig,
    /// The server's settings.
    pub server: ServerConfig,
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

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidInput(message.into())
}

impl Config {
    /// Resolves the configuration from the file (found as documented), the environment
    /// `env` (pass `std::env::vars()`), and `overrides`.
    pub fn load(
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let file = match &overrides.config_file {
            Some(path) => Some(path.clone()),
            None => match env.get("STATEPLUG_CONFIG") {
                Some(path) => Some(PathBuf::from(path)),
                None => find_config_file(),
            },
        };
        let (parsed, base_dir) = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
                let parsed: FileConfig = toml::from_str(&text)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (parsed, dir)
            }
            None => (FileConfig::default(), PathBuf::new()),
        };
        // Relative paths from flags and the environment stay relative to the working dir.
        let cwd = PathBuf::new();

        // Which backend, and its table from the file (paths there are relative to the file).
        let (name, mut table, table_dir) = if let Some(plugin) = &overrides.plugin {
            let mut table = toml::Table::new();
            table.insert("plugin".into(), toml::Value::String(plugin.clone()));
            (plugin_backend_name(plugin), table, cwd.clone())
        } else if parsed.backends.is_empty() && overrides.backend.is_none() {
            let mut table = toml::Table::new();
            table.insert("plugin".into(), "local".into());
            table.insert("dirs".into(), toml::Value::Array(vec![IMPLICIT_DIR.into()]));
            (IMPLICIT_BACKEND.to_string(), table, cwd.clone())
        } else {
            let configured = parsed
                .backends
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let name = overrides
                .backend
                .clone()
                .or(parsed.default.clone())
                .or_else(|| {
                    (parsed.backends.len() == 1)
                        .then(|| parsed.backends.keys().next().cloned())
                        .flatten()
                })
                .ok_or_else(|| {
                    invalid(format!(
                        "several backends are configured ({configured}) and none is chosen: set \
                         `default` in the config file or pass --backend NAME"
                    ))
                })?;
            let table = parsed.backends.get(&name).cloned().ok_or_else(|| {
                invalid(format!(
                    "no backend named `{name}` in {}; configured: {configured}",
                    file.as_ref()
                        .map(|f| f.display().to_string())
                        .unwrap_or("the configuration".into()),
                ))
            })?;
            (name, table, base_dir.clone())
        };

        // Environment, then flags, override the file; their paths are relative to the cwd.
        let mut relative_to: BTreeMap<String, PathBuf> = BTreeMap::new();
        let env_prefix = format!("STATEPLUG_BACKEND_{}_", env_name(&name));
        for (var, value) in &env {
            if let Some(key) = var.strip_prefix(&env_prefix) {
                let key = key.to_ascii_lowercase();
                relative_to.insert(key.clone(), cwd.clone());
                table.insert(key, toml::Value::String(value.clone()));
            }
        }
        for (key, value) in &overrides.backend_config {
            relative_to.insert(key.clone(), cwd.clone());
            table.insert(key.clone(), toml::Value::String(value.clone()));
        }
        let dir_of = |key: &str| {
            relative_to
                .get(key)
                .cloned()
                .unwrap_or_else(|| table_dir.clone())
        };
        let mut backend = resolve_backend(&name, &table, &dir_of, &env)?;
        backend.plugin_dirs = match &parsed.plugin_dir {
            Some(value) => parse_plugin_dirs(value, &base_dir)?,
            None => default_plugin_dirs(&env),
        };
        let server = resolve_server(&parsed.server, overrides, &env)?;
        Ok(Config {
            file,
            backend,
            server,
        })
    }
}

fn parse_plugin_dirs(value: &toml::Value, base: &Path) -> Result<Vec<PathBuf>> {
    let list = match value {
        toml::Value::String(dir) => vec![dir.as_str()],
        toml::Value::Array(items) => items.iter().filter_map(|v| v.as_str()).collect(),
        other => {
            return Err(invalid(format!(
                "`plugin_dir` must be a path or a list of paths, not {}",
                other.type_str()
            )));
        }
    };
    Ok(list.into_iter().map(|dir| base.join(dir)).collect())
}

fn default_plugin_dirs(env: &BTreeMap<String, String>) -> Vec<PathBuf> {
    let data_home = env.get("XDG_DATA_HOME").map(PathBuf::from).or_else(|| {
        env.get("HOME")
            .map(|home| Path::new(home).join(".local/share"))
    });
    let mut dirs = vec![PathBuf::from(DEFAULT_PLUGIN_DIR)];
    dirs.extend(data_home.map(|d| d.join("stateplug/plugins")));
    dirs
}

/// `--plugin ./x/my-store.wasm` names the backend `my-store`.
fn plugin_backend_name(plugin: &str) -> String {
    Path::new(plugin)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| plugin.to_string())
}

fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace(['-', '.'], "_")
}

fn find_config_file() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join(CONFIG_FILE))
        .find(|path| path.is_file())
}

fn value_text(key: &str, value: &toml::Value) -> Result<String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(invalid(format!(
            "`{key}` must be a string, number or boolean, not {}",
            value.type_str()
        ))),
    }
}

fn resolve_backend(
    name: &str,
    table: &toml::Table,
    dir_of: &dyn Fn(&str) -> PathBuf,
    env: &BTreeMap<String, String>,
) -> Result<BackendConfig> {
    let context = |e: Error| invalid(format!("backend `{name}`: {e}"));
    let plugin = match table.get("plugin") {
        Some(value) => value_text("plugin", value).map_err(context)?,
        None => {
            return Err(invalid(format!(
                "backend `{name}` has no `plugin`: name a built-in ({}), a plugin in the plugin \
                 directory, or a .wasm file",
                crate::builtin::names().join(", ")
            )));
        }
    };
    let plugin = if plugin.ends_with(".wasm") || plugin.contains('/') {
        PluginRef::File(dir_of("plugin").join(plugin))
    } else {
        PluginRef::Named(plugin)
    };
    let mut grants = Grants::default();
    let mut state = StateOptions {
        history: DEFAULT_HISTORY,
        lock_ttl: None,
    };
    if let Some(dirs) = table.get("dirs") {
        grants.dirs = parse_dirs(dirs, &dir_of("dirs")).map_err(context)?;
    }
    if let Some(memory) = table.get("memory") {
        grants.memory = parse_size("memory", memory).map_err(context)?;
    }
    if let Some(timeout) = table.get("timeout") {
        grants.timeout = parse_duration("timeout", timeout).map_err(context)?;
    }
    if let Some(history) = table.get("history") {
        let text = value_text("history", history).map_err(context)?;
        state.history = text.parse().map_err(|_| {
            invalid(format!(
                "backend `{name}`: `history` = `{text}` is not a whole number"
            ))
        })?;
    }
    if let Some(ttl) = table.get("lock_ttl") {
        state.lock_ttl = Some(parse_duration("lock_ttl", ttl).map_err(context)?);
    }
    let mut plugin_config = table
        .iter()
        .filter(|(key, _)| !HOST_KEYS.contains(&key.as_str()))
        .map(|(key, value)| Ok((key.clone(), value_text(key, value).map_err(context)?)))
        .collect::<Result<Vec<_>>>()?;
    // `env = { secret_key = "AWS_SECRET_ACCESS_KEY" }`: plugin keys the operator allows to be
    // filled from the host's environment; nothing else of it reaches a plugin.
    if let Some(grants) = table.get("env") {
        let grants = grants.as_table().ok_or_else(|| {
            invalid(format!(
                "backend `{name}`: `env` must be a table of plugin key = \"HOST_VARIABLE\""
            ))
        })?;
        for (key, var) in grants {
            let var = value_text(key, var).map_err(context)?;
            let value = env.get(&var).ok_or_else(|| {
                invalid(format!(
                    "backend `{name}`: `env.{key}` names the variable {var}, which is not set"
                ))
            })?;
            plugin_config.retain(|(k, _)| k != key);
            plugin_config.push((key.clone(), value.clone()));
        }
    }
    grants.allow_hosts = match table.get("allow_hosts") {
        Some(hosts) => parse_allow_hosts(hosts).map_err(context)?,
        None => endpoint_grants(&plugin_config),
    };
    let sha256 = match table.get("sha256") {
        Some(value) => Some(
            value_text("sha256", value)
                .map_err(context)?
                .to_ascii_lowercase(),
        ),
        None => None,
    };
    Ok(BackendConfig {
        name: name.to_string(),
        plugin,
        plugin_config,
        grants,
        state,
        sha256,
        plugin_dirs: Vec::new(),
    })
}

/// A list setting: a TOML array, or (from the environment or a flag) a comma-separated string.
fn list_items(key: &str, value: &toml::Value) -> Result<Vec<toml::Value>> {
    match value {
        toml::Value::Array(items) => Ok(items.clone()),
        toml::Value::String(s) => Ok(s
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| toml::Value::String(s.to_string()))
            .collect()),
        other => Err(invalid(format!(
            "`{key}` must be a list, not {}",
            other.type_str()
        ))),
    }
}

/// `allow_hosts` is a list of host grants (see [`HostGrant`]); from the environment or a
/// flag, a comma-separated list.
fn parse_allow_hosts(value: &toml::Value) -> Result<Vec<HostGrant>> {
    list_items("allow_hosts", value)?
        .iter()
        .map(|item| {
            let entry = item.as_str().ok_or_else(|| {
                invalid(format!(
                    "an `allow_hosts` entry must be a string, not {}",
                    item.type_str()
                ))
            })?;
            entry
                .parse::<HostGrant>()
                .map_err(|e| invalid(format!("`allow_hosts`: {e}")))
        })
        .collect()
}

/// Without `allow_hosts`, a plugin may reach the endpoints it is configured with (`endpoint`,
/// `*_endpoint`) and nothing else.
fn endpoint_grants(plugin_config: &[(String, String)]) -> Vec<HostGrant> {
    plugin_config
        .iter()
        .filter(|(key, _)| key == "endpoint" || key.ends_with("_endpoint"))
        .filter_map(|(_, url)| HostGrant::from_endpoint(url))
        .flatten()
        .collect()
}

/// `dirs` is a list of host paths (the first seen as /data) or tables
/// `{ host = "...", guest = "/x", read_only = true }`; from the environment or a flag, a
/// comma-separated list of host paths.
fn parse_dirs(value: &toml::Value, base: &Path) -> Result<Vec<DirGrant>> {
    let items = list_items("dirs", value)?;
    let mut grants: Vec<DirGrant> = Vec::new();
    for item in items {
        let (host, guest, read_only) = match &item {
            toml::Value::String(host) => (host.clone(), None, false),
            toml::Value::Table(t) => {
                if let Some(key) = t
                    .keys()
                    .find(|k| !["host", "guest", "read_only"].contains(&k.as_str()))
                {
                    return Err(invalid(format!(
                        "unknown key `{key}` in `dirs`; use host, guest, read_only"
                    )));
                }
                let host = t
                    .get("host")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| invalid("a `dirs` entry has no `host` path"))?;
                let guest = t.get("guest").and_then(|v| v.as_str()).map(str::to_string);
                let read_only = t
                    .get("read_only")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                (host.to_string(), guest, read_only)
            }
            other => {
                return Err(invalid(format!(
                    "a `dirs` entry must be a path or a table, not {}",
                    other.type_str()
                )));
            }
        };
        let guest = match guest {
            Some(guest) if guest.starts_with('/') => guest,
            Some(guest) => {
                return Err(invalid(format!(
                    "`dirs` guest path `{guest}` must be absolute"
                )));
            }
            None if grants.iter().all(|g| g.guest != DEFAULT_GUEST_DIR) => {
                DEFAULT_GUEST_DIR.to_string()
            }
            None => {
                return Err(invalid(format!(
                    "`dirs`: only one directory can be seen as {DEFAULT_GUEST_DIR}; give the others a `guest` path"
                )));
            }
        };
        grants.push(DirGrant {
            host: base.join(host),
            guest,
            read_only,
        });
    }
    Ok(grants)
}

fn parse_duration(key: &str, value: &toml::Value) -> Result<Duration> {
    let text = value_text(key, value)?;
    humantime::parse_duration(&text).map_err(|e| {
        invalid(format!(
            "`{key}` = `{text}` is not a duration like 30s or 2h ({e})"
        ))
    })
}

/// `268435456`, `256MiB`, `1GiB`, `512KiB` (K, M, G are read as KiB, MiB, GiB).
pub fn parse_size(key: &str, value: &toml::Value) -> Result<usize> {
    let text = value_text(key, value)?;
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => 64,
    };
    number
        .parse::<usize>()
        .ok()
        .filter(|_| shift < 64)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| invalid(format!("`{key}` = `{text}` is not a size like 256MiB")))
}

fn resolve_server(
    file: &ServerFile,
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
) -> Result<ServerConfig> {
    let listen_text = overrides
        .listen
        .clone()
        .or_else(|| file.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = listen_text.parse().map_err(|_| {
        invalid(format!(
            "listen address `{listen_text}` is not HOST:PORT like 127.0.0.1:8080"
        ))
    })?;
    let body_limit = match &file.body_limit {
        Some(value) => parse_size("server.body_limit", value)?,
        None => DEFAULT_BODY_LIMIT,
    };
    let mut users = BTreeMap::new();
    for (user, source) in &file.users {
        let password = match (&source.password, &source.password_env) {
            (Some(password), None) => password.clone(),
            (None, Some(var)) => env.get(var).cloned().ok_or_else(|| {
                invalid(format!(
                    "user `{user}`: the variable {var} named by `password_env` is not set"
                ))
            })?,
            _ => {
                return Err(invalid(format!(
                    "user `{user}`: give exactly one of `password` and `password_env`"
                )));
            }
        };
        if password.is_empty() {
            return Err(invalid(format!("user `{user}` has an empty password")));
        }
        users.insert(user.clone(), password);
    }
    Ok(ServerConfig {
        listen,
        body_limit,
        users,
    })
}

impl BackendConfig {
    /// Loads the plugin, checks the plugin configuration against its `describe()` (unknown
    /// and missing keys are refused by name), and opens the backend.
    pub async fn open(&self, runtime: &Runtime) -> Result<crate::Backend> {
        let plugin = self.load_plugin(runtime).await?;
        self.check_plugin_config(plugin.metadata())?;
        plugin
            .open(self.plugin_config.clone(), self.grants.clone())
            .await
    }

    /// Loads the plugin, refusing any binary other than the pinned one when `sha256` is set.
    pub async fn load_plugin(&self, runtime: &Runtime) -> Result<Plugin> {
        let plugin = match &self.plugin {
            PluginRef::Named(name) if crate::builtin::names().contains(&name.as_str()) => {
                Plugin::builtin(runtime, name).await?
            }
            PluginRef::Named(name) => crate::catalog::Catalog::discover(runtime, &self.plugin_dirs)
                .await?
                .get(name)?,
            PluginRef::File(path) => Plugin::from_file(runtime, path).await?,
        };
        match &self.sha256 {
            Some(pinned) if pinned != plugin.sha256() => Err(Error::Load {
                source_name: plugin.source().to_string(),
                reason: format!(
                    "its SHA-256 is {}, but backend `{}` pins {pinned}; install the pinned \
                     build or update `sha256`",
                    plugin.sha256(),
                    self.name
                ),
            }),
            _ => Ok(plugin),
        }
    }

    /// Refuses configuration the plugin does not understand, naming the key.
    pub fn check_plugin_config(&self, metadata: &PluginMetadata) -> Result<()> {
        stateplug_sdk::Config::new(&metadata.config, self.plugin_config.clone())
            .map(|_| ())
            .map_err(|e| Error::InvalidConfig {
                plugin: metadata.name.clone(),
                message: format!(
                    "backend `{}`: {}",
                    self.name,
                    e.to_string().trim_start_matches("invalid configuration: ")
                ),
            })
    }

    /// The configuration as TOML, with the plugin's secret values masked.
    pub fn show(&self, metadata: Option<&PluginMetadata>) -> String {
        let secret = |key: &str| {
            metadata.is_some_and(|m| m.config.iter().any(|f| f.name == key && f.secret))
        };
        let mut table = toml::Table::new();
        let plugin = match &self.plugin {
            PluginRef::Named(name) => name.clone(),
            PluginRef::File(path) => path.display().to_string(),
        };
        table.insert("plugin".into(), plugin.into());
        let dirs = self
            .grants
            .dirs
            .iter()
            .map(|d| {
                let mut t = toml::Table::new();
                t.insert("host".into(), d.host.display().to_string().into());
                t.insert("guest".into(), d.guest.clone().into());
                t.insert("read_only".into(), d.read_only.into());
                toml::Value::Table(t)
            })
            .collect();
        table.insert("dirs".into(), toml::Value::Array(dirs));
        let hosts = self.grants.allow_hosts.iter().map(|h| h.to_string().into());
        table.insert("allow_hosts".into(), toml::Value::Array(hosts.collect()));
        table.insert(
            "memory".into(),
            format!("{}MiB", self.grants.memory >> 20).into(),
        );
        table.insert(
            "timeout".into(),
            humantime::format_duration(self.grants.timeout)
                .to_string()
                .into(),
        );
        table.insert("history".into(), (self.state.history as i64).into());
        if let Some(ttl) = self.state.lock_ttl {
            table.insert(
                "lock_ttl".into(),
                humantime::format_duration(ttl).to_string().into(),
            );
        }
        for (key, value) in &self.plugin_config {
            let shown = if secret(key) {
                "(secret)".to_string()
            } else {
                value.clone()
            };
            table.insert(key.clone(), shown.into());
        }
        let mut backends = toml::Table::new();
        backends.insert(self.name.clone(), toml::Value::Table(table));
        let mut root = toml::Table::new();
        root.insert("default".into(), self.name.clone().into());
        root.insert("backends".into(), toml::Value::Table(backends));
        toml::to_string_pretty(&root).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)], overrides: Overrides) -> Result<Config> {
        let dir = tempfile::tempdir().unwrap();
        let mut overrides = overrides;
        if let Some(text) = file {
            let path = dir.path().join(CONFIG_FILE);
            std::fs::write(&path, text).unwrap();
            overrides.config_file = Some(path);
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(&overrides, env)
    }

    #[test]
    fn no_configuration_means_local_in_dot_stateplug() {
        let config = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(config.backend.name, "local");
        assert_eq!(config.backend.plugin, PluginRef::Named("local".into()));
        assert_eq!(config.backend.grants.dirs[0].guest, "/data");
        assert!(
            config.backend.grants.dirs[0]
                .host
                .ends_with(".stateplug/state")
        );
        assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let file =
            "[backends.team]\nplugin = \"memory\"\npage_size = 10\nhistory = 3\ntimeout = \"5s\"\n";
        let env = [
            ("STATEPLUG_BACKEND_TEAM_PAGE_SIZE", "20"),
            ("STATEPLUG_BACKEND_TEAM_HISTORY", "4"),
        ];
        let flags = Overrides {
            backend_config: vec![("page_size".into(), "30".into())],
            ..Overrides::default()
        };
        let config = load(Some(file), &env, flags).unwrap();
        assert_eq!(
            config.backend.plugin_config,
            [("page_size".to_string(), "30".to_string())]
        );
        assert_eq!(config.backend.state.history, 4);
        assert_eq!(config.backend.grants.timeout, Duration::from_secs(5));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("colour = 1\n", "unknown field `colour`"),
            (
                "[backends.a]\nmemory = \"1GiB\"\n",
                "backend `a` has no `plugin`",
            ),
            (
                "[backends.a]\nplugin = \"memory\"\nmemory = \"lots\"\n",
                "`memory` = `lots` is not a size",
            ),
            (
                "[backends.a]\nplugin = \"memory\"\ntimeout = \"soon\"\n",
                "`timeout` = `soon` is not a duration",
            ),
            (
                "[backends.a]\nplugin = \"memory\"\n[backends.b]\nplugin = \"memory\"\n",
                "none is chosen",
            ),
            (
                "[backends.a]\nplugin = \"local\"\ndirs = [\"x\", \"y\"]\n",
                "only one directory can be seen as /data",
            ),
            ("[server]\nlisten = \"localhost\"\n", "is not HOST:PORT"),
            (
                "[server.users.ci]\npassword_env = \"NOPE\"\n",
                "NOPE named by `password_env` is not set",
            ),
        ];
        for (text, expected) in cases {
            let error = load(Some(text), &[], Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn env_grants_fill_plugin_keys_from_named_variables_only() {
        let file = "[backends.s]\nplugin = \"memory\"\nsha256 = \"ABC\"\nenv = { page_size = \"PAGES\" }\n";
        let config = load(
            Some(file),
            &[("PAGES", "7"), ("OTHER", "x")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            config.backend.plugin_config,
            [("page_size".to_string(), "7".to_string())]
        );
        assert_eq!(config.backend.sha256.as_deref(), Some("abc"));
        let missing = load(Some(file), &[], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("`env.page_size` names the variable PAGES, which is not set"),
            "{missing}"
        );
    }

    #[test]
    fn allow_hosts_default_to_the_configured_endpoints() {
        let hosts = |file: &str, env: &[(&str, &str)]| -> Vec<String> {
            let config = load(Some(file), env, Overrides::default()).unwrap();
            config
                .backend
                .grants
                .allow_hosts
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let derived = "[backends.s]\nplugin = \"s3\"\nendpoint = \"http://127.0.0.1:5000\"\n\
                       dynamodb_endpoint = \"https://ddb.example\"\n";
        assert_eq!(
            hosts(derived, &[]),
            [
                "https://ddb.example:443",
                "https://*.ddb.example:443",
                "http://127.0.0.1:5000"
            ]
        );
        assert!(hosts("[backends.s]\nplugin = \"memory\"\n", &[]).is_empty());
        let explicit = "[backends.s]\nplugin = \"s3\"\nendpoint = \"http://127.0.0.1:5000\"\n\
                        allow_hosts = [\"minio:9000\", \"10.0.0.0/8\"]\n";
        assert_eq!(hosts(explicit, &[]), ["minio:9000", "10.0.0.0/8"]);
        assert_eq!(
            hosts(
                derived,
                &[("STATEPLUG_BACKEND_S_ALLOW_HOSTS", "a.test,b.test:8080")]
            ),
            ["a.test", "b.test:8080"]
        );
        let bad = "[backends.s]\nplugin = \"s3\"\nallow_hosts = [\"ftp://x\"]\n";
        let error = load(Some(bad), &[], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("`ftp://x` is not a host grant"), "{error}");
    }

    #[test]
    fn sizes() {
        let size = |s: &str| parse_size("x", &toml::Value::String(s.into()));
        assert_eq!(size("256MiB").unwrap(), 256 << 20);
        assert_eq!(size("1g").unwrap(), 1 << 30);
        assert_eq!(size("4096").unwrap(), 4096);
        assert!(size("-1").is_err() && size("12 parsecs").is_err() && size("").is_err());
    }
}
