//! Builds plugins of this repository as wasm32-wasip2 components from a build script: the
//! runtime embeds the built-in ones, the tests load the test-only ones. One nested cargo call
//! per caller builds its set, in a target directory of its own (sharing the outer one
//! deadlocks on cargo's build lock), so the SDK is compiled once for all of them.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

/// One plugin to build: its package, its directory in the workspace, and the file name it is
/// copied to in the caller's `OUT_DIR`.
pub struct Guest {
    /// The cargo package.
    pub package: &'static str,
    /// Its directory, relative to the workspace root.
    pub dir: &'static str,
    /// The name of the built component in `OUT_DIR`.
    pub file: &'static str,
}

/// Builds `guests` and copies each to `OUT_DIR/<file>`; returns `OUT_DIR`. Stops the build,
/// naming the fix, when the wasm target is missing.
pub fn build(guests: &[Guest]) -> PathBuf {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    // The workspace root: the nearest directory above the caller with the lock file.
    let workspace = manifest_dir
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .expect("the caller is inside the workspace");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("guests");

    check_target_installed();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
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
    for guest in guests {
        command.args(["-p", guest.package]);
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
    for guest in guests {
        let stem = guest.package.replace('-', "_");
        let wasm = built.join(format!("{stem}.wasm"));
        std::fs::copy(&wasm, out_dir.join(guest.file))
            .unwrap_or_else(|e| panic!("copying {} failed: {e}", wasm.display()));
        rerun_if_sources_change(&built.join(format!("{stem}.d")));
        rerun_if_changed(&workspace.join(guest.dir).join("Cargo.toml"));
    }
    rerun_if_changed(&workspace.join("sdk/Cargo.toml"));
    rerun_if_changed(&workspace.join("Cargo.lock"));
    rerun_if_changed(&workspace.join("wit"));
    out_dir
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
