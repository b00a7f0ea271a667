//! The vendor kit works outside this workspace: the template in `sdk/template` builds on its
//! own with the documented command, and `stateplug plugins check` certifies the result.

use crate::common;
use std::process::Command;

#[test]
fn the_template_builds_out_of_tree_and_passes_the_conformance_check() {
    let template = common::workspace_root().join("sdk/template");
    let target_dir = common::workspace_root().join("target/template");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&template);
    // This build is the vendor's, not ours: none of the outer build's settings.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        build.env_remove(var);
    }
    let built = build.output().expect("cargo runs");
    assert!(
        built.status.success(),
        "the template does not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let wasm = target_dir.join("wasm32-wasip2/release/my_backend.wasm");
    let checked = Command::new(env!("CARGO_BIN_EXE_stateplug"))
        .args(["plugins", "check"])
        .arg(&wasm)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        report.starts_with("conformance of my-backend 0.1.0"),
        "{report}"
    );
    assert!(report.trim_end().ends_with(" passed, 0 failed"), "{report}");
}
