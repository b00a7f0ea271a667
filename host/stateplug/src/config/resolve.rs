//! Resolving the configuration: which backend, and each of its settings from flags, the
//! environment, the file or the defaults, in that order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::JwkSet;
use stateplug_runtime::Grants;
use stateplug_state::{DEFAULT_AUDIT_RETENTION, DEFAULT_HISTORY, StateOptions};

use super::file::{self, FileConfig, OidcFile, RuleFile, ServerFile};
use super::values::{
    endpoint_grants, parse_allow_hosts, parse_dirs, parse_duration, parse_size, value_text,
};
use super::{
    BackendSettings, DEFAULT_BODY_LIMIT, DEFAULT_KV_SWEEP_INTERVAL, DEFAULT_LISTEN,
    DEFAULT_PLUGIN_DIR, Error, HOST_KEYS, IMPLICIT_BACKEND, IMPLICIT_DIR, Overrides, PluginRef,
    Result, ServerSettings, Settings, TlsSettings, invalid,
};
use crate::access::{
    ClaimRule, Grant, Jwks, Kind, OidcSettings, Pattern, Permission, Permissions, Principal, Rule,
    RuleTemplate, Secret, Via, fill_with,
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
        let server = resolve_server(&parsed.server, overrides, &env, &base_dir)?;
        // The CLI records its own changes too: it prunes to the server's retention.
        backend.state.audit_retention = server.audit_retention;
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
        audit_retention: DEFAULT_AUDIT_RETENTION,
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
    base_dir: &Path,
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
    let audit_retention = match &file.audit_retention {
        Some(value) => {
            let text = value_text("server.audit_retention", value)?;
            text.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                invalid(format!(
                    "`server.audit_retention` = `{text}` is not a whole number of at least 1: \
                     give how many audit events to keep per workspace, like 1000 (the default)"
                ))
            })?
        }
        None => DEFAULT_AUDIT_RETENTION,
    };
    let metrics_listen = match &file.metrics_listen {
        Some(text) => Some(parse_metrics_listen(text, listen)?),
        None => None,
    };
    let principals = principals(file, env, base_dir)?;
    let oidc = file
        .oidc
        .as_ref()
        .map(|oidc| resolve_oidc(oidc, base_dir))
        .transpose()?;
    let tls = resolve_tls(file, overrides, base_dir)?;
    Ok(ServerSettings {
        listen,
        body_limit,
        kv_sweep_interval,
        audit_retention,
        metrics_listen,
        principals,
        oidc,
        tls,
    })
}

/// `metrics_listen`: an address of its own, since both are bound.
fn parse_metrics_listen(text: &str, listen: SocketAddr) -> Result<SocketAddr> {
    let address: SocketAddr = text.parse().map_err(|_| {
        invalid(format!(
            "`server.metrics_listen` = `{text}` is not HOST:PORT like 127.0.0.1:9090"
        ))
    })?;
    if address == listen && address.port() != 0 {
        return Err(invalid(format!(
            "`server.metrics_listen` = `{text}` is also `listen`: give it another port, or \
             remove it to serve /metrics (with auth) on `listen` alone"
        )));
    }
    Ok(address)
}

/// `tls_cert`, `tls_key` and `client_ca`, each from its flag or else the file (whose paths are
/// relative to it). Only whether they fit together is checked here: `serve` reads the files
/// (server/tls.rs), so other commands never depend on them.
fn resolve_tls(
    file: &ServerFile,
    overrides: &Overrides,
    base_dir: &Path,
) -> Result<Option<TlsSettings>> {
    let pick = |name: &str, flag: &Option<PathBuf>, in_file: &Option<PathBuf>| {
        let (given, dir) = match (flag, in_file) {
            (Some(path), _) => (path, Path::new("")),
            (None, Some(path)) => (path, base_dir),
            (None, None) => return Ok(None),
        };
        if given.as_os_str().is_empty() {
            return Err(invalid(format!(
                "`server.{name}` is empty: give the path of a PEM file, or leave it out"
            )));
        }
        Ok(Some(dir.join(given)))
    };
    let cert = pick("tls_cert", &overrides.tls_cert, &file.tls_cert)?;
    let key = pick("tls_key", &overrides.tls_key, &file.tls_key)?;
    let client_ca = pick("client_ca", &overrides.client_ca, &file.client_ca)?;
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsSettings {
            cert,
            key,
            client_ca,
        })),
        (Some(_), None) => Err(invalid(
            "`server.tls_cert` (--tls-cert) is set but `server.tls_key` (--tls-key) is not: give \
             the PEM file of the certificate's private key too, or neither for plain HTTP",
        )),
        (None, Some(_)) => Err(invalid(
            "`server.tls_key` (--tls-key) is set but `server.tls_cert` (--tls-cert) is not: give \
             the PEM file of the certificate chain too, or neither for plain HTTP",
        )),
        (None, None) if client_ca.is_some() => Err(invalid(
            "`server.client_ca` (--client-ca) needs TLS: set `server.tls_cert` and \
             `server.tls_key` too (client certificates are checked in the TLS handshake)",
        )),
        (None, None) => Ok(None),
    }
}

