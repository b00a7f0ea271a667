//! Builds the test-only plugins as wasm32-wasip2 components for the tests to load.

use stateplug_guest_build::{Guest, build};

fn main() {
    let out_dir = build(&[
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
    ]);
    println!(
        "cargo:rustc-env=STATEPLUG_TEST_PLUGIN_DIR={}",
        out_dir.display()
    );
}
