//! The `stateplug` binary on its embedded default: what a user types, what they see.

use std::path::Path;
use std::process::{Command, Output};

fn stateplug(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_stateplug"))
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stateplug runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn plugins_list_describes_the_builtins() {
    let dir = tempfile::tempdir().unwrap();
    let text = stateplug(dir.path(), &["plugins", "list"], None);
    assert!(text.status.success(), "{}", stderr(&text));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("memory 0.1.0 (stateplug:backend@0.1.0, built-in `memory`)"),
        "{text}"
    );
    assert!(text.contains("root [default \"/data\"]"), "{text}");

    let json = stateplug(dir.path(), &["plugins", "list", "--json"], None);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["memory", "local"]);
    assert_eq!(list[1]["sha256"].as_str().unwrap().len(), 64);
    assert!(
        !dir.path().join(".stateplug").exists(),
        "listing plugins created the data dir"
    );
}

#[test]
fn push_then_pull_round_trips_on_the_default_backend() {
    let dir = tempfile::tempdir().unwrap();
    let state = br#"{"version":4,"serial":3,"lineage":"l-1","outputs":{}}"#;
    std::fs::write(dir.path().join("s.tfstate"), state).unwrap();

    let pushed = stateplug(dir.path(), &["state", "push", "dev", "s.tfstate"], None);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let pulled = stateplug(dir.path(), &["state", "pull", "dev"], None);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert_eq!(pulled.stdout, state);
    // Stored where the default says, readable without stateplug.
    let on_disk = std::fs::read(dir.path().join(".stateplug/dev/terraform.tfstate")).unwrap();
    assert_eq!(on_disk, state);

    let from_stdin = stateplug(dir.path(), &["state", "push", "default", "-"], Some(b"{}"));
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    assert_eq!(
        stateplug(dir.path(), &["state", "pull"], None).stdout,
        b"{}"
    );
}

#[test]
fn bad_input_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let good = stateplug(
        dir.path(),
        &["state", "push", "dev", "-"],
        Some(b"{\"serial\":1}"),
    );
    assert!(good.status.success(), "{}", stderr(&good));

    let cases: &[(&[&str], &[u8], &str)] = &[
        (
            &["state", "push", "dev", "-"],
            b"not json",
            "stdin is not a JSON state document",
        ),
        (
            &["state", "push", "..", "-"],
            b"{}",
            "workspace name `..` is not valid",
        ),
        (
            &["state", "push", "a/b", "-"],
            b"{}",
            "workspace name `a/b` is not valid",
        ),
        (
            &["state", "push", "dev", "missing.json"],
            b"",
            "reading missing.json",
        ),
        (
            &["state", "pull", "nothing-here"],
            b"",
            "workspace `nothing-here` has no state yet",
        ),
    ];
    for (args, input, expected) in cases {
        let out = stateplug(dir.path(), args, Some(input));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let usage = stateplug(dir.path(), &["state", "frobnicate"], None);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");

    let pulled = stateplug(dir.path(), &["state", "pull", "dev"], None);
    assert_eq!(
        pulled.stdout, b"{\"serial\":1}",
        "a refused push changed the state"
    );
}
