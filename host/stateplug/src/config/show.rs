//! The resolved configuration as TOML, for `config show`, with secrets masked.

use stateplug_runtime::PluginMetadata;

use super::{BackendSettings, PluginRef};

impl BackendSettings {
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
        if let Some(total) = self.grants.memory_total {
            table.insert("memory_total".into(), format!("{}MiB", total >> 20).into());
        }
        if let Some(instances) = self.grants.instances {
            table.insert("instances".into(), (instances as i64).into());
        }
        table.insert(
            "max_connections".into(),
            (self.grants.max_connections as i64).into(),
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
