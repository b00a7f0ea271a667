//! Where the tests find the plugins built only for them (`tests/plugins/<name>/`): attacks
//! on the sandbox (`hostile`), contract misfits (`misfit`, `broken-describe`) and a plugin
//! that tears its writes (`torn-write`).

use std::path::{Path, PathBuf};

/// The built component of test plugin `name` (e.g. `hostile`).
pub fn path(name: &str) -> PathBuf {
    Path::new(env!("STATEPLUG_TEST_PLUGIN_DIR")).join(format!("{name}.wasm"))
}
