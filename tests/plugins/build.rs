//! Builds the test-only plugins as wasm32-wasip2 components for the tests to load.

use std::path::PathBuf;

use stateplug_guest_build::{Guest, build};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("tests/plugins sits in the workspace");
    let out_dir = build(
        workspace,
        &[
            Guest {
                package: "stateplug-test-hostile",
                dir: "tests/plugins/hostile",
                file: "hostile.wasm",
            },
            Guest {
                package: "stateplug-test-misfit",
                dir: "tests/plugins/misfit",
                file: "misfit.wasm",
            },
            Guest {
                package: "stateplug-test-broken-describe",
                dir: "tests/plugins/broken-describe",
                file: "broken-describe.wasm",
            },
            Guest {
                package: "stateplug-test-torn-write",
                dir: "tests/plugins/torn-write",
                file: "torn-write.wasm",
            },
        ],
    );
    println!(
        "cargo:rustc-env=STATEPLUG_TEST_PLUGIN_DIR={}",
        out_dir.display()
    );
}
