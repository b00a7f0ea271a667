//! Builds the plugins in this repository as wasm32-wasip2 components, so the host can embed
//! the built-in ones (no set-up step, no committed `.wasm`) and the tests can load the hostile
//! one. One nested cargo call builds them all, sharing the SDK's compilation.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

/// (crate, its directory, file name in OUT_DIR). Built-ins are embedded by `builtin.rs`;
/// test plugins are only copied, for the tests to load.
const GUESTS: &[(&str, &str, &str)] = &[
    ("stateplug-plugin-memory", "plugins/memory", "memory.wasm"),
    ("stateplug-plugin-local", "plugins/local", "local.wasm"),
    ("stateplug-plugin-s3", "plugins/s3", "s3.wasm"),
    (
        "stateplug-test-hostile",
        "tests/plugins/hostile",
        "hostile.wasm",
    ),
    (
        "stateplug-test-misfit",
        "tests/plugins/misfit",
        "misfit.wasm",
    ),
    (
        "stateplug-test-broken-describe",
        "tests/plugins/broken-describe",
        "broken-describe.wasm",
    ),
    (
        "stateplug-test-torn-write",
        "tests/plugins/torn-write",
        "torn-write.wasm",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ sits in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    // Its own target dir: sharing the outer one deadlocks on cargo's build lock.
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("guests");

    check_target_installed();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--locked",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (krate, _, _) in GUESTS {
        command.args(["-p", krate]);
    }
    // wasmtime runs wasm SIMD natively; it lets hashing and copies in the guests vectorize.
    command.env(
        "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
        "-Ctarget-feature=+simd128",
    );
    // The outer build's flags and wrappers are for the host, not for wasm guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the plugins: {e}"));
    if !status.success() {
        panic!("building the plugins for {TARGET} failed (see the errors above)");
    }

    let built = target_dir.join(TARGET).join(PROFILE);
    for (krate, dir, file) in GUESTS {
        let stem = krate.replace('-', "_");
        let wasm = built.join(format!("{stem}.wasm"));
        std::fs::copy(&wasm, out_dir.join(file))
            .unwrap_or_else(|e| panic!("copying {} failed: {e}", wasm.display()));
        rerun_if_sources_change(&built.join(format!("{stem}.d")));
        rerun_if_changed(&workspace.join(dir).join("Cargo.toml"));
    }
    // Where the tests find the test-only plugins.
    println!(
        "cargo:rustc-env=STATEPLUG_TEST_PLUGIN_DIR={}",
        out_dir.display()
    );
    rerun_if_changed(&workspace.join("sdk/Cargo.toml"));
    rerun_if_changed(&workspace.join("Cargo.lock"));
    rerun_if_changed(&workspace.join("wit"));
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// Stops with the command that fixes it when the wasm target is missing (rustup does not
/// install targets by itself on machines with `RUSTUP_AUTO_INSTALL=0`).
fn check_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let installed = sysroot
        .map(|root| Path::new(&root).join("lib/rustlib").join(TARGET).exists())
        .unwrap_or(false);
    if !installed {
        panic!(
            "\n\nThe Rust target {TARGET} is not installed; stateplug builds its plugins for it.\n\
             Run:  rustup target add {TARGET}\n\n"
        );
    }
}

/// The dep-info file of a guest lists every source it was built from, WIT files included.
fn rerun_if_sources_change(dep_info: &Path) {
    let Ok(text) = std::fs::read_to_string(dep_info) else {
        return;
    };
    let Some((_, deps)) = text.split_once(": ") else {
        return;
    };
    // Make-style: paths are separated by spaces, and spaces inside a path are escaped.
    for dep in deps.replace("\\ ", "\0").split_whitespace() {
        println!("cargo:rerun-if-changed={}", dep.replace('\0', " "));
    }
}
