//! The object API's key space: plain objects at paths (a tree of state files, as cldctl
//! keeps), with compare-and-swap writes and locks, apart from the workspaces. Every path is
//! kept under [`layout::OBJECTS_PREFIX`], so no object can change a workspace, and the
//! reverse.

use stateplug_sdk::{LockInfo, Object, Precondition, layout, path};

use crate::store::{ObjectStore, Refusal, StoreError};

/// An object operation's failure; `E` is the store's error type.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError<E> {
    /// The write's or delete's precondition did not hold; nothing changed.
    #[error(
        "object `{path}` was not changed: its precondition failed (it exists, or changed since \
         it was read); read it again and retry"
    )]
    PreconditionFailed {
        /// The object.
        path: String,
    },
    /// Locked by someone else than the writer.
    #[error("object `{path}` is locked by {}", holder.holder())]
    Locked {
        /// The object.
        path: String,
        /// The holder's lock.
        holder: Box<LockInfo>,
    },
    /// An unlock of an object that holds no lock.
    #[error("object `{path}` is not locked")]
    NotLocked {
        /// The object.
        path: String,
    },
    /// A path or lock id that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(E),
}

/// The error of an object operation on store `S`.
pub type ObjectResult<T, S> = Result<T, ObjectError<<S as ObjectStore>::Error>>;

/// One page of an object listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectPage {
    /// Paths relative to the prefix listed, sorted ascending by bytes.
    pub paths: Vec<String>,
    /// Pass it back for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Most paths one listing page holds (and its default size).
pub const MAX_PAGE: usize = 1000;

/// The objects of a store.
pub struct Objects<S> {
    store: S,
}

impl<S: ObjectStore> Objects<S> {
    /// The objects kept in `store`.
    pub fn new(store: S) -> Objects<S> {
        Objects { store }
    }

