//! Loading plugins: checking the binary, compiling it (through the cache), asking it to
//! describe itself, and checking that it implements a contract this host supports.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use stateplug_sdk::text::untrusted;
use stateplug_sdk::{CONTRACT_VERSION, ConfigField};

use crate::bindings::{PluginPre, contract};
use crate::builtin;
use crate::crash::quote_output;
use crate::engine::Runtime;
use crate::error::{Error, Result, chain};
use crate::grants::Grants;
use crate::store_data::{Shared, StoreData, new_store};

/// What a plugin says about itself (its `describe()`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginMetadata {
    /// Unique short name.
    pub name: String,
    /// The plugin's version.
    pub version: String,
    /// The contract it implements, e.g. `stateplug:backend@0.1.0`.
    pub contract_version: String,
    /// One line for people.
    pub description: String,
    /// Configuration keys `open` understands.
    pub config: Vec<ConfigField>,
    /// Optional capabilities.
    pub features: Vec<String>,
}

/// The capabilities a plugin's imports ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// `wasi:filesystem`: needs a `dirs` grant to see anything.
    pub filesystem: bool,
    /// `wasi:http`: needs hosts granted.
    pub http: bool,
    /// `stateplug:backend/postgres`: needs a `postgres://HOST:PORT` grant.
    pub postgres: bool,
    /// `wasi:sockets`: never granted.
    pub sockets: bool,
    /// `wasi:cli/environment`: always empty.
    pub environment: bool,
}

