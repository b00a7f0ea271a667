//! Shared set-up for the integration tests: one runtime per test process, plugins loaded
//! through the normal path (compiled cache included), fresh directories per test.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use stateplug::{DirGrant, Grants, Plugin, Runtime};

/// The process-wide runtime.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new().expect("runtime"))
}

/// A plugin built only for the tests (`tests/plugins/<name>`).
pub fn test_plugin_path(name: &str) -> PathBuf {
    Path::new(env!("STATEPLUG_TEST_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

/// Config and grants for the local plugin keeping its objects in `dir` (seen as `/data`).
pub fn local_setup(dir: &Path) -> (Vec<(String, String)>, Grants) {
    let grants = Grants {
        dirs: vec![DirGrant::read_write(dir)],
        ..Grants::default()
    };
    (Vec::new(), grants)
}

/// Loads a built-in plugin.
pub async fn builtin(name: &str) -> Plugin {
    Plugin::builtin(runtime(), name)
        .await
        .expect("built-in plugin loads")
}
