//! What the state layer needs of a store: the contract's object and lock operations, seen
//! from the host. The runtime's `Backend` implements it over a sandboxed plugin;
//! [`MemoryStore`](crate::MemoryStore) implements it in memory for fast tests.

use std::future::Future;

use stateplug_sdk::{LockInfo, Object, Precondition};

/// The refusals the state rules act on; every other failure is passed on as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// No object or lock at the path.
    NotFound,
    /// A write's or delete's precondition did not hold; nothing changed.
    PreconditionFailed,
    /// The lock is held by someone else.
    Locked(&'a LockInfo),
    /// Anything else (storage down, access denied, a broken plugin, ...).
    Other,
}

/// A store's error, readable by the state rules.
pub trait StoreError: std::error::Error + Send + Sync + 'static {
    /// Which refusal this is, if any.
    fn refusal(&self) -> Refusal<'_>;
}

/// An object store with compare-and-swap writes and locks: the `stateplug:backend` contract.
///
/// Concurrency contract (what [`Workspaces`](crate::Workspaces) relies on): every method may
/// be called from many tasks at once; a write or delete is atomic with its precondition, so
/// of two writers holding the same version exactly one succeeds; `lock` is atomic, so of two
/// takers exactly one gets the lock; an expired lock may be taken over. Listings may miss
/// objects written while they run.
pub trait ObjectStore: Send + Sync + 'static {
    /// What a call fails with.
    type Error: StoreError;

    /// Reads an object.
    fn read(&self, path: &str) -> impl Future<Output = Result<Object, Self::Error>> + Send;

    /// Writes an object if `precondition` holds; returns the new version token.
    fn write(
        &self,
        path: &str,
        data: Vec<u8>,
        precondition: Precondition,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;

    /// Deletes an object if `precondition` holds.
    fn delete(
        &self,
        path: &str,
        precondition: Precondition,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Every path starting with `prefix`, sorted.
    fn list_all(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;

    /// Takes the lock on `path`.
    fn lock(
        &self,
        path: &str,
        info: LockInfo,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Releases the lock on `path` if `id` is the holder's.
    fn unlock(&self, path: &str, id: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The lock on `path`, if any.
    fn lock_info(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<LockInfo>, Self::Error>> + Send;

    /// Every lock on a path starting with `prefix`, sorted by path.
    fn list_locks(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, LockInfo)>, Self::Error>> + Send;

    /// Breaks the lock on `path` whoever holds it; returns the broken lock.
    fn force_unlock(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<LockInfo>, Self::Error>> + Send;
}

/// A shared store is a store: what a clone of an `Arc` reaches is the same objects.
impl<T: ObjectStore> ObjectStore for std::sync::Arc<T> {
    type Error = T::Error;

    fn read(&self, path: &str) -> impl Future<Output = Result<Object, Self::Error>> + Send {
        (**self).read(path)
    }

    fn write(
        &self,
        path: &str,
        data: Vec<u8>,
        precondition: Precondition,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send {
        (**self).write(path, data, precondition)
    }

    fn delete(
        &self,
        path: &str,
        precondition: Precondition,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).delete(path, precondition)
    }

    fn list_all(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send {
        (**self).list_all(prefix)
    }

    fn lock(
        &self,
        path: &str,
        info: LockInfo,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).lock(path, info)
    }

    fn unlock(&self, path: &str, id: &str) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).unlock(path, id)
    }

    fn lock_info(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<LockInfo>, Self::Error>> + Send {
        (**self).lock_info(path)
    }

    fn list_locks(
        &self,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, LockInfo)>, Self::Error>> + Send {
        (**self).list_locks(prefix)
    }

    fn force_unlock(
        &self,
        path: &str,
    ) -> impl Future<Output = Result<Option<LockInfo>, Self::Error>> + Send {
        (**self).force_unlock(path)
    }
}
