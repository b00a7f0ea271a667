//! Loading plugins: the compiled cache, and clear refusals of files that are not plugins.

use crate::common;

use stateplug_runtime::{Error, Plugin, PluginSource, Runtime, RuntimeOptions};

fn runtime_with_cache(dir: &std::path::Path) -> Runtime {
    Runtime::with_options(RuntimeOptions {
        cache_dir: Some(dir.to_path_buf()),
        ..RuntimeOptions::default()
    })
    .unwrap()
}

fn cached_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_code_is_cached_and_reused_across_runtimes() {
    let cache = tempfile::tempdir().unwrap();
    let first = Plugin::builtin(&runtime_with_cache(cache.path()), "memory")
        .await
        .unwrap();
    let files = cached_files(cache.path());
    assert_eq!(files.len(), 1, "one compiled file per plugin: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(first.sha256()),
        "keyed by the wasm's digest: {name}"
    );
    // A recompilation would write a new file (temp + rename): a new inode.
    use std::os::unix::fs::MetadataExt;
    let written = std::fs::metadata(&files[0]).unwrap().ino();

    // A new runtime (as after a restart) loads the cached code instead of compiling again.
    let second = Plugin::builtin(&runtime_with_cache(cache.path()), "memory")
        .await
        .unwrap();
    assert_eq!(second.metadata(), first.metadata());
    assert_eq!(cached_files(cache.path()), files);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().ino(),
        written,
        "recompiled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_cache_entry_is_replaced() {
    let cache = tempfile::tempdir().unwrap();
    Plugin::builtin(&runtime_with_cache(cache.path()), "memory")
        .await
        .unwrap();
    let file = cached_files(cache.path()).remove(0);
    std::fs::write(&file, b"garbage").unwrap();
    let plugin = Plugin::builtin(&runtime_with_cache(cache.path()), "memory")
        .await
        .unwrap();
    let backend = plugin.open(vec![], Default::default()).await.unwrap();
    assert!(!backend.exists("x").await.unwrap());
    assert_ne!(
        std::fs::read(&file).unwrap(),
        b"garbage",
        "the bad entry was not rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_plugins_are_refused_with_the_reason() {
    let runtime = common::runtime();
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let cases: [(&[u8], &str); 3] = [
        (
            &core_module,
            "is a core WebAssembly module, not a component; build the plugin with `cargo build --target wasm32-wasip2`",
        ),
        (b"#!/bin/sh\necho hi\n", "it is not a WebAssembly component"),
        (
            b"\0asm\x0d\0\x01\0\xff\xff",
            "cannot load plugin broken.wasm",
        ),
    ];
    for (bytes, expected) in cases {
        let source = PluginSource::File("broken.wasm".into());
        match Plugin::from_bytes(runtime, bytes, source).await {
            Err(e @ Error::Load { .. }) => {
                let message = e.to_string();
                assert!(message.contains(expected), "{message}");
                // Said once: a compile failure used to read "cannot load plugin X: cannot load
                // plugin : ...".
                assert_eq!(
                    message.matches("cannot load plugin").count(),
                    1,
                    "{message}"
                );
            }
            other => panic!("{expected}: {other:?}"),
        }
    }
    let missing = Plugin::from_file(runtime, std::path::Path::new("/no/such/plugin.wasm")).await;
    let message = missing.unwrap_err().to_string();
    assert!(
        message.contains("/no/such/plugin.wasm") && message.contains("No such file"),
        "{message}"
    );
    let unknown = Plugin::builtin(runtime, "s4")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("built-ins are: memory, local"),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_for_another_contract_is_refused_before_compiling() {
    let wasm = std::fs::read(common::test_plugin_path("hostile")).unwrap();
    let contract = stateplug_runtime::CONTRACT_VERSION.as_bytes();
    let section = wasmparser::Parser::new(0)
        .parse_all(&wasm)
        .find_map(|payload| match payload {
            Ok(wasmparser::Payload::CustomSection(s))
                if s.name() == stateplug_sdk::CONTRACT_SECTION =>
            {
                Some(s.data().to_vec())
            }
            _ => None,
        });
    assert_eq!(
        section.as_deref(),
        Some(contract),
        "the SDK embeds the contract section"
    );
    // The same plugin, claiming a contract from the future everywhere it names one.
    let mut future = Vec::with_capacity(wasm.len());
    let mut rest = &wasm[..];
    while let Some(at) = rest.windows(contract.len()).position(|w| w == contract) {
        future.extend_from_slice(&rest[..at]);
        future.extend_from_slice(b"stateplug:backend@9.9.9");
        rest = &rest[at + contract.len()..];
    }
    future.extend_from_slice(rest);
    let source = PluginSource::File("future.wasm".into());
    let error = Plugin::from_bytes(common::runtime(), &future, source)
        .await
        .unwrap_err();
    let expected = "cannot load plugin future.wasm: built for stateplug:backend@9.9.9, this host supports stateplug:backend@0.1.0";
    assert_eq!(error.to_string(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_of_another_world_or_a_crashing_describe_is_refused() {
    let misfit = Plugin::from_file(common::runtime(), &common::test_plugin_path("misfit")).await;
    let message = misfit.unwrap_err().to_string();
    assert!(
        message.contains("misfit.wasm") && message.contains("stateplug:backend/backend"),
        "{message}"
    );

    let path = common::test_plugin_path("broken-describe");
    let broken = Plugin::from_file(common::runtime(), &path).await;
    let message = broken.unwrap_err().to_string();
    assert!(
        message.contains("broken-describe.wasm: its describe() failed"),
        "{message}"
    );
    assert!(
        message.contains("describe() of this plugin always panics"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compiled_cache_keeps_only_recent_entries() {
    let cache = tempfile::tempdir().unwrap();
    // Leftovers of 40 older builds, oldest first.
    for i in 0..40u64 {
        let file = cache
            .path()
            .join(format!("{i:064x}-0000000000000000.cwasm"));
        std::fs::write(&file, b"old build").unwrap();
        let age = std::time::Duration::from_secs(86_400 * (41 - i));
        let when = std::time::SystemTime::now() - age;
        std::fs::File::options()
            .append(true)
            .open(&file)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    let plugin = Plugin::builtin(&runtime_with_cache(cache.path()), "memory")
        .await
        .unwrap();
    let files = cached_files(cache.path());
    assert_eq!(files.len(), 32, "the cache is pruned to its size");
    assert!(files.iter().any(|f| {
        f.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(plugin.sha256())
    }));
    assert!(
        !cache
            .path()
            .join(format!("{:064x}-0000000000000000.cwasm", 0))
            .exists(),
        "the oldest went first"
    );
}
