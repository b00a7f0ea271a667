//! The conformance suite: what every backend plugin must do, checked through the host exactly
//! as the state layer will use it. Our own tests run it against every built-in plugin, and
//! vendors run it against theirs, so there is one definition of "a correct backend".
//!
//! Each case gets a backend from the caller's `open` function: a fresh one each time, or one
//! shared store, which must be empty at the start and is emptied after every case.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

use stateplug_sdk::{LockInfo, Precondition};

use crate::backend::Backend;
use crate::error::Error;

type CaseFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// One named check.
pub struct Case {
    /// Short name, e.g. `precondition-stale-version`.
    pub name: &'static str,
    run: fn(Backend) -> CaseFuture,
}

/// The outcome of one case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed.
    pub failure: Option<String>,
    /// How long it took.
    pub millis: u128,
}

/// The outcome of a whole run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// One entry per case, in order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }

    /// The failed cases, one line each (`name: why`).
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter_map(|r| r.failure.as_ref().map(|f| format!("{}: {f}", r.name)))
            .collect()
    }
}

/// Runs every case, each against a backend from `open`.
pub async fn run<F, Fut>(open: F) -> Report
where
    F: Fn() -> Fut,
    Fut: Future<Output = crate::Result<Backend>>,
{
    let mut results = Vec::new();
    for (index, case) in cases().into_iter().enumerate() {
        let started = Instant::now();
        let outcome = match open().await {
            Ok(backend) => {
                let first = index == 0;
                run_case(&case, backend, first).await
            }
            Err(e) => Err(anyhow::anyhow!("opening a backend failed: {e}")),
        };
        let refused_to_start = index == 0 && matches!(&outcome, Err(e) if e.is::<NotEmpty>());
        results.push(CaseResult {
            name: case.name,
            passed: outcome.is_ok(),
            failure: outcome.err().map(|e| format!("{e:#}")),
            millis: started.elapsed().as_millis(),
        });
        if refused_to_start {
            break;
        }
    }
    Report { results }
}

/// The store held data before the suite started.
#[derive(Debug)]
struct NotEmpty(String);

impl std::fmt::Display for NotEmpty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the store is not empty (it holds {}); the suite writes and deletes, so run it \
             against an empty store (a new directory, bucket or prefix)",
            self.0
        )
    }
}

impl std::error::Error for NotEmpty {}

/// Runs one case, then removes whatever it left. The store is checked to be empty before the
/// first case, so everything found afterwards was written by the suite: cases may therefore
/// share one store (a remote bucket, say) as well as get fresh ones.
async fn run_case(case: &Case, backend: Backend, first: bool) -> anyhow::Result<()> {
    if first {
        let paths = backend
            .list("", None)
            .await
            .context("listing the store")?
            .paths;
        let locks = backend.list_locks("").await.context("listing locks")?;
        if let Some(path) = paths.first() {
            return Err(NotEmpty(format!("`{path}`")).into());
        }
        if let Some((path, _)) = locks.first() {
            return Err(NotEmpty(format!("a lock on `{path}`")).into());
        }
    }
    let outcome = (case.run)(backend.clone()).await;
    let cleaned = clean(&backend).await;
    outcome.and(cleaned.context("cleaning up after the case"))
}

async fn clean(backend: &Backend) -> anyhow::Result<()> {
    for (path, _) in backend.list_locks("").await? {
        backend.force_unlock(&path).await?;
    }
    for path in backend.list_all("").await? {
        backend.delete(&path, Precondition::None).await?;
    }
    Ok(())
}

