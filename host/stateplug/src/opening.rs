//! Opening what the configuration names: settings → plugin (built-in, drop-in or file, pinned
//! by SHA-256 when asked) → its configuration checked against `describe()` → a sandboxed
//! backend → the workspaces on it.

use stateplug_runtime::catalog::Catalog;
use stateplug_runtime::{Backend, Plugin, PluginMetadata, Runtime, builtin};
use stateplug_state::Workspaces;

use crate::config::{BackendSettings, PluginRef};

/// Why a configured backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The plugin binary is not the one the configuration pins.
    #[error(
        "cannot load plugin {source_name}: its SHA-256 is {actual}, but backend `{backend}` \
         pins {pinned}; install the pinned build or update `sha256`"
    )]
    NotPinned {
        /// Where the binary came from.
        source_name: String,
        /// Its digest.
        actual: String,
        /// The configured digest.
        pinned: String,
        /// The backend that pins it.
        backend: String,
    },
    /// The plugin settings do not fit what the plugin's `describe()` declares.
    #[error("plugin `{plugin}`: invalid configuration: backend `{backend}`: {message}")]
    PluginConfig {
        /// The plugin's name.
        plugin: String,
        /// The backend.
        backend: String,
        /// Which key, and what is expected.
        message: String,
    },
    /// Loading or opening in the runtime failed.
    #[error(transparent)]
    Runtime(#[from] stateplug_runtime::Error),
}

/// The workspaces of an opened backend: what the server and the CLI work on. Its
/// [`audit`](Workspaces::audit) is the backend's audit trail: record a change with
/// `workspaces.audit().record(&event).await` once it is made, which never fails the change (a
/// failed recording is logged at warn, and the change stands).
pub type BackendWorkspaces = Workspaces<Backend>;

/// The audit trail of an opened backend.
pub type BackendAudit = stateplug_state::Audit<Backend>;

/// The state layer's error over a plugin backend.
pub type StateError = stateplug_state::StateError<Backend>;

impl BackendSettings {
    /// Opens the backend's workspaces.
    pub async fn open_workspaces(&self, runtime: &Runtime) -> Result<BackendWorkspaces, Error> {
        let backend = self.open(runtime).await?;
        Ok(Workspaces::new(backend, self.state.clone()))
    }

    /// Loads the plugin, checks the plugin configuration against its `describe()` (unknown
    /// and missing keys are refused by name), and opens the backend.
    pub async fn open(&self, runtime: &Runtime) -> Result<Backend, Error> {
        let plugin = self.load_plugin(runtime).await?;
        self.check_plugin_config(plugin.metadata())?;
        let (config, grants) = (self.plugin_config.clone(), self.grants.clone());
        Ok(plugin.open_named(&self.name, config, grants).await?)
    }

    /// Loads the plugin, refusing any binary other than the pinned one when `sha256` is set.
    pub async fn load_plugin(&self, runtime: &Runtime) -> Result<Plugin, Error> {
        let plugin = match &self.plugin {
            PluginRef::Named(name) if builtin::names().contains(&name.as_str()) => {
                Plugin::builtin(runtime, name).await?
            }
            PluginRef::Named(name) => Catalog::discover(runtime, &self.plugin_dirs)
                .await?
                .get(name)?,
            PluginRef::File(path) => Plugin::from_file(runtime, path).await?,
        };
        match &self.sha256 {
            Some(pinned) if pinned != plugin.sha256() => Err(Error::NotPinned {
                source_name: plugin.source().to_string(),
                actual: plugin.sha256().to_string(),
                pinned: pinned.clone(),
                backend: self.name.clone(),
            }),
            _ => Ok(plugin),
        }
    }

    /// Refuses configuration the plugin does not understand, naming the key.
    pub fn check_plugin_config(&self, metadata: &PluginMetadata) -> Result<(), Error> {
        stateplug_sdk::Config::new(&metadata.config, self.plugin_config.clone())
            .map(|_| ())
            .map_err(|e| Error::PluginConfig {
                plugin: metadata.name.clone(),
                backend: self.name.clone(),
                message: e
                    .to_string()
                    .trim_start_matches("invalid configuration: ")
                    .to_string(),
            })
    }
}
