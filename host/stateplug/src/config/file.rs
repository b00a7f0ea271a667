//! The config file: its schema (unknown keys are refused by name) and where it is found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CONFIG_FILE, Result, invalid};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) default: Option<String>,
    pub(super) plugin_dir: Option<toml::Value>,
    #[serde(default)]
    pub(super) backends: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pub(super) server: ServerFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    pub(super) listen: Option<String>,
    pub(super) body_limit: Option<toml::Value>,
    pub(super) kv_sweep_interval: Option<toml::Value>,
    pub(super) audit_retention: Option<toml::Value>,
    pub(super) metrics_listen: Option<String>,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) client_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) users: BTreeMap<String, UserFile>,
    #[serde(default)]
    pub(super) tokens: BTreeMap<String, TokenFile>,
    pub(super) oidc: Option<OidcFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcFile {
    pub(super) issuer: String,
    /// One audience or a list.
    pub(super) audience: toml::Value,
    pub(super) jwks_file: Option<PathBuf>,
    pub(super) jwks_url: Option<String>,
    pub(super) name_claim: Option<String>,
    #[serde(default)]
    pub(super) rules: Vec<ClaimRuleFile>,
}

/// `{ claims = { project = "web" }, permissions = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClaimRuleFile {
    #[serde(default)]
    pub(super) claims: BTreeMap<String, String>,
    pub(super) permissions: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserFile {
    pub(super) password: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) permissions: Option<Vec<RuleFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenFile {
    pub(super) token: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) permissions: Option<Vec<RuleFile>>,
}

/// `{ workspaces = "dev-*", allow = ["read", "write"] }` (or `objects = ...`, `kv = ...`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub(super) workspaces: Option<String>,
    pub(super) objects: Option<String>,
    pub(super) kv: Option<String>,
    pub(super) allow: Vec<String>,
}

/// The config file in the current directory or the nearest parent that has one.
pub(super) fn find() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|dir| dir.join(CONFIG_FILE))
        .find(|path| path.is_file())
}

/// Reads and parses a config file; returns it with its directory, which relative paths in it
/// are relative to.
pub(super) fn read(path: &Path) -> Result<(FileConfig, PathBuf)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    let parsed: FileConfig =
        toml::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parsed, dir))
}