/// All cases, in the order they run.
pub fn cases() -> Vec<Case> {
    macro_rules! case {
        ($name:literal, $f:ident) => {
            Case {
                name: $name,
                run: |b| Box::pin($f(b)),
            }
        };
    }
    vec![
        case!("missing-is-not-found", missing_is_not_found),
        case!("round-trip-empty", round_trip_empty),
        case!("round-trip-binary", round_trip_binary),
        case!("round-trip-16-mib", round_trip_16_mib),
        case!("version-changes-on-write", version_changes_on_write),
        case!("precondition-absent", precondition_absent),
        case!("precondition-stale-version", precondition_stale_version),
        case!(
            "precondition-matching-version",
            precondition_matching_version
        ),
        case!("precondition-on-missing", precondition_on_missing),
        case!("delete", delete),
        case!("list-prefix-sorted-paged", list_prefix_sorted_paged),
        case!("exists", exists),
        case!("lock-refused-with-holder", lock_refused_with_holder),
        case!("unlock-needs-holder-id", unlock_needs_holder_id),
        case!("force-unlock", force_unlock),
        case!("expired-lock-taken-over", expired_lock_taken_over),
        case!("locks-are-not-objects", locks_are_not_objects),
        case!("list-locks", list_locks),
        case!("invalid-paths-refused", invalid_paths_refused),
        case!("lock-race-one-winner", lock_race_one_winner),
        case!("cas-race-no-lost-update", cas_race_no_lost_update),
    ]
}

fn lock(id: &str, who: &str) -> LockInfo {
    LockInfo {
        id: id.into(),
        operation: "OperationTypeApply".into(),
        info: String::new(),
        who: who.into(),
        version: "1.0.3".into(),
        created: LockInfo::now_rfc3339(),
        path: "conformance".into(),
        expires: None,
    }
}

async fn round_trip(backend: &Backend, path: &str, data: Vec<u8>) -> anyhow::Result<()> {
    let version = backend
        .write(path, data.clone(), Precondition::None)
        .await
        .context("write")?;
    let object = backend.read(path).await.context("read")?;
    ensure!(
        object.data == data,
        "read {} bytes back after writing {}",
        object.data.len(),
        data.len()
    );
    ensure!(
        object.version == version,
        "read reports version {:?}, write returned {version:?}",
        object.version
    );
    Ok(())
}

async fn missing_is_not_found(b: Backend) -> anyhow::Result<()> {
    match b.read("no/such/object").await {
        Err(Error::NotFound { .. }) => {}
        other => bail!("read of a missing object gave {other:?}, expected not-found"),
    }
    ensure!(
        !b.exists("no/such/object").await?,
        "exists() is true for a missing object"
    );
    ensure!(
        b.lock_info("no/such/object").await?.is_none(),
        "a missing object has a lock"
    );
    Ok(())
}

async fn round_trip_empty(b: Backend) -> anyhow::Result<()> {
    round_trip(&b, "empty", Vec::new()).await
}

async fn round_trip_binary(b: Backend) -> anyhow::Result<()> {
    let data: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    round_trip(&b, "binary/all-bytes", data).await
}

async fn round_trip_16_mib(b: Backend) -> anyhow::Result<()> {
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    round_trip(&b, "big/16-mib", data).await
}

async fn version_changes_on_write(b: Backend) -> anyhow::Result<()> {
    let v1 = b.write("v", b"one".to_vec(), Precondition::None).await?;
    let v2 = b.write("v", b"two".to_vec(), Precondition::None).await?;
    ensure!(
        v1 != v2,
        "two different contents got the same version {v1:?}"
    );
    Ok(())
}

async fn precondition_absent(b: Backend) -> anyhow::Result<()> {
    b.write("p", b"first".to_vec(), Precondition::Absent)
        .await
        .context("create-only write of a new object")?;
    match b.write("p", b"second".to_vec(), Precondition::Absent).await {
        Err(Error::PreconditionFailed { .. }) => {}
        other => bail!("create-only write over an existing object gave {other:?}"),
    }
    ensure!(
        b.read("p").await?.data == b"first",
        "the refused write changed the object"
    );
    Ok(())
}