/// Where a plugin's binary came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// Embedded in this binary.
    BuiltIn(&'static str),
    /// A `.wasm` file.
    File(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::BuiltIn(name) => write!(f, "built-in `{name}`"),
            PluginSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A compiled, described plugin, ready to open backends. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    runtime: Runtime,
    metadata: PluginMetadata,
    source: PluginSource,
    sha256: String,
    pre: PluginPre<StoreData>,
}

/// Header of a WebAssembly component (as opposed to a core module: version 1, layer 0).
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

impl Plugin {
    /// Loads one of the plugins embedded in this binary ([`builtin::names`]).
    pub async fn builtin(runtime: &Runtime, name: &str) -> Result<Plugin> {
        let (name, wasm) = builtin::find(name).ok_or_else(|| Error::Load {
            source_name: format!("`{name}`"),
            reason: format!(
                "there is no built-in plugin of that name; built-ins are: {}",
                builtin::names().join(", ")
            ),
        })?;
        Plugin::from_bytes(runtime, wasm, PluginSource::BuiltIn(name)).await
    }

    /// Loads a plugin from a `.wasm` file.
    pub async fn from_file(runtime: &Runtime, path: &Path) -> Result<Plugin> {
        let wasm = tokio::fs::read(path).await.map_err(|e| Error::Load {
            source_name: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Plugin::from_bytes(runtime, &wasm, PluginSource::File(path.to_path_buf())).await
    }

    /// Loads a plugin from its bytes.
    pub async fn from_bytes(
        runtime: &Runtime,
        wasm: &[u8],
        source: PluginSource,
    ) -> Result<Plugin> {
        // The reasons quote the binary (import names, its contract section): untrusted text.
        let load_error = |reason: String| Error::Load {
            source_name: source.to_string(),
            reason: untrusted(&reason).into_owned(),
        };
        match wasm.get(..8) {
            Some(header) if header == COMPONENT_HEADER => {}
            Some(header) if header == MODULE_HEADER => {
                return Err(load_error(
                    "it is a core WebAssembly module, not a component; build the plugin with \
                     `cargo build --target wasm32-wasip2`"
                        .into(),
                ));
            }
            _ => return Err(load_error("it is not a WebAssembly component".into())),
        }
        // Checked before compiling, which takes seconds for a big plugin.
        if let Some(contract) = embedded_contract(wasm)
            && contract != CONTRACT_VERSION
        {
            return Err(load_error(format!(
                "built for {contract}, this host supports {CONTRACT_VERSION}"
            )));
        }
        let sha256 = hex::encode(Sha256::digest(wasm));
        // Compilation is CPU-bound (seconds for big plugins in debug builds): keep it off the
        // async workers.
        let component = {
            let runtime = runtime.clone();
            let wasm = wasm.to_vec();
            let digest = sha256.clone();
            tokio::task::spawn_blocking(move || runtime.compile(&wasm, &digest))
                .await
                .map_err(|e| load_error(format!("compilation task failed: {e}")))?
                .map_err(load_error)?
        };
        let instance_pre = runtime.linker().instantiate_pre(&component).map_err(|e| {
            load_error(format!(
                "it does not fit this host (it needs an import the host does not offer, or it \
                 was built for another world): {}",
                chain(&e)
            ))
        })?;
        let pre = PluginPre::new(instance_pre).map_err(|e| {
            load_error(format!(
                "it does not export `stateplug:backend/backend` as this host expects: {}",
                chain(&e)
            ))
        })?;
        let metadata = describe(&pre, &source).await?;
        if metadata.contract_version != CONTRACT_VERSION {
            return Err(load_error(format!(
                "built for {}, this host supports {CONTRACT_VERSION}",
                metadata.contract_version
            )));
        }
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                runtime: runtime.clone(),
                metadata,
                source,
                sha256,
                pre,
            }),
        })
    }

    /// The plugin's own description.
    pub fn metadata(&self) -> &PluginMetadata {
        &self.inner.metadata
    }

    /// The plugin's name (from its description).
    pub fn name(&self) -> &str {
        &self.inner.metadata.name
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &PluginSource {
        &self.inner.source
    }

    /// SHA-256 of the binary, hex.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    /// Whether the plugin keeps its data inside its instance (`describe()` declares
    /// [`SINGLE_INSTANCE`](stateplug_sdk::SINGLE_INSTANCE)): its backends run one instance.
    pub fn single_instance(&self) -> bool {
        let features = &self.inner.metadata.features;
        features.iter().any(|f| f == stateplug_sdk::SINGLE_INSTANCE)
    }

    /// The interfaces the plugin imports (which WASI capabilities it would use).
    pub fn imports(&self) -> Vec<String> {
        let engine = self.inner.runtime.engine();
        self.inner
            .pre
            .instance_pre()
            .component()
            .component_type()
            .imports(engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Which sandboxed capabilities the plugin would use, from its imports. A capability the
    /// operator does not grant still links; using it fails with `denied` or finds nothing.
    pub fn capabilities(&self) -> Capabilities {
        let imports = self.imports();
        let uses = |prefix: &str| imports.iter().any(|i| i.starts_with(prefix));
        Capabilities {
            filesystem: uses("wasi:filesystem/"),
            http: uses("wasi:http/"),
            postgres: uses("stateplug:backend/postgres"),
            sockets: uses("wasi:sockets/"),
            environment: uses("wasi:cli/environment"),
        }
    }

    pub(crate) fn pre(&self) -> &PluginPre<StoreData> {
        &self.inner.pre
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name())
            .field("source", &self.source())
            .field("sha256", &self.sha256())
            .finish()
    }
}

/// The contract a plugin built with the SDK declares in its custom section (searched in the
/// component's nested modules too).
fn embedded_contract(wasm: &[u8]) -> Option<String> {
    wasmparser::Parser::new(0)
        .parse_all(wasm)
        .find_map(|payload| match payload {
            Ok(wasmparser::Payload::CustomSection(section))
                if section.name() == stateplug_sdk::CONTRACT_SECTION =>
            {
                Some(String::from_utf8_lossy(section.data()).into_owned())
            }
            _ => None,
        })
}

/// Calls `describe()` in a throwaway instance with no grants and small limits.
async fn describe(pre: &PluginPre<StoreData>, source: &PluginSource) -> Result<PluginMetadata> {
    let grants = Grants {
        memory: 64 << 20,
        timeout: std::time::Duration::from_secs(10),
        ..Grants::default()
    };
    let failed = |what: &str, e: &wasmtime::Error, output: String| Error::Load {
        source_name: source.to_string(),
        reason: format!("{what}: {}{}", untrusted(&chain(e)), quote_output(&output)),
    };
    let shared = Shared::alone(&grants, "(loading)");
    let mut store = new_store(pre.engine(), &grants, "(loading)", shared)?;
    let output = store.data().output.clone();
    let instance = pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| failed("instantiating it failed", &e, output.take()))?;
    let m: contract::Metadata = instance
        .stateplug_backend_backend()
        .call_describe(&mut store)
        .await
        .map_err(|e| failed("its describe() failed", &e, output.take()))?;
    // Shown by `plugins list` / `inspect` and in every log line and error about the plugin.
    let text = |s: String| untrusted(&s).into_owned();
    Ok(PluginMetadata {
        name: text(m.name),
        version: text(m.version),
        contract_version: text(m.contract_version),
        description: text(m.description),
        config: m
            .config
            .into_iter()
            .map(|f| ConfigField {
                name: text(f.name),
                description: text(f.description),
                required: f.required,
                secret: f.secret,
                default: f.default.map(text),
            })
            .collect(),
        features: m.features.into_iter().map(text).collect(),
    })
}
