//! The conformance suite against every built-in plugin, loaded as real wasm components.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};

use stateplug_runtime::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_plugin_conforms() {
    let plugin = common::builtin("memory").await;
    let report = conformance::run(|| plugin.open(vec![], Default::default())).await;
    common::assert_conforms("memory", &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_conforms() {
    let plugin = common::builtin("local").await;
    let dir = tempfile::tempdir().unwrap();
    let cases = AtomicUsize::new(0);
    let report = conformance::run(|| {
        let case_dir = dir
            .path()
            .join(cases.fetch_add(1, Ordering::Relaxed).to_string());
        let (config, grants) = common::local_setup(&case_dir);
        plugin.open(config, grants)
    })
    .await;
    common::assert_conforms("local", &report);
}
