//! What is particular to the `local` plugin (the conformance suite covers the contract):
//! its files on disk, their mode, backups, and its configuration errors.

mod common;

use std::os::unix::fs::PermissionsExt;

use stateplug::{Error, Precondition};

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

    let read_only = stateplug::Grants {
        dirs: vec![stateplug::DirGrant {
            read_only: true,
            ..stateplug::DirGrant::read_write(dir.path())
        }],
        ..stateplug::Grants::default()
    };
    // The plugin prepares its own folders on open: under a read-only grant that is refused.
    let opened = common::builtin("local").await.open(vec![], read_only).await;
    let error = opened
        .err()
        .expect("opening for writes under a read-only grant must fail");
    assert!(matches!(error, Error::Denied { .. }), "{error:?}");
    assert_eq!(std::fs::read(dir.path().join("ws/state")).unwrap(), b"kept");
}
