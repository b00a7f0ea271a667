//! The disk cache of compiled plugins: compiling a big plugin takes seconds, loading its
//! compiled form milliseconds. Entries are keyed by the binary's digest and the engine's
//! settings, written atomically, and pruned to the most recently used.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::chain;

/// Compiled plugins kept on disk; the least recently used beyond this are removed.
const CACHE_ENTRIES: usize = 32;

/// Loads the compiled form of `wasm` (SHA-256 `digest`) from `dir`, or compiles it and stores
/// it there. A cache that cannot be read or written is logged and bypassed.
pub(crate) fn compile_or_load(
    engine: &Engine,
    dir: &Path,
    wasm: &[u8],
    digest: &str,
) -> Result<Component, String> {
    let mut settings = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut settings);
    let file = dir.join(format!("{digest}-{:016x}.cwasm", settings.finish()));
    if file.exists() {
        // Read, not mmapped (`deserialize_file`): plugin code loaded through the mmap ran
        // the s3 plugin's calls up to 2-3x slower (BENCHMARKS.md, Runtime).
        // SAFETY: the cache directory belongs to this user and holds only files this
        // function wrote from a successful compilation; wasmtime also checks that the file
        // matches this engine's version and settings and refuses it otherwise.
        let loaded = std::fs::read(&file)
            .map_err(wasmtime::Error::from)
            .and_then(|bytes| unsafe { Component::deserialize(engine, &bytes) });
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
    let component = compile(engine, wasm)?;
    if let Err(e) = store_in_cache(&component, dir, &file) {
        tracing::warn!(
            "could not cache compiled plugin in {}: {e}; it will be compiled again next time",
            dir.display()
        );
    }
    Ok(component)
}

/// Compiles `wasm`; the error is the compiler's reason.
pub(crate) fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, String> {
    Component::from_binary(engine, wasm).map_err(|e| chain(&e))
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
