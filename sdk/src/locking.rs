//! Locking for any store that has conditional writes.
//!
//! The lock on `path` is the object `path.tflock` holding the [`LockInfo`] JSON. Taking it is a
//! create-only write ([`Precondition::Absent`]); taking over an expired lock, unlocking and
//! force-unlocking are compare-and-swap on the lock object's version. So two hosts racing for
//! one lock can never both win, whatever the storage, as long as its conditional writes are
//! atomic.

use crate::path::{LOCK_SUFFIX, lock_path};
use crate::types::{Error, LockInfo, Precondition, Result};
use crate::{Store, log};

/// How often a lock operation re-reads the lock object when it changes under it.
const ATTEMPTS: usize = 8;

/// Takes the lock on `path`, or reports the holder.
pub fn lock<B: Store>(store: &B, path: &str, info: LockInfo) -> Result<()> {
    let lock_path = lock_path(path);
    let body = info.to_json();
    for _ in 0..ATTEMPTS {
        match store.write(&lock_path, body.clone(), Precondition::Absent) {
            Ok(_) => return Ok(()),
            Err(Error::PreconditionFailed) => {}
            Err(e) => return Err(e),
        }
        let current = match store.read(&lock_path) {
            Ok(current) => current,
            Err(Error::NotFound) => continue, // released in between: try again
            Err(e) => return Err(e),
        };
        let holder = LockInfo::from_json(&current.data, &lock_path)?;
        if !holder.is_expired() {
            return Err(Error::Locked(Box::new(holder)));
        }
        match store.write(
            &lock_path,
            body.clone(),
            Precondition::VersionIs(current.version),
        ) {
            Ok(_) => {
                log::warn(&format!(
                    "took over the expired lock {} of {} on `{path}`",
                    holder.id, holder.who
                ));
                return Ok(());
            }
            Err(Error::PreconditionFailed) => {} // someone else took it over first
            Err(e) => return Err(e),
        }
    }
    Err(contention(path))
}

/// Releases the lock on `path` if `id` is the holder's.
pub fn unlock<B: Store>(store: &B, path: &str, id: &str) -> Result<()> {
    let lock_path = lock_path(path);
    for _ in 0..ATTEMPTS {
        let current = store.read(&lock_path)?;
        let holder = LockInfo::from_json(&current.data, &lock_path)?;
        if holder.id != id {
            return Err(Error::Locked(Box::new(holder)));
        }
        match store.delete(&lock_path, Precondition::VersionIs(current.version)) {
            Err(Error::PreconditionFailed) => continue,
            other => return other,
        }
    }
    Err(contention(path))
}

/// The lock on `path`, if any.
pub fn lock_info<B: Store>(store: &B, path: &str) -> Result<Option<LockInfo>> {
    let lock_path = lock_path(path);
    match store.read(&lock_path) {
        Ok(current) => LockInfo::from_json(&current.data, &lock_path).map(Some),
        Err(Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the lock on `path` whoever holds it; returns the broken lock. A lock object that is
/// not valid JSON is removed too, reported with its raw content as `info`.
pub fn force_unlock<B: Store>(store: &B, path: &str) -> Result<Option<LockInfo>> {
    let lock_path = lock_path(path);
    for _ in 0..ATTEMPTS {
        let current = match store.read(&lock_path) {
            Ok(current) => current,
            Err(Error::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let holder = LockInfo::from_json(&current.data, &lock_path).unwrap_or_else(|_| LockInfo {
            info: format!(
                "unreadable lock object: {}",
                String::from_utf8_lossy(&current.data)
            ),
            ..LockInfo::default()
        });
        match store.delete(&lock_path, Precondition::VersionIs(current.version)) {
            Ok(()) => return Ok(Some(holder)),
            Err(Error::PreconditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(contention(path))
}

/// Every lock under `prefix`: the lock objects among the store's own listing.
pub fn list_locks<B: Store>(store: &B, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
    let mut locks = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list(prefix, cursor.as_deref())?;
        for lock_object in page.paths.iter().filter(|p| p.ends_with(LOCK_SUFFIX)) {
            let path = &lock_object[..lock_object.len() - LOCK_SUFFIX.len()];
            match store.read(lock_object) {
                Ok(current) => locks.push((
                    path.to_string(),
                    LockInfo::from_json(&current.data, lock_object)?,
                )),
                Err(Error::NotFound) => {} // released meanwhile
                Err(e) => return Err(e),
            }
        }
        match page.next_cursor {
            Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
            _ => return Ok(locks),
        }
    }
}

fn contention(path: &str) -> Error {
    Error::Unavailable(format!(
        "the lock on `{path}` kept changing during {ATTEMPTS} attempts; try again"
    ))
}
