//! The plugins an operator can name: the built-ins, and every valid `.wasm` component dropped
//! into a plugin directory, each known by its `describe()` name. A file that cannot be loaded,
//! or whose name is taken, is reported with its path and the reason; the others still load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::builtin;
use crate::engine::Runtime;
use crate::error::{Error, Result};
use crate::plugin::{Plugin, PluginSource};

/// A plugin file that was not made available, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Refused {
    /// The file.
    pub path: PathBuf,
    /// Why it was refused.
    pub reason: String,
}

/// Built-in and discovered plugins by name.
#[derive(Debug, Default)]
pub struct Catalog {
    plugins: BTreeMap<String, Plugin>,
    /// Files in the plugin directories that were refused.
    pub refused: Vec<Refused>,
}

impl Catalog {
    /// Loads the built-ins and every `*.wasm` in `dirs` (missing directories are skipped).
    pub async fn discover(runtime: &Runtime, dirs: &[PathBuf]) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        for name in builtin::names() {
            let plugin = Plugin::builtin(runtime, name).await?;
            catalog.plugins.insert(plugin.name().to_string(), plugin);
        }
        for dir in dirs {
            for path in wasm_files(dir) {
                match Plugin::from_file(runtime, &path).await {
                    Ok(plugin) => catalog.add(plugin, path),
                    Err(e) => catalog.refused.push(Refused {
                        reason: e.to_string(),
                        path,
                    }),
                }
            }
        }
        Ok(catalog)
    }

    fn add(&mut self, plugin: Plugin, path: PathBuf) {
        match self.plugins.get(plugin.name()) {
            Some(taken) => {
                let reason = format!(
                    "its name `{}` is taken by {}; rename one of them (the name comes from the \
                     plugin's describe())",
                    plugin.name(),
                    match taken.source() {
                        PluginSource::BuiltIn(_) => "the built-in plugin of that name".to_string(),
                        PluginSource::File(other) => other.display().to_string(),
                    }
                );
                self.refused.push(Refused { path, reason });
            }
            None => {
                self.plugins.insert(plugin.name().to_string(), plugin);
            }
        }
    }

    /// The plugin of that name.
    pub fn get(&self, name: &str) -> Result<Plugin> {
        if let Some(plugin) = self.plugins.get(name) {
            return Ok(plugin.clone());
        }
        let refused = self
            .refused
            .iter()
            .map(|r| format!("; {} was refused: {}", r.path.display(), r.reason))
            .collect::<String>();
        Err(Error::Load {
            source_name: format!("`{name}`"),
            reason: format!(
                "there is no plugin of that name; available: {}{refused}",
                self.plugins.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    /// All available plugins, by name.
    pub fn plugins(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.values()
    }
}

fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    files.sort();
    files
}