async fn precondition_stale_version(b: Backend) -> anyhow::Result<()> {
    let stale = b.write("p", b"one".to_vec(), Precondition::None).await?;
    b.write("p", b"two".to_vec(), Precondition::None).await?;
    match b
        .write("p", b"three".to_vec(), Precondition::VersionIs(stale))
        .await
    {
        Err(Error::PreconditionFailed { .. }) => {}
        other => bail!("write with a stale version gave {other:?}"),
    }
    ensure!(
        b.read("p").await?.data == b"two",
        "the refused write changed the object"
    );
    Ok(())
}

async fn precondition_matching_version(b: Backend) -> anyhow::Result<()> {
    let current = b.write("p", b"one".to_vec(), Precondition::None).await?;
    let next = b
        .write("p", b"two".to_vec(), Precondition::VersionIs(current))
        .await
        .context("write with the current version")?;
    let object = b.read("p").await?;
    ensure!(
        object.data == b"two" && object.version == next,
        "the write did not land"
    );
    Ok(())
}

async fn precondition_on_missing(b: Backend) -> anyhow::Result<()> {
    match b
        .write(
            "p",
            b"x".to_vec(),
            Precondition::VersionIs("anything".into()),
        )
        .await
    {
        Err(Error::PreconditionFailed { .. }) => {}
        other => bail!("version-is write to a missing object gave {other:?}"),
    }
    ensure!(
        !b.exists("p").await?,
        "the refused write created the object"
    );
    Ok(())
}

async fn delete(b: Backend) -> anyhow::Result<()> {
    b.delete("d", Precondition::None)
        .await
        .context("deleting a missing object without precondition must succeed")?;
    let stale = b.write("d", b"one".to_vec(), Precondition::None).await?;
    let current = b.write("d", b"two".to_vec(), Precondition::None).await?;
    match b.delete("d", Precondition::VersionIs(stale)).await {
        Err(Error::PreconditionFailed { .. }) => {}
        other => bail!("delete with a stale version gave {other:?}"),
    }
    ensure!(
        b.exists("d").await?,
        "the refused delete removed the object"
    );
    b.delete("d", Precondition::VersionIs(current))
        .await
        .context("delete with current version")?;
    ensure!(!b.exists("d").await?, "the object survived its delete");
    b.delete("d", Precondition::None)
        .await
        .context("second delete")?;
    Ok(())
}