/// The users and tokens of `[server.users]` and `[server.tokens]`.
fn principals(
    file: &ServerFile,
    env: &BTreeMap<String, String>,
    base_dir: &Path,
) -> Result<Vec<Principal>> {
    if let Some(name) = file
        .tokens
        .keys()
        .find(|name| file.users.contains_key(*name))
    {
        return Err(invalid(format!(
            "token `{name}` has the name of a user: give users and tokens different names"
        )));
    }
    let users = file.users.iter().map(|(name, user)| {
        let sources = Sources {
            value: user.password.as_ref(),
            var: user.password_env.as_ref(),
            file: user.password_file.as_ref(),
        };
        let permissions = user.permissions.as_deref();
        principal(name, Via::Password, &sources, permissions, env, base_dir)
    });
    let tokens = file.tokens.iter().map(|(name, token)| {
        let sources = Sources {
            value: token.token.as_ref(),
            var: token.token_env.as_ref(),
            file: token.token_file.as_ref(),
        };
        let permissions = token.permissions.as_deref();
        principal(name, Via::Token, &sources, permissions, env, base_dir)
    });
    users.chain(tokens).collect()
}

/// Where a user's password or a token comes from: `<key>`, `<key>_env` or `<key>_file`.
struct Sources<'a> {
    value: Option<&'a String>,
    var: Option<&'a String>,
    file: Option<&'a PathBuf>,
}

/// One user (`Via::Password`, key `password`) or token (`Via::Token`, key `token`).
fn principal(
    name: &str,
    via: Via,
    sources: &Sources<'_>,
    permissions: Option<&[RuleFile]>,
    env: &BTreeMap<String, String>,
    base_dir: &Path,
) -> Result<Principal> {
    let (what, key) = match via {
        Via::Token => (format!("token `{name}`"), "token"),
        _ => (format!("user `{name}`"), "password"),
    };
    let value = match (sources.value, sources.var, sources.file) {
        (Some(value), None, None) => value.clone(),
        (None, Some(var), None) => env.get(var).cloned().ok_or_else(|| {
            invalid(format!(
                "{what}: the variable {var} named by `{key}_env` is not set"
            ))
        })?,
        (None, None, Some(path)) => {
            let path = base_dir.join(path);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(format!(
                    "{what}: cannot read `{key}_file` {}: {e}",
                    path.display()
                ))
            })?;
            // Files written by `echo` or a secrets manager end in a newline.
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        _ => {
            return Err(invalid(format!(
                "{what}: give exactly one of `{key}`, `{key}_env`, `{key}_file`"
            )));
        }
    };
    let secret =
        Secret::new(&value).map_err(|reason| invalid(format!("{what}: `{key}` {reason}")))?;
    Ok(Principal {
        name: name.to_string(),
        via,
        secret,
        grant: grant(&what, permissions)?,
    })
}

/// What `permissions = [...]` allows; everything when it is not given.
fn grant(what: &str, rules: Option<&[RuleFile]>) -> Result<Grant> {
    let Some(rules) = rules else {
        return Ok(Grant::Everything);
    };
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let at = format!("{what}: permissions[{i}]");
            let (kind, pattern, allow) = rule_parts(&at, rule)?;
            let pattern =
                Pattern::new(pattern).map_err(|reason| invalid(format!("{at}: {reason}")))?;
            Ok(Rule {
                kind,
                pattern,
                allow,
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Grant::Rules)
}

/// The JWKS in a file.
fn read_jwks(path: &Path) -> Result<JwkSet> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "`server.oidc.jwks_file`: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let keys: JwkSet = serde_json::from_str(&text).map_err(|e| {
        invalid(format!(
            "`server.oidc.jwks_file` {} is not a JWKS ({e}): give the JSON the issuer serves \
             at its `jwks_uri`",
            path.display()
        ))
    })?;
    if keys.keys.is_empty() {
        return Err(invalid(format!(
            "`server.oidc.jwks_file` {} holds no keys",
            path.display()
        )));
    }
    Ok(keys)
}

