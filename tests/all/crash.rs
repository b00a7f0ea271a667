//! The local plugin survives a killed writer: `stateplug state push` is killed at many points
//! of its run, and afterwards the state is always exactly the old or the new document, and
//! what the killed writers left behind is gone once the next writer opened the store; a
//! plugin that panics in the middle of a write leaves the previous version, and its guard
//! does not hold up the next writer.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two large, different, valid JSON documents of the same size, so a torn file is easy to see.
fn document(fill: char) -> Vec<u8> {
    format!(
        "{{\"version\":4,\"serial\":1,\"lineage\":\"crash\",\"padding\":\"{}\"}}",
        fill.to_string().repeat(16 << 20)
    )
    .into_bytes()
}

fn push(dir: &Path, file: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_stateplug"))
        .args(["state", "push", "--force", "ws", file])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stateplug runs")
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn killed_writers_never_leave_a_torn_state() {
    let dir = tempfile::tempdir().unwrap();
    let documents = [document('a'), document('b')];
    std::fs::write(dir.path().join("a.json"), &documents[0]).unwrap();
    std::fs::write(dir.path().join("b.json"), &documents[1]).unwrap();
    let state = dir.path().join(".stateplug/state/ws/terraform.tfstate");
    let temp_dir = dir.path().join(".stateplug/state/.stateplug-local/tmp");
    let guard_dir = dir.path().join(".stateplug/state/.stateplug-local/guards");

    // How long an undisturbed push over an existing state takes, to spread the kills over
    // its whole run.
    assert!(push(dir.path(), "a.json").wait().unwrap().success());
    let started = Instant::now();
    assert!(push(dir.path(), "b.json").wait().unwrap().success());
    let full_run = started.elapsed();

    const KILLS: u32 = 24;
    let mut interrupted_writes = 0;
    for i in 0..KILLS {
        let file = if i % 2 == 0 { "b.json" } else { "a.json" };
        let mut child = push(dir.path(), file);
        // The write itself comes last, after parsing and loading: aim at the second half.
        std::thread::sleep(full_run.mul_f64(0.5 + 0.5 * f64::from(i) / f64::from(KILLS)));
        child.kill().ok();
        child.wait().unwrap();

        let stored = std::fs::read(&state).expect("the state file exists after every kill");
        assert!(
            stored == documents[0] || stored == documents[1],
            "after kill {i} the state is torn: {} bytes, starts {:?}",
            stored.len(),
            String::from_utf8_lossy(&stored[..stored.len().min(40)])
        );
        // A temp file or a write guard left behind is a write that was cut short (proof
        // that the kill hit mid-write). The next writer removes it when it opens the store.
        let leftovers = files_in(&temp_dir) + files_in(&guard_dir);
        interrupted_writes += u32::from(leftovers > 0);
    }
    assert!(
        interrupted_writes > 0,
        "no kill landed during a write (full run {full_run:?}); the test proved nothing"
    );
    assert!(push(dir.path(), "b.json").wait().unwrap().success());
    assert_eq!(std::fs::read(&state).unwrap(), documents[1]);
    assert_eq!(
        (files_in(&temp_dir), files_in(&guard_dir)),
        (0, 0),
        "temp files or guards of killed writers are still there"
    );
    println!("{KILLS} kills, {interrupted_writes} during a write, full run {full_run:?}");
}

/// A plugin that panics in the middle of a write (new content durable in its temp file, the
/// write guard held, the rename not yet done) leaves the previous version intact; the dead
/// writer's guard is free at once (the next write gets through well within a 1 s deadline,
/// where waiting for a guard to go stale would take longer), and its temp file is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_middle_of_a_local_write_keeps_the_previous_version() {
    use stateplug_runtime::{Error, Grants, Plugin, Precondition};
    let dir = tempfile::tempdir().unwrap();
    let (config, mut grants): (_, Grants) = common::local_setup(dir.path());
    grants.timeout = Duration::from_secs(1);
    let plugin = Plugin::from_file(common::runtime(), &common::test_plugin_path("torn-write"))
        .await
        .expect("torn-write loads");
    let backend = plugin.open(config, grants).await.unwrap();
    let old = backend
        .write("ws/terraform.tfstate", b"old".to_vec(), Precondition::None)
        .await
        .unwrap();

    let error = backend
        .write(
            "ws/terraform.tfstate",
            b"PANIC new".to_vec(),
            Precondition::VersionIs(old.clone()),
        )
        .await
        .expect_err("the write panics");
    assert!(matches!(error, Error::Crashed { .. }), "{error:?}");
    assert!(
        error.to_string().contains("panics in the middle"),
        "{error}"
    );

    let current = backend.read("ws/terraform.tfstate").await.unwrap();
    assert_eq!(current.data, b"old");
    assert_eq!(current.version, old);
    let listed = backend.list("", None).await.unwrap().paths;
    assert_eq!(listed, ["ws/terraform.tfstate"]);

    // The next writer, on a fresh instance, succeeds with the version it read.
    backend
        .write(
            "ws/terraform.tfstate",
            b"newer".to_vec(),
            Precondition::VersionIs(old),
        )
        .await
        .expect("writes go on after the panic");
    let file = dir.path().join("ws/terraform.tfstate");
    assert_eq!(std::fs::read(file).unwrap(), b"newer");
    let internal = dir.path().join(".stateplug-local");
    assert_eq!(
        (
            files_in(&internal.join("tmp")),
            files_in(&internal.join("guards"))
        ),
        (0, 0),
        "the dead writer's temp file or guard is still there"
    );
}
