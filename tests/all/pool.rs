//! A backend's instance pool: calls run concurrently, each on a sandbox of its own; a stuck
//! call holds only its own instance; a plugin whose data lives in its instance keeps one.

use std::time::Duration;

use stateplug_runtime::{Error, Grants, Precondition};

use crate::common;

/// Makes a named pipe: reading it blocks until a writer sends or closes, as a file on a hung
/// network mount would.
fn fifo(path: &std::path::Path) {
    let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `name` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Opens the pipe's write end when dropped, which lets go a plugin thread blocked opening it
/// for reading, even when an assertion failed (that thread would keep the test's runtime from
/// shutting down).
struct Unblock(std::path::PathBuf);

impl Drop for Unblock {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::File::options()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.0);
    }
}

/// The local plugin, with `instances` and `timeout`, on a directory holding a named pipe
/// `name` (a call reading it blocks until the returned [`Unblock`] drops).
async fn local_with_a_pipe(
    name: &str,
    instances: usize,
    timeout: Duration,
) -> (tempfile::TempDir, Unblock, stateplug_runtime::Backend) {
    let dir = tempfile::tempdir().unwrap();
    fifo(&dir.path().join(name));
    let unblock = Unblock(dir.path().join(name));
    let (config, mut grants) = common::local_setup(dir.path());
    grants.instances = Some(instances);
    grants.timeout = timeout;
    let backend = common::builtin("local")
        .await
        .open(config, grants)
        .await
        .unwrap();
    (dir, unblock, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_call_holds_only_its_own_instance() {
    let (_dir, unblock, backend) = local_with_a_pipe("stuck", 2, Duration::from_secs(30)).await;
    assert_eq!(backend.instances(), 2);
    let stuck = tokio::spawn({
        let backend = backend.clone();
        async move { backend.read("stuck").await }
    });
    // The plugin blocks opening the pipe (for reading) until a writer opens it.
    for _ in 0..2000 {
        if backend.calls_running() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(backend.calls_running(), 1, "the stuck call never started");
    // Another call runs on the other instance meanwhile.
    let other = backend.read("other").await;
    assert!(matches!(other, Err(Error::NotFound { .. })), "{other:?}");
    assert!(
        !stuck.is_finished(),
        "the stuck call ended before its pipe did"
    );
    // Opening the write end lets the plugin's open return; a pipe cannot be read at an
    // offset, so its read then fails, and the instance is free again.
    drop(unblock);
    let unstuck = stuck.await.unwrap();
    assert!(unstuck.is_err(), "{unstuck:?}");
    assert_eq!(backend.calls_running(), 0);
    let other = backend.read("other").await;
    assert!(matches!(other, Err(Error::NotFound { .. })), "{other:?}");
}

/// File operations of a plugin granted directories run on its call's thread, not hopping to
/// another one each: the deadline must still reach a call blocked in one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_blocked_in_a_file_operation_ends_at_its_deadline() {
    let (_dir, _unblock, backend) = local_with_a_pipe("stuck", 1, Duration::from_secs(1)).await;
    // On a task of its own, watched from this one: were the call to block the worker it runs
    // on, this task (on the other worker) still sees it outlive its deadline.
    let stuck = tokio::spawn({
        let backend = backend.clone();
        async move { backend.read("stuck").await }
    });
    let stuck = tokio::time::timeout(Duration::from_secs(60), stuck).await;
    let error = stuck
        .expect("the call outlived its deadline")
        .unwrap()
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    assert!(error.to_string().contains("raise `timeout`"), "{error}");
    // The stuck instance was given up: the one instance slot serves the next call.
    assert_eq!(backend.calls_running(), 0);
    let other = backend.read("other").await;
    assert!(matches!(other, Err(Error::NotFound { .. })), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_whose_data_lives_in_its_instance_keeps_one() {
    let memory = common::builtin("memory").await;
    let backend = memory.open(vec![], Grants::default()).await.unwrap();
    assert_eq!(backend.instances(), 1);
    let asked = Grants {
        instances: Some(4),
        ..Grants::default()
    };
    let Err(refused) = memory.open(vec![], asked).await else {
        panic!("the memory plugin opened with 4 instances");
    };
    let refused = refused.to_string();
    assert!(
        refused.contains("`instances` is 4") && refused.contains("single-instance"),
        "{refused}"
    );
    let dir = tempfile::tempdir().unwrap();
    let local = common::open_local(dir.path(), &[]).await;
    assert_eq!(
        local.instances(),
        stateplug_runtime::default_instances(false),
        "the local plugin runs a pool by default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_total_below_one_instance_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut grants) = common::local_setup(dir.path());
    grants.memory_total = Some(1 << 20);
    let Err(refused) = common::builtin("local").await.open(config, grants).await else {
        panic!("opened with a memory_total of 1 MiB");
    };
    let refused = refused.to_string();
    assert!(
        refused.contains("`memory_total` (1 MiB) is less than one instance's `memory` (256 MiB)"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_out_of_instance_slots_says_so() {
    use stateplug_runtime::{Plugin, Runtime, RuntimeOptions};
    let options = RuntimeOptions {
        pool_size: Some(1),
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::with_options(options).unwrap();
    let plugin = Plugin::builtin(&runtime, "memory").await.unwrap();
    let first = plugin.open(vec![], Grants::default()).await.unwrap();
    let Err(refused) = plugin.open(vec![], Grants::default()).await else {
        panic!("a second instance started in a runtime of one slot");
    };
    assert!(matches!(refused, Error::Unavailable { .. }), "{refused:?}");
    let message = refused.to_string();
    assert!(
        message.contains("no instance could be started") && message.contains("`instances`"),
        "{message}"
    );
    drop(first);
    plugin.open(vec![], Grants::default()).await.unwrap();
}

/// Wasm memory never shrinks: an idle instance would keep the memory of the largest state
/// that passed through it, counted against `memory_total`. One grown past its share of the
/// total is let go once its call is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_grown_by_a_large_object_gives_its_memory_back() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut grants) = common::local_setup(dir.path());
    grants.instances = Some(4);
    grants.memory = 64 << 20;
    grants.memory_total = Some(64 << 20);
    let share = 16 << 20;
    let backend = common::builtin("local")
        .await
        .open(config, grants)
        .await
        .unwrap();
    let small = backend.memory_held();
    assert!(small <= share, "a fresh instance holds {small} bytes");

    let large = vec![7u8; 24 << 20];
    backend
        .write("large", large.clone(), Precondition::None)
        .await
        .unwrap();
    let held = backend.memory_held();
    assert!(
        held <= share,
        "{} MiB still held after the large write (share {} MiB)",
        held >> 20,
        share >> 20
    );
    // The next call starts a fresh instance and finds the object intact.
    assert!(backend.read("large").await.unwrap().data == large);
    assert!(backend.memory_held() <= share);
    // A small call's instance stays, ready for the next.
    backend
        .write("small", b"x".to_vec(), Precondition::None)
        .await
        .unwrap();
    let kept = backend.memory_held();
    assert!(0 < kept && kept <= share, "{kept} bytes held");
}
