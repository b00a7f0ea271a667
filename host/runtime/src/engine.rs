//! The wasmtime engine shared by every plugin: its settings, the epoch clock that enforces
//! per-call deadlines, the linker, and the compiled components of this process (backed by the
//! disk cache of `cache.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{Result, host_error};
use crate::store_data::StoreData;

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled plugins are cached; `None` compiles on every start.
    /// Default: `$STATEPLUG_CACHE_DIR`, else `$XDG_CACHE_HOME/stateplug/compiled`, else
    /// `~/.cache/stateplug/compiled`.
    pub cache_dir: Option<PathBuf>,
    /// Plugin instances that can exist at once, across all backends and their pools, with the
    /// pooling allocator (faster instantiation, memory reserved up front); `None` allocates on
    /// demand without a limit.
    pub pool_size: Option<u32>,
}

/// Instance slots of the default runtime: 100 backends of a network plugin with their default
/// pools (16 each) and room for loading plugins. A slot reserves address space, not memory:
/// about 4 GiB of it per linear memory (two per instance), 16 TiB in all of the 128 TiB a
/// 64-bit process has; memory is used only by the instances that run.
pub const DEFAULT_POOL_SIZE: u32 = 2048;

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: default_cache_dir(),
            pool_size: Some(DEFAULT_POOL_SIZE),
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
    linker: Linker<StoreData>,
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
        let linker = crate::linker::new(&engine)?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        crate::epoch::spawn_ticker(engine.clone(), stop_ticker.clone());
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

    pub(crate) fn linker(&self) -> &Linker<StoreData> {
        &self.inner.linker
    }

    /// Compiles a component, or loads it from the cache when this exact binary was compiled
    /// before by an engine with the same settings. `digest` is the binary's SHA-256. The error
    /// is the compiler's reason.
    pub(crate) fn compile(&self, wasm: &[u8], digest: &str) -> Result<Component, String> {
        let compiled = || {
            self.inner
                .compiled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        if let Some(component) = compiled().get(digest) {
            return Ok(component.clone());
        }
        let component = match &self.inner.cache_dir {
            Some(dir) => crate::cache::compile_or_load(&self.inner.engine, dir, wasm, digest)?,
            None => crate::cache::compile(&self.inner.engine, wasm)?,
        };
        compiled().insert(digest.to_string(), component.clone());
        Ok(component)
    }
}
