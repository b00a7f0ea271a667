//! Resolving the configuration: which backend, and each of its settings from flags, the
//! environment, the file or the defaults, in that order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stateplug_runtime::Grants;
use stateplug_state::{DEFAULT_HISTORY, StateOptions};

use super::file::{self, FileConfig, ServerFile};
use super::values::{
    endpoint_grants, parse_allow_hosts, parse_dirs, parse_duration, parse_size, value_text,
};
use super::{
    BackendSettings, DEFAULT_BODY_LIMIT, DEFAULT_KV_SWEEP_INTERVAL, DEFAULT_LISTEN,
    DEFAULT_PLUGIN_DIR, Error, HOST_KEYS, IMPLICIT_BACKEND, IMPLICIT_DIR, Overrides, PluginRef,
    Result, ServerSettings, Settings, invalid,
};

impl Settings {
    /// Resolves the configuration from the file (found as documented), the environment
    /// `env` (pass `std::env::vars()`), and `overrides`.
    pub fn load(
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let file = match &overrides.config_file {
            Some(path) => Some(path.clone()),
            None => match env.get("STATEPLUG_CONFIG") {
                Some(path) => Some(PathBuf::from(path)),
                None => file::find(),
            },
        };
        let (parsed, base_dir) = match &file {
            Some(path) => file::read(path)?,
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
        Ok(Settings {
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

fn resolve_backend(
    name: &str,
    table: &toml::Table,
    dir_of: &dyn Fn(&str) -> PathBuf,
    env: &BTreeMap<String, String>,
) -> Result<BackendSettings> {
    let context = |e: Error| invalid(format!("backend `{name}`: {e}"));
    let plugin = match table.get("plugin") {
        Some(value) => value_text("plugin", value).map_err(context)?,
        None => {
            return Err(invalid(format!(
                "backend `{name}` has no `plugin`: name a built-in ({}), a plugin in the plugin \
                 directory, or a .wasm file",
                stateplug_runtime::builtin::names().join(", ")
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
    if let Some(total) = table.get("memory_total") {
        grants.memory_total = Some(parse_size("memory_total", total).map_err(context)?);
    }
    if let Some(timeout) = table.get("timeout") {
        grants.timeout = parse_duration("timeout", timeout).map_err(context)?;
    }
    if let Some(instances) = table.get("instances") {
        let text = value_text("instances", instances).map_err(context)?;
        let count = text.parse().ok().filter(|n| *n >= 1);
        grants.instances = Some(count.ok_or_else(|| {
            invalid(format!(
                "backend `{name}`: `instances` = `{text}` is not a whole number of at least 1"
            ))
        })?);
    }
    if let Some(max) = table.get("max_connections") {
        let text = value_text("max_connections", max).map_err(context)?;
        let count = text.parse().ok().filter(|n| *n >= 1);
        grants.max_connections = count.ok_or_else(|| {
            invalid(format!(
                "backend `{name}`: `max_connections` = `{text}` is not a whole number of at \
                 least 1"
            ))
        })?;
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
    Ok(BackendSettings {
        name: name.to_string(),
        plugin,
        plugin_config,
        grants,
        state,
        sha256,
        plugin_dirs: Vec::new(),
    })
}

fn resolve_server(
    file: &ServerFile,
    overrides: &Overrides,
    env: &BTreeMap<String, String>,
) -> Result<ServerSettings> {
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
    let kv_sweep_interval = match &file.kv_sweep_interval {
        Some(value) => parse_duration("server.kv_sweep_interval", value)?,
        None => DEFAULT_KV_SWEEP_INTERVAL,
    };
    if kv_sweep_interval.is_zero() {
        return Err(invalid(
            "`server.kv_sweep_interval` = `0s`: give the time between two sweeps of expired \
             key-values, like 30s (the default)",
        ));
    }
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
    Ok(ServerSettings {
        listen,
        body_limit,
        kv_sweep_interval,
        users,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::CONFIG_FILE;

    fn load(file: Option<&str>, env: &[(&str, &str)], overrides: Overrides) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let mut overrides = overrides;
        if let Some(text) = file {
            let path = dir.path().join(CONFIG_FILE);
            std::fs::write(&path, text).unwrap();
            overrides.config_file = Some(path);
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::load(&overrides, env)
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
        let file = "[backends.team]\nplugin = \"memory\"\npage_size = 10\nhistory = 3\ntimeout = \"5s\"\n\
                    instances = 2\n";
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
        assert_eq!(config.backend.grants.instances, Some(2));
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
                "[backends.a]\nplugin = \"local\"\ninstances = 0\n",
                "`instances` = `0` is not a whole number of at least 1",
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
                "[server]\nkv_sweep_interval = \"often\"\n",
                "`server.kv_sweep_interval` = `often` is not a duration",
            ),
            (
                "[server]\nkv_sweep_interval = \"0s\"\n",
                "kv_sweep_interval` = `0s`",
            ),
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
        let database = "[backends.p]\nplugin = \"postgres\"\nhost = \"db.internal\"\n";
        assert_eq!(hosts(database, &[]), ["postgres://db.internal:5432"]);
        let on_port = "[backends.p]\nplugin = \"postgres\"\nhost = \"127.0.0.1\"\nport = 6543\n";
        assert_eq!(hosts(on_port, &[]), ["postgres://127.0.0.1:6543"]);
        let nothing = "[backends.p]\nplugin = \"postgres\"\nhost = \"db\"\nallow_hosts = []\n";
        assert!(hosts(nothing, &[]).is_empty());
        let bad = "[backends.s]\nplugin = \"s3\"\nallow_hosts = [\"ftp://x\"]\n";
        let error = load(Some(bad), &[], Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(error.contains("`ftp://x` is not a host grant"), "{error}");
    }
}
