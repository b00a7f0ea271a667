//! An [`ObjectStore`] in memory, for tests of the state layer that need no plugin. It keeps
//! the contract's promises (atomic preconditions, exclusive locks, expired locks taken over)
//! and nothing more.

use std::collections::BTreeMap;
use std::sync::Mutex;

use stateplug_sdk::{LockInfo, Object, Precondition};

use crate::store::{ObjectStore, Refusal, StoreError};

/// Objects and locks in memory. Versions count writes.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Contents>,
}

#[derive(Debug, Default)]
struct Contents {
    objects: BTreeMap<String, Object>,
    locks: BTreeMap<String, LockInfo>,
    writes: u64,
    /// Writes under these prefixes fail, to test what a failing store does to the rules.
    failing: Vec<String>,
}

/// What a [`MemoryStore`] call fails with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MemoryError {
    /// No object or lock at the path.
    #[error("`{0}` not found")]
    NotFound(String),
    /// The precondition did not hold.
    #[error("`{0}` was not changed: its precondition failed")]
    PreconditionFailed(String),
    /// The lock is held by someone else.
    #[error("`{path}` is locked by {}", .1.holder(), path = .0)]
    Locked(String, Box<LockInfo>),
    /// A write under a prefix set to fail ([`MemoryStore::fail_writes_under`]).
    #[error("`{0}`: the store is failing writes here")]
    Failing(String),
}

impl StoreError for MemoryError {
    fn refusal(&self) -> Refusal<'_> {
        match self {
            MemoryError::NotFound(_) => Refusal::NotFound,
            MemoryError::PreconditionFailed(_) => Refusal::PreconditionFailed,
            MemoryError::Locked(_, holder) => Refusal::Locked(holder),
            MemoryError::Failing(_) => Refusal::Other,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes every later write under `prefix` fail with [`MemoryError::Failing`].
    pub fn fail_writes_under(&self, prefix: &str) {
        self.contents().failing.push(prefix.to_string());
    }

    /// Every stored path, sorted.
    pub fn paths(&self) -> Vec<String> {
        self.contents().objects.keys().cloned().collect()
    }

    fn contents(&self) -> std::sync::MutexGuard<'_, Contents> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check(
    path: &str,
    current: Option<&Object>,
    precondition: &Precondition,
) -> Result<(), MemoryError> {
    stateplug_sdk::check_precondition(current.map(|o| o.version.as_str()), precondition)
        .map_err(|_| MemoryError::PreconditionFailed(path.to_string()))
}

impl ObjectStore for MemoryStore {
    type Error = MemoryError;

    async fn read(&self, path: &str) -> Result<Object, MemoryError> {
        let contents = self.contents();
        let object = contents.objects.get(path);
        object
            .cloned()
            .ok_or_else(|| MemoryError::NotFound(path.to_string()))
    }

    async fn write(
        &self,
        path: &str,
        data: Vec<u8>,
        precondition: Precondition,
    ) -> Result<String, MemoryError> {
        let mut contents = self.contents();
        if contents.failing.iter().any(|p| path.starts_with(p)) {
            return Err(MemoryError::Failing(path.to_string()));
        }
        check(path, contents.objects.get(path), &precondition)?;
        contents.writes += 1;
        let version = contents.writes.to_string();
        let object = Object {
            data,
            version: version.clone(),
        };
        contents.objects.insert(path.to_string(), object);
        Ok(version)
    }

