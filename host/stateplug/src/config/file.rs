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
    #[serde(default)]
    pub(super) users: BTreeMap<String, UserFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserFile {
    pub(super) password: Option<String>,
    pub(super) password_env: Option<String>,
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
