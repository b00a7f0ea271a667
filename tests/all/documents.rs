//! Typed documents and `with_lock` (the state layer's `Document`, `Objects::with_lock`) on
//! real plugins: concurrent updaters on memory, local and s3 lose nothing, and a process
//! killed while it loops on updates leaves the last document it committed, whole.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use stateplug_runtime::{Backend, LockInfo, Precondition};
use stateplug_state::{Document, ObjectError, Objects};

use crate::common;
use crate::common::moto::{self, Moto};

/// A provisioning tool's document (Go-FTL2 keeps hosts, resources and metadata).
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Inventory {
    hosts: BTreeMap<String, String>,
    resources: Vec<String>,
    updates: u64,
}

const PATH: &str = "ftl/inventory.json";

/// 16 updaters, `each` updates each, through one backend's instances: every update is kept.
async fn concurrent_updaters_lose_nothing(label: &str, backend: Backend, each: u64) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let doc = Document::<_, Inventory>::new(backend.clone(), PATH);
            tokio::spawn(async move {
                for n in 0..each {
                    doc.update(|inv| {
                        inv.hosts
                            .insert(format!("host-{i}"), format!("10.0.{i}.{n}"));
                        inv.resources.push(format!("vm-{i}-{n}"));
                        inv.updates += 1;
                    })
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let inventory = Document::<_, Inventory>::new(backend, PATH)
        .load()
        .await
        .unwrap();
    assert_eq!(inventory.updates, 16 * each, "{label}: an update was lost");
    assert_eq!(inventory.resources.len() as u64, 16 * each, "{label}");
    assert_eq!(
        inventory.hosts["host-15"],
        format!("10.0.15.{}", each - 1),
        "{label}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_document_updaters_lose_nothing_on_memory_and_local() {
    let memory = common::builtin("memory").await;
    let memory = memory.open(vec![], Default::default()).await.unwrap();
    concurrent_updaters_lose_nothing("memory", memory, 8).await;
    let dir = tempfile::tempdir().unwrap();
    let local = common::open_local(dir.path(), &[]).await;
    concurrent_updaters_lose_nothing("local", local, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_document_updaters_lose_nothing_on_s3() {
    let Some(moto) = Moto::start_or_skip("concurrent_document_updaters_lose_nothing_on_s3") else {
        return;
    };
    moto.create_bucket("documents");
    let backend = moto::open_s3(&moto.endpoint(), "documents", &[]).await;
    // Each conflict costs round trips to moto: fewer updates each, the same 16 racing.
    concurrent_updaters_lose_nothing("s3", backend, 2).await;
}

/// Set in the process the next test starts: the local directory it updates the document in.
const CHILD: &str = "STATEPLUG_TEST_DOCUMENT_CHILD";
const TEST: &str =
    "documents::a_process_killed_while_it_updates_leaves_the_last_committed_document";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_while_it_updates_leaves_the_last_committed_document() {
    if let Some(dir) = std::env::var_os(CHILD) {
        // The child: update in a loop, saying after each commit how many there were.
        let backend = common::open_local(std::path::Path::new(&dir), &[]).await;
        let doc = Document::<_, Inventory>::new(backend, PATH);
        loop {
            let updates = doc
                .update(|inv| {
                    inv.updates += 1;
                    inv.resources.push(format!("vm-{}", inv.updates));
                    inv.hosts
                        .insert("web".into(), format!("10.0.0.{}", inv.updates % 250));
                    inv.updates
                })
                .await
                .unwrap();
            println!("COMMITTED {updates}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut last = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some((_, n)) = line.unwrap().split_once("COMMITTED ") {
            last = n.trim().parse::<u64>().unwrap();
            if last >= 40 {
                child.kill().unwrap(); // SIGKILL, mid-loop
                break;
            }
        }
    }
    child.wait().unwrap();
    assert!(last >= 40, "the child stopped early");
    let backend = common::open_local(dir.path(), &[]).await;
    let inventory = Document::<_, Inventory>::new(backend, PATH)
        .load()
        .await
        .unwrap();
    // The update in flight when it died may have committed before it could say so.
    assert!(
        (last..=last + 1).contains(&inventory.updates),
        "said {last}, stored {}",
        inventory.updates
    );
    assert_eq!(
        inventory.resources.len() as u64,
        inventory.updates,
        "a torn document"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lock_on_a_plugin_releases_after_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let objects = Objects::new(common::open_local(dir.path(), &[]).await);
    let info = |id: &str| LockInfo {
        id: id.into(),
        who: "gaib@ci".into(),
        ..LockInfo::default()
    };
    let panicked = std::panic::AssertUnwindSafe(objects.with_lock(
        "deploy/prod",
        info("deploy-1"),
        async |_| panic!("the deploy failed"),
    ));
    assert!(
        futures_util::FutureExt::catch_unwind(panicked)
            .await
            .is_err()
    );
    assert_eq!(objects.lock_info("deploy/prod").await.unwrap(), None);
    let done = objects
        .with_lock("deploy/prod", info("deploy-2"), async |held| {
            let locked = objects.put("deploy/prod", b"x".to_vec(), Precondition::None, None);
            let refused = locked.await;
            assert!(
                matches!(refused, Err(ObjectError::Locked { .. })),
                "{refused:?}"
            );
            held.id.clone()
        })
        .await
        .unwrap();
    assert_eq!(done, "deploy-2");
    assert_eq!(objects.lock_info("deploy/prod").await.unwrap(), None);
}
