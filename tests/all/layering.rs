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

/// Asserts that `package`, built for use (not for its tests), depends on `needed` and on
/// none of `never`.
fn assert_dependencies(package: &str, needed: &str, never: &[&str]) {
    let tree = cargo(&["tree", "-p", package, "-e", "normal", "--prefix", "none"]);
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&needed),
        "{package} lacks {needed}: {crates:?}"
    );
    for crate_name in never {
        assert!(
            !crates.contains(crate_name),
            "{package} depends on {crate_name}"
        );
    }
}

#[test]
fn embedding_the_runtime_pulls_no_front_end_crate() {
    // The runtime emits through the `metrics` facade; the exporter is the front end's choice.
    let front_ends = [
        "axum",
        "clap",
        "toml",
        "tracing-subscriber",
        "stateplug",
        "metrics-exporter-prometheus",
    ];
    assert_dependencies("stateplug-runtime", "wasmtime", &front_ends);
}

#[test]
fn the_state_layer_has_no_wasm_and_no_front_end() {
    let others = ["wasmtime", "stateplug-runtime", "axum", "clap", "toml"];
    assert_dependencies("stateplug-state", "stateplug-sdk", &others);
}

#[test]
fn the_sdk_package_carries_the_wit_it_binds() {
    let files = cargo(&["package", "-p", "stateplug-sdk", "--list", "--allow-dirty"]);
    assert!(files.lines().any(|f| f == "wit/backend.wit"), "{files}");
    let packaged = std::fs::read_to_string(common::workspace_root().join("sdk/wit/backend.wit"));
    let source = std::fs::read_to_string(common::workspace_root().join("wit/backend.wit"));
    assert_eq!(packaged.unwrap(), source.unwrap(), "sdk/wit is not wit/");
}
