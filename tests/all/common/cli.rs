//! The `stateplug` binary run as a user runs it: in a directory, with arguments and stdin.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `stateplug <args>` in `dir`, feeding it `stdin`.
pub fn stateplug(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    stateplug_with_env(dir, args, stdin, &[])
}

/// [`stateplug`] with these variables set in its environment.
pub fn stateplug_with_env(
    dir: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stateplug"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stateplug runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// What a command printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// stdout of a command that must succeed.
#[track_caller]
pub fn ok(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = stateplug(dir, args, stdin);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Exit code and stderr of a command that must fail.
#[track_caller]
pub fn fails(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> (i32, String) {
    let out = stateplug(dir, args, stdin);
    assert!(!out.status.success(), "{args:?} succeeded");
    (out.status.code().unwrap(), stderr(&out))
}

/// The output of a command that must succeed.
#[track_caller]
pub fn succeeds(output: Output) -> Output {
    assert!(output.status.success(), "{}", stderr(&output));
    output
}
