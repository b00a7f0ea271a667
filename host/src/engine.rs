//! The wasmtime engine shared by every plugin: its settings, the epoch clock that enforces
//! per-call deadlines, and the on-disk cache of compiled plugins.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::bindings;
use crate::error::{Error, Result, chain};
use crate::sandbox::StoreState;

/// Compiled plugins kept on disk; the least recently used beyond this are removed.
const CACHE_ENTRIES: usize = 32;

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled plugins are cached; `None` compiles on every start.
    /// Default: `$STATEPLUG_CACHE_DIR`, else `$XDG_CACHE_HOME/stateplug/compiled`, else
    /// `~/.cache/stateplug/compiled`.
    pub cache_dir: Option<PathBuf>,
    /// Backends that can be open at once with the pooling allocator (faster instantiation,
    /// memory reserved up front); `None` allocates on demand without a limit.
    pub pool_size: Option<u32>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: default_cache_dir(),
            pool_size: Some(1000),
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("STATEPLUG_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    Some(base.join("stateplug").join("compiled"))
}

/// The engine, linker and cache that plugins are compiled and run with. Cheap to clone; one
/// per process is enough.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<StoreState>,
    cache_dir: Option<PathBuf>,
    /// Components of this process by the wasm's digest: each plugin is compiled (or read from
    /// the disk cache) once per process.
    compiled: std::sync::Mutex<std::collections::HashMap<String, Component>>,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// A runtime with the default options.
    pub fn new() -> Result<Runtime> {
        Runtime::with_options(RuntimeOptions::default())
    }

    /// A runtime with the given options.
    pub fn with_options(options: RuntimeOptions) -> Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Deadlines: the guest checks the epoch at loop heads and function entries.
        config.epoch_interruption(true);
        // Plugins use plain (WASIp2) calls; without WASIp3 machinery calls are ~3x cheaper.
        config.concurrency_support(false);
        // Operators read trap messages; wasm backtraces of a stripped plugin only add noise.
        config.wasm_backtrace_max_frames(None);
        if let Some(size) = options.pool_size {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(size)
                // A Rust wasip2 component has a handful of core instances and tables.
                .total_core_instances(size * 8)
                .total_memories(size * 2)
                .total_tables(size * 4)
                .total_stacks(size)
                .max_memory_size(4 << 30);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| host_error("creating the engine", &e))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| host_error("linking WASI", &e))?;
        // Always linked, so a plugin that imports HTTP loads; without a grant every request is
        // refused by the policy hook (network.rs).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| host_error("linking wasi-http", &e))?;
        bindings::add_host_to_linker(&mut linker)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), stop_ticker.clone());
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache_dir: options.cache_dir,
                compiled: Default::default(),
                stop_ticker,
            }),
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<StoreState> {
        &self.inner.linker
    }

    /// Compiles a component, or loads it from the cache when this exact binary was compiled
    /// before by an engine with the same settings. `digest` is the binary's SHA-256.
    pub(crate) fn compile(&self, wasm: &[u8], digest: &str) -> Result<Component> {
        let compiled = || {
            self.inner
                .compiled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if let Some(component) = compiled().get(digest) {
            return Ok(component.clone());
        }
        let component = self.compile_or_load(wasm, digest)?;
        compiled().insert(digest.to_string(), component.clone());
        Ok(component)
    }

    fn compile_or_load(&self, wasm: &[u8], digest: &str) -> Result<Component> {
        let Some(dir) = &self.inner.cache_dir else {
            return self.compile_fresh(wasm);
        };
        let mut settings = DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut settings);
        let file = dir.join(format!("{digest}-{:016x}.cwasm", settings.finish()));
        if file.exists() {
            // Read, not mmapped (`deserialize_file`): plugin code loaded through the mmap ran
            // the s3 plugin's calls up to 2-3x slower (BENCHMARKS.md, Runtime).
            // SAFETY: the cache directory belongs to this user and holds only files this
            // function wrote from a successful compilation; wasmtime also checks that the file
            // matches this engine's version and settings and refuses it otherwise.
            let loaded = std::fs::read(&file)
                .map_err(wasmtime::Error::from)
                .and_then(|bytes| unsafe { Component::deserialize(&self.inner.engine, &bytes) });
            match loaded {
                Ok(component) => {
                    // The modification time orders the entries for pruning: mark it used.
                    let _ = std::fs::File::options()
                        .append(true)
                        .open(&file)
                        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
                    return Ok(component);
                }
                Err(e) => tracing::warn!(
                    "ignoring unusable compiled cache {}: {}",
                    file.display(),
                    chain(&e)
                ),
            }
        }
        let component = self.compile_fresh(wasm)?;
        if let Err(e) = store_in_cache(&component, dir, &file) {
            tracing::warn!(
                "could not cache compiled plugin in {}: {e}; it will be compiled again next time",
                dir.display()
            );
        }
        Ok(component)
    }

    fn compile_fresh(&self, wasm: &[u8]) -> Result<Component> {
        Component::from_binary(&self.inner.engine, wasm).map_err(|e| Error::Load {
            source_name: String::new(),
            reason: chain(&e),
        })
    }
}

/// Writes the compiled form atomically, so a concurrent reader never sees half a file.
fn store_in_cache(component: &Component, dir: &Path, file: &Path) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let temp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, file)?;
    prune_cache(dir);
    Ok(())
}

/// Keeps the [`CACHE_ENTRIES`] most recently used compiled plugins; every rebuild of a plugin
/// or of wasmtime would otherwise leave one more file behind forever.
fn prune_cache(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|ext| ext == "cwasm"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(CACHE_ENTRIES);
    for (_, old) in &files[..excess] {
        let _ = std::fs::remove_file(old);
    }
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    let weak = engine.weak();
    drop(engine);
    std::thread::Builder::new()
        .name("stateplug-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .ok();
}

pub(crate) fn host_error(doing: &str, err: &wasmtime::Error) -> Error {
    Error::Host(format!("{doing}: {}", chain(err)))
}