async fn list_prefix_sorted_paged(b: Backend) -> anyhow::Result<()> {
    const N: usize = 2500;
    let mut expected: Vec<String> = (0..N)
        .map(|i| format!("many/{:05}", (i * 7919) % N))
        .collect();
    for path in &expected {
        b.write(path, path.as_bytes().to_vec(), Precondition::None)
            .await?;
    }
    for other in ["manx", "man", "other/many/1", "many-not/1"] {
        b.write(other, b"x".to_vec(), Precondition::None).await?;
    }
    expected.sort();

    let mut pages = 0;
    let mut listed = Vec::new();
    let mut cursor = None;
    loop {
        let page = b.list("many/", cursor.as_deref()).await?;
        pages += 1;
        ensure!(pages <= N, "listing does not end (cursor {cursor:?})");
        listed.extend(page.paths);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ensure!(
        pages > 1,
        "{N} objects came back in one page; paging was not exercised"
    );
    ensure!(
        listed == expected,
        "listing `many/` gave {} paths (sorted: {}), expected {N} sorted",
        listed.len(),
        listed.windows(2).all(|w| w[0] < w[1])
    );
    let all = b.list_all("").await?;
    ensure!(
        all.len() == N + 4,
        "listing everything gave {} paths, expected {}",
        all.len(),
        N + 4
    );
    let man = b.list_all("man").await?;
    ensure!(
        man.len() == N + 3,
        "prefix `man` matched {} paths, expected {}",
        man.len(),
        N + 3
    );
    Ok(())
}

async fn exists(b: Backend) -> anyhow::Result<()> {
    ensure!(!b.exists("e/x").await?, "exists() before write");
    b.write("e/x", Vec::new(), Precondition::None).await?;
    ensure!(b.exists("e/x").await?, "exists() is false after write");
    ensure!(!b.exists("e").await?, "a path prefix counts as an object");
    Ok(())
}

async fn lock_refused_with_holder(b: Backend) -> anyhow::Result<()> {
    b.lock("ws", lock("id-1", "alice@host"))
        .await
        .context("first lock")?;
    match b.lock("ws", lock("id-2", "bob@host")).await {
        Err(Error::Locked { holder, .. }) => {
            ensure!(
                holder.id == "id-1",
                "refusal names holder id {:?}",
                holder.id
            );
            ensure!(
                holder.who == "alice@host",
                "refusal names holder {:?}",
                holder.who
            );
            ensure!(
                holder.operation == "OperationTypeApply",
                "holder's operation lost"
            );
        }
        other => bail!("second lock gave {other:?}, expected locked"),
    }
    let info = b
        .lock_info("ws")
        .await?
        .context("lock_info shows no lock")?;
    ensure!(info.id == "id-1", "lock_info shows {:?}", info.id);
    Ok(())
}

async fn unlock_needs_holder_id(b: Backend) -> anyhow::Result<()> {
    b.lock("ws", lock("id-1", "alice")).await?;
    match b.unlock("ws", "id-2").await {
        Err(Error::Locked { holder, .. }) if holder.id == "id-1" => {}
        other => bail!("unlock with a wrong id gave {other:?}"),
    }
    ensure!(
        b.lock_info("ws").await?.is_some(),
        "the refused unlock released the lock"
    );
    b.unlock("ws", "id-1")
        .await
        .context("unlock with the holder's id")?;
    ensure!(
        b.lock_info("ws").await?.is_none(),
        "lock still there after unlock"
    );
    b.lock("ws", lock("id-3", "carol"))
        .await
        .context("lock after unlock")?;
    Ok(())
}

async fn force_unlock(b: Backend) -> anyhow::Result<()> {
    ensure!(
        b.force_unlock("ws").await?.is_none(),
        "force-unlock of an unlocked path broke a lock"
    );
    b.lock("ws", lock("id-1", "alice")).await?;
    let broken = b
        .force_unlock("ws")
        .await?
        .context("force-unlock returned no lock")?;
    ensure!(broken.id == "id-1", "force-unlock returned {:?}", broken.id);
    ensure!(
        b.lock_info("ws").await?.is_none(),
        "lock still there after force-unlock"
    );
    b.lock("ws", lock("id-2", "bob"))
        .await
        .context("lock after force-unlock")?;
    Ok(())
}

async fn expired_lock_taken_over(b: Backend) -> anyhow::Result<()> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let expiring = LockInfo {
        expires: Some(now_ms + 300),
        ..lock("old", "crashed-ci")
    };
    b.lock("ws", expiring).await?;
    match b.lock("ws", lock("new", "bob")).await {
        Err(Error::Locked { .. }) => {}
        other => bail!("a lock that has not expired yet was not respected: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    b.lock("ws", lock("new", "bob"))
        .await
        .context("taking over an expired lock")?;
    let info = b.lock_info("ws").await?.context("no lock after takeover")?;
    ensure!(info.id == "new", "holder after takeover is {:?}", info.id);
    Ok(())
}

async fn locks_are_not_objects(b: Backend) -> anyhow::Result<()> {
    b.write("ws/state", b"{}".to_vec(), Precondition::None)
        .await?;
    b.lock("ws/state", lock("id-1", "alice")).await?;
    let listed = b.list_all("").await?;
    ensure!(listed == ["ws/state"], "listing shows {listed:?}");
    match b
        .write("ws/state.tflock", b"x".to_vec(), Precondition::None)
        .await
    {
        Err(Error::InvalidPath(_)) => {}
        other => bail!("writing a lock object's name directly gave {other:?}"),
    }
    Ok(())
}

async fn list_locks(b: Backend) -> anyhow::Result<()> {
    ensure!(
        b.list_locks("").await?.is_empty(),
        "locks listed in an empty store"
    );
    b.write("b/state", b"{}".to_vec(), Precondition::None)
        .await?;
    b.lock("b/state", lock("id-b", "bob")).await?;
    b.lock("a/no-object-yet", lock("id-a", "alice")).await?;
    b.lock("c/state", lock("id-c", "carol")).await?;
    let listed: Vec<(String, String)> = b
        .list_locks("")
        .await?
        .into_iter()
        .map(|(path, lock)| (path, lock.id))
        .collect();
    let expected = [
        ("a/no-object-yet", "id-a"),
        ("b/state", "id-b"),
        ("c/state", "id-c"),
    ]
    .map(|(p, i)| (p.to_string(), i.to_string()));
    ensure!(listed == expected, "listed {listed:?}");
    let under_b = b.list_locks("b/").await?;
    ensure!(
        under_b.len() == 1 && under_b[0].0 == "b/state",
        "prefix `b/` gave {under_b:?}"
    );
    b.unlock("c/state", "id-c").await?;
    ensure!(
        b.list_locks("c").await?.is_empty(),
        "a released lock is still listed"
    );
    Ok(())
}

async fn invalid_paths_refused(b: Backend) -> anyhow::Result<()> {
    let long = "a".repeat(2000);
    for path in [
        "",
        "/abs",
        "..",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        "nul\0byte",
        long.as_str(),
    ] {
        match b.write(path, b"x".to_vec(), Precondition::None).await {
            Err(Error::InvalidPath(_)) => {}
            other => bail!("writing {path:?} gave {other:?}, expected invalid-path"),
        }
        match b.read(path).await {
            Err(Error::InvalidPath(_)) => {}
            other => bail!("reading {path:?} gave {other:?}, expected invalid-path"),
        }
    }
    match b.list("../", None).await {
        Err(Error::InvalidPath(_)) => {}
        other => bail!("listing `../` gave {other:?}"),
    }
    ensure!(
        b.list_all("").await?.is_empty(),
        "an invalid write stored something"
    );
    Ok(())
}

async fn lock_race_one_winner(b: Backend) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                b.lock("race", lock(&format!("id-{i}"), &format!("w{i}")))
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await? {
            Ok(()) => winners.push(i),
            Err(Error::Locked { .. }) => {}
            Err(e) => bail!("task {i}: {e}"),
        }
    }
    ensure!(
        winners.len() == 1,
        "{} tasks got the lock: {winners:?}",
        winners.len()
    );
    let holder = b
        .lock_info("race")
        .await?
        .context("no holder after the race")?;
    ensure!(
        holder.id == format!("id-{}", winners[0]),
        "holder {:?} is not the winner",
        holder.id
    );
    Ok(())
}

async fn cas_race_no_lost_update(b: Backend) -> anyhow::Result<()> {
    const TASKS: u64 = 16;
    const INCREMENTS: u64 = 10;
    b.write("counter", b"0".to_vec(), Precondition::None)
        .await?;
    let b = Arc::new(b);
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..INCREMENTS {
                    loop {
                        let current = b.read("counter").await?;
                        let n: u64 = String::from_utf8_lossy(&current.data).parse()?;
                        let next = (n + 1).to_string().into_bytes();
                        match b
                            .write("counter", next, Precondition::VersionIs(current.version))
                            .await
                        {
                            Ok(_) => break,
                            Err(Error::PreconditionFailed { .. }) => continue,
                            Err(e) => return Err(anyhow::Error::from(e)),
                        }
                    }
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let total: u64 = String::from_utf8_lossy(&b.read("counter").await?.data).parse()?;
    ensure!(
        total == TASKS * INCREMENTS,
        "counter is {total}, expected {}",
        TASKS * INCREMENTS
    );
    Ok(())
}