/// A rule's target, pattern text and permissions, checked.
fn rule_parts<'a>(at: &str, rule: &'a RuleFile) -> Result<(Kind, &'a String, Permissions)> {
    let targets = [
        (Kind::Workspaces, &rule.workspaces),
        (Kind::Objects, &rule.objects),
        (Kind::Kv, &rule.kv),
    ];
    let mut given = targets
        .iter()
        .filter_map(|(kind, pattern)| Some((*kind, pattern.as_ref()?)));
    let (Some((kind, pattern)), None) = (given.next(), given.next()) else {
        return Err(invalid(format!(
            "{at}: give exactly one of `workspaces`, `objects` and `kv` (a pattern like \
             \"dev-*\")"
        )));
    };
    let allow = rule
        .allow
        .iter()
        .map(|name| {
            Permission::parse(name).ok_or_else(|| {
                invalid(format!(
                    "{at}: `{name}` is not a permission; use read, write, lock or admin"
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if allow.is_empty() {
        return Err(invalid(format!(
            "{at}: `allow` is empty: name what the rule allows (read, write, lock, admin)"
        )));
    }
    Ok((kind, pattern, Permissions::of(allow)))
}

/// `[server.oidc]`: the issuer, its keys from `jwks_file` (or where `jwks_url` says to fetch
/// them), and the claim rules.
fn resolve_oidc(file: &OidcFile, base_dir: &Path) -> Result<OidcSettings> {
    let audience = match &file.audience {
        toml::Value::String(one) => vec![one.clone()],
        toml::Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if audience.is_empty() || audience.iter().any(String::is_empty) {
        return Err(invalid(
            "`server.oidc.audience` must be the audience (`aud`) tokens are issued for, or a \
             list of them, like \"stateplug\"",
        ));
    }
    let jwks = match (&file.jwks_file, &file.jwks_url) {
        (Some(path), None) => Jwks::Keys(read_jwks(&base_dir.join(path))?),
        (None, Some(url)) if url.starts_with("https://") || url.starts_with("http://") => {
            Jwks::Url(url.clone())
        }
        (None, Some(url)) => {
            return Err(invalid(format!(
                "`server.oidc.jwks_url` = `{url}` is not an http(s) URL: give the issuer's \
                 `jwks_uri`, like https://gitlab.example.com/oauth/discovery/keys"
            )));
        }
        _ => {
            return Err(invalid(
                "`server.oidc`: give exactly one of `jwks_file` (the issuer's keys, a JWKS file) \
                 and `jwks_url` (where the issuer serves them)",
            ));
        }
    };
    let rules = file
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let at = format!("server.oidc.rules[{i}]");
            let claims = rule
                .claims
                .iter()
                .map(|(claim, pattern)| {
                    let pattern = Pattern::new(pattern)
                        .map_err(|reason| invalid(format!("{at}: claim `{claim}`: {reason}")))?;
                    Ok((claim.clone(), pattern))
                })
                .collect::<Result<Vec<_>>>()?;
            let permissions = rule
                .permissions
                .iter()
                .enumerate()
                .map(|(j, permission)| {
                    let at = format!("{at}: permissions[{j}]");
                    let (kind, pattern, allow) = rule_parts(&at, permission)?;
                    // Checked with every placeholder filled, as a token will fill them.
                    let placeholder = |_: &str| Some("x".to_string());
                    let filled = fill_with(pattern, placeholder).ok_or_else(|| {
                        invalid(format!("{at}: `{pattern}` has a `{{` without its `}}`"))
                    })?;
                    Pattern::new(&filled).map_err(|reason| invalid(format!("{at}: {reason}")))?;
                    Ok(RuleTemplate {
                        kind,
                        pattern: pattern.clone(),
                        allow,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ClaimRule {
                claims,
                permissions,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(OidcSettings {
        issuer: file.issuer.clone(),
        audience,
        jwks,
        name_claim: file.name_claim.clone().unwrap_or_else(|| "sub".into()),
        rules,
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
        assert_eq!(config.server.audit_retention, DEFAULT_AUDIT_RETENTION);
        assert_eq!(
            config.backend.state.audit_retention,
            DEFAULT_AUDIT_RETENTION
        );
    }

    /// The server's retention is the backend's too: the CLI prunes the trail alike.
    #[test]
    fn audit_retention_reaches_the_backend() {
        let file = "[backends.a]\nplugin = \"memory\"\n[server]\naudit_retention = 3\n";
        let config = load(Some(file), &[], Overrides::default()).unwrap();
        assert_eq!(config.server.audit_retention, 3);
        assert_eq!(config.backend.state.audit_retention, 3);
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
                "[server]\nmetrics_listen = \"localhost\"\n",
                "`server.metrics_listen` = `localhost` is not HOST:PORT",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:8080\"\nmetrics_listen = \"127.0.0.1:8080\"\n",
                "is also `listen`",
            ),
            (
                "[server]\nkv_sweep_interval = \"often\"\n",
                "`server.kv_sweep_interval` = `often` is not a duration",
            ),
            (
                "[server]\nkv_sweep_interval = \"0s\"\n",
                "kv_sweep_interval` = `0s`",
            ),
            (
                "[server]\naudit_retention = 0\n",
                "`server.audit_retention` = `0` is not a whole number of at least 1",
            ),
            (
                "[server]\naudit_retention = \"lots\"\n",
                "`server.audit_retention` = `lots` is not a whole number",
            ),
            (
                "[server.users.ci]\npassword_env = \"NOPE\"\n",
                "NOPE named by `password_env` is not set",
            ),
            (
                "[server]\ntls_cert = \"cert.pem\"\n",
                "`server.tls_cert` (--tls-cert) is set but `server.tls_key` (--tls-key) is not",
            ),
            (
                "[server]\ntls_key = \"key.pem\"\n",
                "`server.tls_key` (--tls-key) is set but `server.tls_cert` (--tls-cert) is not",
            ),
            (
                "[server]\nclient_ca = \"ca.pem\"\n",
                "`server.client_ca` (--client-ca) needs TLS",
            ),
            (
                "[server]\ntls_cert = \"\"\ntls_key = \"key.pem\"\n",
                "`server.tls_cert` is empty",
            ),
            ("[server]\ntls_cert = 1\n", "tls_cert"),
            (
                "[server.users.ci]\npassword = \"a\"\npassword_env = \"B\"\n",
                "user `ci`: give exactly one of `password`, `password_env`, `password_file`",
            ),
            (
                "[server.users.ci]\npassword = \"\"\n",
                "user `ci`: `password` is empty",
            ),
            (
                "[server.users.ci]\npassword = \"$argon2id$v=19$bad\"\n",
                "user `ci`: `password` looks like an argon2 hash but does not parse",
            ),
            (
                "[server.tokens.ci]\ntoken_file = \"missing.txt\"\n",
                "token `ci`: cannot read `token_file`",
            ),
            (
                "[server.users.ci]\npassword = \"a\"\n[server.tokens.ci]\ntoken = \"b\"\n",
                "token `ci` has the name of a user",
            ),
            (
                "[server.oidc]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"nope.json\"\n",
                "`server.oidc.jwks_file`: cannot read",
            ),
            (
                "[server.oidc]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"ftp://x\"\n",
                "`server.oidc.jwks_url` = `ftp://x` is not an http(s) URL",
            ),
            (
                "[server.oidc]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"https://x\"\n\
                 jwks_file = \"k.json\"\n",
                "give exactly one of `jwks_file`",
            ),
            (
                "[server.oidc]\nissuer = \"i\"\naudience = []\njwks_file = \"k.json\"\n",
                "`server.oidc.audience` must be the audience",
            ),
            (
                "[server.users.ci]\npassword = \"a\"\npermissions = [{ allow = [\"read\"] }]\n",
                "user `ci`: permissions[0]: give exactly one of `workspaces`, `objects` and `kv`",
            ),
            (
                "[server.users.ci]\npassword = \"a\"\n\
                 permissions = [{ workspaces = \"*\", allow = [\"rw\"] }]\n",
                "user `ci`: permissions[0]: `rw` is not a permission",
            ),
            (
                "[server.users.ci]\npassword = \"a\"\n\
                 permissions = [{ kv = \"a\", allow = [] }]\n",
                "`allow` is empty",
            ),
            (
                "[server.users.ci]\npassword = \"a\"\n\
                 permissions = [{ objects = \"[a\", allow = [\"read\"] }]\n",
                "user `ci`: permissions[0]: `[a` is not a pattern",
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
    fn tls_files_are_relative_to_the_config_file_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CONFIG_FILE);
        let text = "[server]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"tls/key.pem\"\n\
                    client_ca = \"/etc/ca.pem\"\n";
        std::fs::write(&path, text).unwrap();
        let overrides = Overrides {
            config_file: Some(path),
            ..Overrides::default()
        };
        let tls = Settings::load(&overrides, []).unwrap().server.tls.unwrap();
        assert_eq!(tls.cert, dir.path().join("tls/cert.pem"));
        assert_eq!(tls.key, dir.path().join("tls/key.pem"));
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/etc/ca.pem")));
        let flags = Overrides {
            tls_key: Some("other.pem".into()),
            ..overrides
        };
        let tls = Settings::load(&flags, []).unwrap().server.tls.unwrap();
        assert_eq!(
            tls.key,
            Path::new("other.pem"),
            "a flag's path stays relative to the cwd"
        );
        assert!(
            load(None, &[], Overrides::default())
                .unwrap()
                .server
                .tls
                .is_none()
        );
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
