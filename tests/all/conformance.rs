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

/// The local plugin on a pool of `instances`: the suite's racers (16 lockers, 16 writers)
/// run on different sandboxes sharing one directory.
async fn local_plugin_conforms_with(instances: usize) {
    let plugin = common::builtin("local").await;
    let dir = tempfile::tempdir().unwrap();
    let cases = AtomicUsize::new(0);
    let report = conformance::run(|| {
        let case_dir = dir
            .path()
            .join(cases.fetch_add(1, Ordering::Relaxed).to_string());
        let (config, mut grants) = common::local_setup(&case_dir);
        grants.instances = Some(instances);
        plugin.open(config, grants)
    })
    .await;
    common::assert_conforms(&format!("local on {instances} instances"), &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_conforms_on_one_instance() {
    local_plugin_conforms_with(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_plugin_conforms_on_eight_instances() {
    local_plugin_conforms_with(8).await;
}