    async fn delete(&self, path: &str, precondition: Precondition) -> Result<(), MemoryError> {
        let mut contents = self.contents();
        check(path, contents.objects.get(path), &precondition)?;
        contents.objects.remove(path);
        Ok(())
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<String>, MemoryError> {
        let contents = self.contents();
        let paths = contents.objects.keys().filter(|p| p.starts_with(prefix));
        Ok(paths.cloned().collect())
    }

    async fn lock(&self, path: &str, info: LockInfo) -> Result<(), MemoryError> {
        let mut contents = self.contents();
        if let Some(holder) = contents.locks.get(path)
            && !holder.is_expired()
        {
            return Err(MemoryError::Locked(
                path.to_string(),
                Box::new(holder.clone()),
            ));
        }
        contents.locks.insert(path.to_string(), info);
        Ok(())
    }

    async fn unlock(&self, path: &str, id: &str) -> Result<(), MemoryError> {
        let mut contents = self.contents();
        match contents.locks.get(path) {
            None => Err(MemoryError::NotFound(path.to_string())),
            Some(holder) if holder.id != id => Err(MemoryError::Locked(
                path.to_string(),
                Box::new(holder.clone()),
            )),
            Some(_) => {
                contents.locks.remove(path);
                Ok(())
            }
        }
    }

    async fn lock_info(&self, path: &str) -> Result<Option<LockInfo>, MemoryError> {
        Ok(self.contents().locks.get(path).cloned())
    }

    async fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>, MemoryError> {
        let contents = self.contents();
        let locks = contents.locks.iter().filter(|(p, _)| p.starts_with(prefix));
        Ok(locks.map(|(p, l)| (p.clone(), l.clone())).collect())
    }

    async fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>, MemoryError> {
        Ok(self.contents().locks.remove(path))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const PATH: &str = "dev/terraform.tfstate";

    fn lock(id: &str) -> LockInfo {
        LockInfo {
            id: id.to_string(),
            who: format!("{id}@laptop"),
            ..LockInfo::default()
        }
    }

    fn unix_ms() -> u64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.unwrap().as_millis() as u64
    }

    /// A write or delete whose precondition fails changes nothing.
    #[tokio::test]
    async fn preconditions_hold_with_the_change() {
        let store = MemoryStore::new();
        let absent = Precondition::VersionIs("1".into());
        let refused = store.write(PATH, b"x".to_vec(), absent).await;
        assert_eq!(refused, Err(MemoryError::PreconditionFailed(PATH.into())));
        let v1 = store
            .write(PATH, b"one".to_vec(), Precondition::Absent)
            .await
            .unwrap();
        let refused = store
            .write(PATH, b"two".to_vec(), Precondition::Absent)
            .await;
        assert_eq!(refused, Err(MemoryError::PreconditionFailed(PATH.into())));
        let stale = Precondition::VersionIs(v1.clone());
        let v2 = store
            .write(PATH, b"two".to_vec(), stale.clone())
            .await
            .unwrap();
        assert_ne!(v1, v2);
        let refused = store.write(PATH, b"three".to_vec(), stale.clone()).await;
        assert!(matches!(refused, Err(MemoryError::PreconditionFailed(_))));
        assert_eq!(
            store.delete(PATH, stale).await,
            Err(MemoryError::PreconditionFailed(PATH.into()))
        );
        let object = store.read(PATH).await.unwrap();
        assert_eq!(
            (object.data, object.version.clone()),
            (b"two".to_vec(), v2.clone())
        );
        store
            .delete(PATH, Precondition::VersionIs(v2))
            .await
            .unwrap();
        let missing = store.read(PATH).await.unwrap_err();
        assert_eq!(missing.refusal(), Refusal::NotFound);
        assert_eq!(missing, MemoryError::NotFound(PATH.into()));
    }

    /// Of many writers creating the same object at once, exactly one succeeds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_of_concurrent_creators_wins() {
        let store = Arc::new(MemoryStore::new());
        let writers = (0..16u8).map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.write(PATH, vec![i], Precondition::Absent).await })
        });
        let mut won = Vec::new();
        for writer in writers.collect::<Vec<_>>() {
            if let Ok(version) = writer.await.unwrap() {
                won.push(version);
            }
        }
        assert_eq!(won.len(), 1, "{won:?}");
        assert_eq!(store.read(PATH).await.unwrap().version, won[0]);
    }

    /// A held lock refuses others with the holder; an expired one is taken over.
    #[tokio::test]
    async fn a_lock_is_exclusive_until_it_expires() {
        let store = MemoryStore::new();
        store.lock(PATH, lock("A")).await.unwrap();
        let refused = store.lock(PATH, lock("B")).await.unwrap_err();
        assert_eq!(
            refused,
            MemoryError::Locked(PATH.into(), Box::new(lock("A")))
        );
        assert_eq!(refused.refusal(), Refusal::Locked(&lock("A")));
        assert!(refused.to_string().contains("A@laptop"), "{refused}");
        assert_eq!(store.lock_info(PATH).await.unwrap(), Some(lock("A")));

        let stale = LockInfo {
            expires: Some(unix_ms() - 1),
            ..lock("A")
        };
        store.lock("prod", stale).await.unwrap();
        store.lock("prod", lock("B")).await.unwrap();
        assert_eq!(store.lock_info("prod").await.unwrap(), Some(lock("B")));
        let live = LockInfo {
            expires: Some(unix_ms() + 60_000),
            ..lock("C")
        };
        store.lock("stage", live.clone()).await.unwrap();
        assert!(
            store.lock("stage", lock("D")).await.is_err(),
            "not expired yet"
        );
        let locks = store.list_locks("").await.unwrap();
        let paths: Vec<&str> = locks.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [PATH, "prod", "stage"]);
    }

    #[tokio::test]
    async fn unlock_needs_the_holders_id() {
        let store = MemoryStore::new();
        let missing = store.unlock(PATH, "A").await.unwrap_err();
        assert_eq!(missing, MemoryError::NotFound(PATH.into()));
        assert_eq!(missing.refusal(), Refusal::NotFound);
        store.lock(PATH, lock("A")).await.unwrap();
        let refused = store.unlock(PATH, "B").await.unwrap_err();
        assert_eq!(
            refused,
            MemoryError::Locked(PATH.into(), Box::new(lock("A")))
        );
        assert_eq!(store.lock_info(PATH).await.unwrap(), Some(lock("A")));
        store.unlock(PATH, "A").await.unwrap();
        assert_eq!(store.lock_info(PATH).await.unwrap(), None);
        assert_eq!(store.force_unlock(PATH).await.unwrap(), None);
    }

    /// Writes fail only under the prefixes set to fail, as an error the rules pass on.
    #[tokio::test]
    async fn failing_writes_are_confined_to_their_prefix() {
        let store = MemoryStore::new();
        store.fail_writes_under("dev/history/");
        let failed = store
            .write("dev/history/1", vec![], Precondition::None)
            .await;
        assert_eq!(failed, Err(MemoryError::Failing("dev/history/1".into())));
        assert_eq!(failed.unwrap_err().refusal(), Refusal::Other);
        store.write(PATH, vec![], Precondition::None).await.unwrap();
        store.write("b", vec![], Precondition::None).await.unwrap();
        assert_eq!(store.paths(), ["b", PATH]);
        assert_eq!(store.list_all("dev/").await.unwrap(), [PATH]);
    }
}