    /// The object at `path`, if any.
    pub async fn get(&self, path: &str) -> ObjectResult<Option<Object>, S> {
        let kept = kept(path)?;
        match self.store.read(&kept).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if e.refusal() == Refusal::NotFound => Ok(None),
            Err(e) => Err(ObjectError::Store(e)),
        }
    }

    /// Whether an object exists at `path`.
    pub async fn exists(&self, path: &str) -> ObjectResult<bool, S> {
        Ok(self.get(path).await?.is_some())
    }

    /// Writes `data` at `path` if `precondition` holds, and unless another holds the object's
    /// lock (`lock_id` is the writer's); returns the new version token.
    pub async fn put(
        &self,
        path: &str,
        data: Vec<u8>,
        precondition: Precondition,
        lock_id: Option<&str>,
    ) -> ObjectResult<String, S> {
        let kept = kept(path)?;
        self.check_lock(path, &kept, lock_id).await?;
        self.store
            .write(&kept, data, precondition)
            .await
            .map_err(|e| refused(path, e))
    }

    /// Deletes the object at `path` if `precondition` holds (without one, deleting a missing
    /// object succeeds), unless another holds its lock.
    pub async fn delete(
        &self,
        path: &str,
        precondition: Precondition,
        lock_id: Option<&str>,
    ) -> ObjectResult<(), S> {
        let kept = kept(path)?;
        self.check_lock(path, &kept, lock_id).await?;
        self.store
            .delete(&kept, precondition)
            .await
            .map_err(|e| refused(path, e))
    }

    /// One page of the paths under `prefix` (a plain string prefix), relative to it, after
    /// `cursor` (a path the previous page ended with), at most `limit` (capped at
    /// [`MAX_PAGE`]).
    pub async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> ObjectResult<ObjectPage, S> {
        path::validate_prefix(prefix).map_err(|e| ObjectError::Invalid(e.to_string()))?;
        let limit = limit.clamp(1, MAX_PAGE);
        let all = self
            .store
            .list_all(&layout::object_path(prefix))
            .await
            .map_err(ObjectError::Store)?;
        let skip = layout::object_path(prefix).len();
        let mut paths: Vec<String> = all
            .into_iter()
            .map(|kept| kept[skip..].to_string())
            .filter(|relative| cursor.is_none_or(|c| relative.as_str() > c))
            .take(limit + 1)
            .collect();
        let next_cursor = if paths.len() > limit {
            paths.truncate(limit);
            paths.last().cloned()
        } else {
            None
        };
        Ok(ObjectPage { paths, next_cursor })
    }

    /// Takes the lock on `path` (the object need not exist).
    pub async fn lock(&self, path: &str, info: LockInfo) -> ObjectResult<LockInfo, S> {
        let kept = kept(path)?;
        crate::check_lock_id(&info.id).map_err(ObjectError::Invalid)?;
        self.store
            .lock(&kept, info.clone())
            .await
            .map_err(|e| refused(path, e))?;
        Ok(info)
    }

    /// Releases the lock on `path` held under `id`.
    pub async fn unlock(&self, path: &str, id: &str) -> ObjectResult<(), S> {
        let kept = kept(path)?;
        match self.store.unlock(&kept, id).await {
            Err(e) if e.refusal() == Refusal::NotFound => Err(ObjectError::NotLocked {
                path: path.to_string(),
            }),
            other => other.map_err(|e| refused(path, e)),
        }
    }

    /// The lock on `path`, if any.
    pub async fn lock_info(&self, path: &str) -> ObjectResult<Option<LockInfo>, S> {
        let kept = kept(path)?;
        self.store
            .lock_info(&kept)
            .await
            .map_err(ObjectError::Store)
    }

    /// Runs `work` holding the lock on `path` (taken with `info`), and releases the lock
    /// whatever the way out: `work` returns, fails, panics (the panic goes on after the
    /// release) or is dropped (the release then runs on a task of its own).
    pub async fn with_lock<R>(
        &self,
        path: &str,
        info: LockInfo,
        work: impl AsyncFnOnce(&LockInfo) -> R,
    ) -> ObjectResult<R, S>
    where
        S: Clone,
    {
        use futures_util::FutureExt;
        let info = self.lock(path, info).await?;
        let mut held = Held {
            store: Some(self.store.clone()),
            path: kept(path)?,
            id: info.id.clone(),
        };
        let outcome = std::panic::AssertUnwindSafe(work(&info))
            .catch_unwind()
            .await;
        let store = held.store.take().expect("released once");
        let released = store.unlock(&held.path, &held.id).await;
        match outcome {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(result) => {
                released.map_err(|e| refused(path, e))?;
                Ok(result)
            }
        }
    }

    /// Refuses when the object is locked under another id than `lock_id`.
    async fn check_lock(
        &self,
        path: &str,
        kept: &str,
        lock_id: Option<&str>,
    ) -> ObjectResult<(), S> {
        match self
            .store
            .lock_info(kept)
            .await
            .map_err(ObjectError::Store)?
        {
            Some(holder) if Some(holder.id.as_str()) != lock_id && !holder.is_expired() => {
                Err(ObjectError::Locked {
                    path: path.to_string(),
                    holder: Box::new(holder),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Where the object at `path` is kept, after checking the path (the contract's rules).
fn kept<E>(path: &str) -> Result<String, ObjectError<E>> {
    path::validate(path).map_err(|e| ObjectError::Invalid(e.to_string()))?;
    let kept = layout::object_path(path);
    // The prefix makes the path longer: it must still fit the contract.
    path::validate(&kept).map_err(|e| ObjectError::Invalid(e.to_string()))?;
    Ok(kept)
}

/// A store's refusal in the object API's terms.
fn refused<E: StoreError>(path: &str, e: E) -> ObjectError<E> {
    match e.refusal() {
        Refusal::PreconditionFailed => ObjectError::PreconditionFailed {
            path: path.to_string(),
        },
        Refusal::Locked(holder) => ObjectError::Locked {
            path: path.to_string(),
            holder: Box::new(holder.clone()),
        },
        _ => ObjectError::Store(e),
    }
}

/// A lock `with_lock` holds: released on drop when the work was dropped before its end.
struct Held<S: ObjectStore> {
    store: Option<S>,
    path: String,
    id: String,
}

impl<S: ObjectStore> Drop for Held<S> {
    fn drop(&mut self) {
        let Some(store) = self.store.take() else {
            return;
        };
        let (path, id) = (std::mem::take(&mut self.path), std::mem::take(&mut self.id));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = store.unlock(&path, &id).await {
                        tracing::warn!(path, "a dropped with_lock could not release its lock: {e}");
                    }
                });
            }
            Err(_) => tracing::warn!(path, "a with_lock dropped outside a runtime left its lock"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Workspaces;
    use crate::memory::MemoryStore;

    fn lock(id: &str) -> LockInfo {
        LockInfo {
            id: id.into(),
            who: format!("{id}@test"),
            ..LockInfo::default()
        }
    }

    /// cldctl's tree of state files.
    const TREE: &[&str] = &[
        "datacenters/eu/datacenter.state.json",
        "datacenters/eu/environments/prod/modules/net.state.json",
        "datacenters/eu/environments/prod/resources/api/db.state.json",
        "datacenters/eu/environments/staging/modules/net.state.json",
        "datacenters/us/datacenter.state.json",
    ];

    #[tokio::test]
    async fn a_tree_of_state_files_lists_relative_paths() {
        let objects = Objects::new(MemoryStore::new());
        for path in TREE {
            objects
                .put(path, b"{}".to_vec(), Precondition::None, None)
                .await
                .unwrap();
        }
        let page = objects
            .list("datacenters/eu/environments/", None, 1000)
            .await
            .unwrap();
        assert_eq!(
            page.paths,
            [
                "prod/modules/net.state.json",
                "prod/resources/api/db.state.json",
                "staging/modules/net.state.json"
            ]
        );
        assert_eq!(page.next_cursor, None);
        // Pages of two, each continuing after the last path of the one before.
        let first = objects.list("datacenters/", None, 2).await.unwrap();
        assert_eq!(first.paths.len(), 2);
        let cursor = first.next_cursor.clone().unwrap();
        let rest = objects
            .list("datacenters/", Some(&cursor), 1000)
            .await
            .unwrap();
        assert_eq!(first.paths.len() + rest.paths.len(), TREE.len());
        assert!(rest.paths.iter().all(|p| p.as_str() > cursor.as_str()));

        let us = "datacenters/us/datacenter.state.json";
        assert!(objects.exists(us).await.unwrap());
        objects.delete(us, Precondition::None, None).await.unwrap();
        objects.delete(us, Precondition::None, None).await.unwrap(); // idempotent
        assert!(!objects.exists(us).await.unwrap());
    }

    #[tokio::test]
    async fn objects_and_workspaces_never_touch_each_other() {
        let store = Arc::new(MemoryStore::new());
        let objects = Objects::new(store.clone());
        let workspaces = Workspaces::new(store.clone(), crate::StateOptions::default());
        objects
            .put(
                "default/terraform.tfstate",
                b"not a state".to_vec(),
                Precondition::None,
                None,
            )
            .await
            .unwrap();
        objects
            .put(
                "terraform.tfstate",
                b"nor this".to_vec(),
                Precondition::None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(workspaces.get("default").await.unwrap(), None);
        assert_eq!(workspaces.names().await.unwrap(), ["default"]);
        let state = br#"{"version":4,"serial":1,"lineage":"l","resources":[]}"#.to_vec();
        workspaces
            .put("dev", state, &Default::default())
            .await
            .unwrap();
        assert_eq!(objects.get("dev/terraform.tfstate").await.unwrap(), None);
        let listed = objects.list("", None, 1000).await.unwrap().paths;
        assert_eq!(listed, ["default/terraform.tfstate", "terraform.tfstate"]);
    }

    #[tokio::test]
    async fn preconditions_and_locks_guard_writes() {
        let objects = Objects::new(MemoryStore::new());
        let v1 = objects
            .put("a", b"1".to_vec(), Precondition::Absent, None)
            .await
            .unwrap();
        let again = objects
            .put("a", b"x".to_vec(), Precondition::Absent, None)
            .await;
        assert!(
            matches!(again, Err(ObjectError::PreconditionFailed { .. })),
            "{again:?}"
        );
        let v2 = objects
            .put(
                "a",
                b"2".to_vec(),
                Precondition::VersionIs(v1.clone()),
                None,
            )
            .await
            .unwrap();
        let stale = objects.delete("a", Precondition::VersionIs(v1), None).await;
        assert!(
            matches!(stale, Err(ObjectError::PreconditionFailed { .. })),
            "{stale:?}"
        );

        objects.lock("a", lock("alice")).await.unwrap();
        let blocked = objects
            .put("a", b"3".to_vec(), Precondition::None, None)
            .await;
        let Err(ObjectError::Locked { holder, .. }) = blocked else {
            panic!("{blocked:?}");
        };
        assert_eq!(holder.id, "alice");
        let refused = objects.delete("a", Precondition::None, Some("bob")).await;
        assert!(
            matches!(refused, Err(ObjectError::Locked { .. })),
            "{refused:?}"
        );
        objects
            .put(
                "a",
                b"3".to_vec(),
                Precondition::VersionIs(v2),
                Some("alice"),
            )
            .await
            .unwrap();
        let other = objects.unlock("a", "bob").await;
        assert!(
            matches!(other, Err(ObjectError::Locked { .. })),
            "{other:?}"
        );
        objects.unlock("a", "alice").await.unwrap();
        let twice = objects.unlock("a", "alice").await;
        assert!(
            matches!(twice, Err(ObjectError::NotLocked { .. })),
            "{twice:?}"
        );
        for bad in ["", "/abs", "a/../b", "x.tflock"] {
            let refused = objects.put(bad, vec![], Precondition::None, None).await;
            assert!(
                matches!(refused, Err(ObjectError::Invalid(_))),
                "{bad}: {refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn with_lock_releases_on_every_way_out() {
        let objects = Objects::new(Arc::new(MemoryStore::new()));
        let held = objects
            .with_lock("job", lock("run-1"), async |info| {
                let holder = objects.lock_info("job").await.unwrap().unwrap();
                assert_eq!(holder.id, info.id);
                7
            })
            .await
            .unwrap();
        assert_eq!(held, 7);
        assert_eq!(objects.lock_info("job").await.unwrap(), None);

        let failed: Result<(), &str> = objects
            .with_lock("job", lock("run-2"), async |_| Err("the work failed"))
            .await
            .unwrap();
        assert!(failed.is_err());
        assert_eq!(objects.lock_info("job").await.unwrap(), None);

        let panicked =
            std::panic::AssertUnwindSafe(
                objects.with_lock("job", lock("run-3"), async |_| panic!("the work panicked")),
            );
        let outcome = futures_util::FutureExt::catch_unwind(panicked).await;
        assert!(outcome.is_err(), "the panic goes on");
        assert_eq!(objects.lock_info("job").await.unwrap(), None);

        // Dropped mid-work (a timeout): the lock is released by a task of its own.
        let slow = objects.with_lock("job", lock("run-4"), async |_| {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        });
        let cut = tokio::time::timeout(std::time::Duration::from_millis(20), slow).await;
        assert!(cut.is_err());
        for _ in 0..100 {
            if objects.lock_info("job").await.unwrap().is_none() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(objects.lock_info("job").await.unwrap(), None);
        // Held by someone else: the work never runs.
        objects.lock("job", lock("other")).await.unwrap();
        let refused = objects
            .with_lock("job", lock("run-5"), async |_| {
                unreachable!("ran without the lock")
            })
            .await;
        assert!(
            matches!(refused, Err(ObjectError::Locked { .. })),
            "{refused:?}"
        );
    }
}
