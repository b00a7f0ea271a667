//! What is particular to the `local` plugin (the conformance suite covers the contract):
//! its files on disk, their mode, backups, its configuration errors, and its write guards
//! (held by another writer, or left by writers that ended mid-write).

use crate::common;

use std::os::unix::fs::PermissionsExt;

use stateplug_runtime::{Error, Precondition};

/// The local plugin on `dir` with one instance: every call sees what the previous one left in
/// the instance (the versions it remembers).
async fn on_one_instance(dir: &std::path::Path) -> stateplug_runtime::Backend {
    let (config, mut grants) = common::local_setup(dir);
    grants.instances = Some(1);
    common::builtin("local")
        .await
        .open(config, grants)
        .await
        .unwrap()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_plain_files_with_a_private_mode() {
    let dir = tempfile::tempdir().unwrap();
    let backend = common::open_local(dir.path(), &[]).await;
    backend
        .write(
            "env:/dev/terraform.tfstate",
            b"{}".to_vec(),
            Precondition::None,
        )
        .await
        .unwrap();
    let file = dir.path().join("env:/dev/terraform.tfstate");
    assert_eq!(std::fs::read(&file).unwrap(), b"{}");
    assert_eq!(
        mode(&file),
        0o600,
        "state files hold secrets: private by default"
    );

    let backend = common::open_local(dir.path(), &[("file_mode", "0640")]).await;
    backend
        .write("shared", b"x".to_vec(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(mode(&dir.path().join("shared")), 0o640);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_keep_the_last_versions() {
    let dir = tempfile::tempdir().unwrap();
    let backend = common::open_local(dir.path(), &[("backup_count", "2")]).await;
    for version in ["v1", "v2", "v3", "v4"] {
        backend
            .write("ws/state", version.as_bytes().to_vec(), Precondition::None)
            .await
            .unwrap();
    }
    let backup_dir = dir.path().join(".stateplug-local/backups/ws/state");
    let mut backups: Vec<_> = std::fs::read_dir(&backup_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    backups.sort();
    let contents: Vec<String> = backups
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(
        contents,
        ["v2", "v3"],
        "the two versions before the current one"
    );
    assert_eq!(backend.read("ws/state").await.unwrap().data, b"v4");
    assert_eq!(
        backend.list_all("").await.unwrap(),
        ["ws/state"],
        "backups are not objects"
    );
    assert!(matches!(
        backend.read(".stateplug-local/backups/ws/state").await,
        Err(Error::InvalidPath(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_errors_name_the_key() {
    let plugin = common::builtin("local").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, grants) = common::local_setup(dir.path());
    let with = |key: &str, value: &str| {
        let mut config = config.clone();
        config.push((key.to_string(), value.to_string()));
        config
    };
    let not_granted = vec![("root".to_string(), "/var/lib".to_string())];
    let cases = [
        (
            with("root", "/data/no/such/dir"),
            "`root` = `/data/no/such/dir` cannot be used",
        ),
        (
            with("file_mode", "rw-------"),
            "`file_mode` = `rw-------` is not an octal permission mode",
        ),
        (with("file_mode", "1777"), "`file_mode` = `1777`"),
        (
            with("backup_count", "-1"),
            "`backup_count` = `-1` is not a whole number",
        ),
        (
            with("bucket", "x"),
            "unknown key `bucket`; this plugin understands: root, backup_count, file_mode",
        ),
        (not_granted, "the host must grant this directory"),
    ];
    for (config, expected) in cases {
        match plugin.open(config.clone(), grants.clone()).await {
            Err(e @ Error::InvalidConfig { .. }) => {
                assert!(e.to_string().contains(expected), "{config:?}: {e}")
            }
            Err(e) => panic!("{config:?}: {e:?}"),
            Ok(_) => panic!("{config:?} was accepted"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_grant_refuses_a_plugin_that_writes() {
    let dir = tempfile::tempdir().unwrap();
    let writer = common::open_local(dir.path(), &[]).await;
    writer
        .write("ws/state", b"kept".to_vec(), Precondition::None)
        .await
        .unwrap();

    let read_only = stateplug_runtime::Grants {
        dirs: vec![stateplug_runtime::DirGrant {
            read_only: true,
            ..stateplug_runtime::DirGrant::read_write(dir.path())
        }],
        ..stateplug_runtime::Grants::default()
    };
    // The plugin prepares its own folders on open: under a read-only grant that is refused.
    let opened = common::builtin("local").await.open(vec![], read_only).await;
    let error = opened
        .err()
        .expect("opening for writes under a read-only grant must fail");
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    assert_eq!(std::fs::read(dir.path().join("ws/state")).unwrap(), b"kept");
}

/// The file the local plugin locks while it swaps the object at `path` (its guard).
fn guard_file(dir: &std::path::Path, path: &str) -> std::path::PathBuf {
    let name = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(path.as_bytes()));
    dir.join(".stateplug-local/guards").join(name)
}

/// Takes the OS lock on `file` as another live writer (another process) would.
fn hold_lock(file: &std::path::Path) -> std::fs::File {
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(file)
        .unwrap();
    held.try_lock().expect("nobody holds it yet");
    held
}

/// While another writer holds the guard of one object, calls for other objects on the same
/// backend go on; the write to the held object waits (outside the plugin) and goes through
/// once the guard is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_guard_delays_only_the_object_it_guards() {
    let dir = tempfile::tempdir().unwrap();
    let backend = common::open_local(dir.path(), &[]).await;
    for path in ["a/terraform.tfstate", "b/terraform.tfstate"] {
        backend
            .write(path, b"v1".to_vec(), Precondition::None)
            .await
            .unwrap();
    }
    let guard = hold_lock(&guard_file(dir.path(), "a/terraform.tfstate"));

    let held = backend.clone();
    let blocked = tokio::spawn(async move {
        held.write("a/terraform.tfstate", b"v2".to_vec(), Precondition::None)
            .await
    });
    for round in 0..20u8 {
        let data = vec![round];
        backend
            .write("b/terraform.tfstate", data.clone(), Precondition::None)
            .await
            .expect("another object's write goes on");
        assert_eq!(
            backend.read("b/terraform.tfstate").await.unwrap().data,
            data
        );
        assert_eq!(
            backend.read("a/terraform.tfstate").await.unwrap().data,
            b"v1"
        );
    }
    assert!(
        !blocked.is_finished(),
        "the write to the guarded object went through while the guard was held"
    );

    drop(guard);
    blocked
        .await
        .unwrap()
        .expect("the write goes through once the guard is free");
    assert_eq!(
        backend.read("a/terraform.tfstate").await.unwrap().data,
        b"v2"
    );
}

/// A guard held past the call's deadline makes the write fail as `unavailable`, naming the
/// object, with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_held_past_the_deadline_is_reported_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mut grants) = common::local_setup(dir.path());
    grants.timeout = std::time::Duration::from_millis(300);
    let backend = common::builtin("local")
        .await
        .open(config, grants)
        .await
        .unwrap();
    backend
        .write("a/terraform.tfstate", b"v1".to_vec(), Precondition::None)
        .await
        .unwrap();
    let _guard = hold_lock(&guard_file(dir.path(), "a/terraform.tfstate"));
    let error = backend
        .write("a/terraform.tfstate", b"v2".to_vec(), Precondition::None)
        .await
        .expect_err("the guard is never let go");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("`a/terraform.tfstate` stayed busy for 300ms")
            && message.contains("another writer is changing `a/terraform.tfstate`"),
        "{message}"
    );
    assert_eq!(
        backend.read("a/terraform.tfstate").await.unwrap().data,
        b"v1"
    );
}

/// Opening a store removes the temp files and guards of writers that ended mid-write, and
/// keeps those a live writer holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_ended_writers_are_removed_when_a_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    drop(common::open_local(dir.path(), &[]).await);
    let internal = dir.path().join(".stateplug-local");
    let dead = [
        internal.join("tmp/00000000000000000001-0"),
        internal.join("tmp/00000000000000000002-1"),
        internal.join("guards/0123456789abcdef0123456789abcdef"),
    ];
    for file in &dead {
        std::fs::write(file, vec![b'x'; 100 << 10]).unwrap();
    }
    let live_temp = internal.join("tmp/00000000000000000003-2");
    let live_guard = guard_file(dir.path(), "live/terraform.tfstate");
    let _held = [hold_lock(&live_temp), hold_lock(&live_guard)];

    let _backend = common::open_local(dir.path(), &[]).await;
    for file in &dead {
        assert!(!file.exists(), "{} was left behind", file.display());
    }
    assert!(live_temp.exists(), "a live writer's temp file was removed");
    assert!(live_guard.exists(), "a live writer's guard was removed");
}

/// The plugin knows the version of a file it wrote last without hashing it again, from the
/// file's size and modification time: a change made beside it, of the same size, in place,
/// must still be seen, and must fail a compare-and-swap against the old version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_beside_the_plugin_gets_a_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let backend = on_one_instance(dir.path()).await;
    let v1 = backend
        .write("ws/state", b"aaaa".to_vec(), Precondition::None)
        .await
        .unwrap();
    std::fs::write(dir.path().join("ws/state"), b"bbbb").unwrap();
    let read = backend.read("ws/state").await.unwrap();
    assert_eq!(read.data, b"bbbb");
    assert_ne!(read.version, v1, "an outside change kept the old version");
    let stale = backend
        .write("ws/state", b"cccc".to_vec(), Precondition::VersionIs(v1))
        .await;
    assert!(
        matches!(stale, Err(Error::PreconditionFailed { .. })),
        "{stale:?}"
    );
    assert_eq!(std::fs::read(dir.path().join("ws/state")).unwrap(), b"bbbb");
    backend
        .write(
            "ws/state",
            b"dddd".to_vec(),
            Precondition::VersionIs(read.version),
        )
        .await
        .unwrap();
}

/// The state layer keeps each stored state as a history version, a create-only write of the
/// same bytes: the plugin links the file it has just written instead of writing and syncing
/// the data again. The version stays the state as it was when the state moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_file_just_written_is_a_link_to_it() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let backend = on_one_instance(dir.path()).await;
    let state = b"{\"serial\":1}".to_vec();
    let stored = backend
        .write("ws/state", state.clone(), Precondition::None)
        .await
        .unwrap();
    let kept = backend
        .write("history/ws/1", state.clone(), Precondition::None)
        .await
        .unwrap();
    assert_eq!(kept, stored, "the same bytes, the same version");
    let inode = |path: &str| std::fs::metadata(dir.path().join(path)).unwrap().ino();
    assert_eq!(inode("history/ws/1"), inode("ws/state"), "not linked");
    let again = backend
        .write("history/ws/1", state.clone(), Precondition::Absent)
        .await;
    assert!(
        matches!(again, Err(Error::PreconditionFailed { .. })),
        "{again:?}"
    );

    backend
        .write(
            "ws/state",
            b"{\"serial\":2}".to_vec(),
            Precondition::VersionIs(stored),
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("history/ws/1")).unwrap(),
        state
    );
    assert_eq!(backend.read("history/ws/1").await.unwrap().data, state);
    // A file changed since it was written is not linked: its bytes are no longer these.
    std::fs::write(dir.path().join("ws/state"), b"{\"serial\":3}").unwrap();
    backend
        .write(
            "history/ws/2",
            b"{\"serial\":2}".to_vec(),
            Precondition::None,
        )
        .await
        .unwrap();
    assert_ne!(inode("history/ws/2"), inode("ws/state"));
    assert_eq!(
        std::fs::read(dir.path().join("history/ws/2")).unwrap(),
        b"{\"serial\":2}"
    );
}
