//! The layering, as cargo sees it: an embedder of the runtime or of the state layer pulls none
//! of the front ends' crates, the state layer has no wasm in it, and the SDK a vendor gets
//! carries the WIT it binds.

use std::process::Command;

use crate::common;

/// Runs cargo offline in the workspace and returns its stdout.
fn cargo(args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(args)
        .arg("--offline")
        .current_dir(common::workspace_root())
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The crates a package depends on when built for use (not for its tests).
fn dependencies(package: &str) -> Vec<String> {
    cargo(&["tree", "-p", package, "-e", "normal", "--prefix", "none"])
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn embedding_the_runtime_pulls_no_front_end_crate() {
    let crates = dependencies("stateplug-runtime");
    assert!(crates.iter().any(|c| c == "wasmtime"), "{crates:?}");
    for front_end in ["axum", "clap", "toml", "tracing-subscriber", "stateplug"] {
        assert!(
            !crates.iter().any(|c| c == front_end),
            "stateplug-runtime depends on {front_end}"
        );
    }
}

#[test]
fn the_state_layer_has_no_wasm_and_no_front_end() {
    let crates = dependencies("stateplug-state");
    assert!(crates.iter().any(|c| c == "stateplug-sdk"), "{crates:?}");
    for other in ["wasmtime", "stateplug-runtime", "axum", "clap", "toml"] {
        assert!(
            !crates.iter().any(|c| c == other),
            "stateplug-state depends on {other}"
        );
    }
}

#[test]
fn the_sdk_package_carries_the_wit_it_binds() {
    let files = cargo(&["package", "-p", "stateplug-sdk", "--list", "--allow-dirty"]);
    assert!(files.lines().any(|f| f == "wit/backend.wit"), "{files}");
    let packaged = std::fs::read_to_string(common::workspace_root().join("sdk/wit/backend.wit"));
    let source = std::fs::read_to_string(common::workspace_root().join("wit/backend.wit"));
    assert_eq!(packaged.unwrap(), source.unwrap(), "sdk/wit is not wit/");
}
