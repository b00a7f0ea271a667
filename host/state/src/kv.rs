//! The key-value key space: keys in namespaces, with TTLs, glob listing, batches and
//! all-or-nothing transactions (an emulator's state, as LocalZure keeps it), on any store.
//!
//! Layout, under `~kv/<ns>/` (`~` never starts a workspace or an object path):
//! - `manifest`: the namespace's keys, each with the name of the object holding its value,
//!   its version and its expiry. It is the commit point: every change of the namespace is
//!   one compare-and-swap of the manifest;
//! - `values/<unix ms>-<uuid>`: one immutable object per value written, created before the
//!   manifest names it.
//!
//! So a transaction is all or nothing, also when the server dies in the middle and across
//! replicas: its values are written first, where no reader looks, and the manifest's
//! compare-and-swap makes all of its changes visible at once, or none (another writer's
//! commit in between makes it check its preconditions again on the new manifest). A crash
//! before the commit leaves only unnamed value objects, which [`Kv::sweep`] removes once
//! they are older than any call could be. A change that changes nothing writes nothing (a
//! sweep of a namespace with nothing expired reads only), and an emptied namespace's
//! manifest is deleted. An expired key reads as absent and is not listed;
//! the sweep takes it out of the manifest.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use stateplug_sdk::{Object, Precondition, path};

use crate::store::{ObjectStore, Refusal, StoreError};

/// Prefix of every key-value object.
pub const KV_PREFIX: &str = "~kv/";
/// Longest namespace name.
pub const MAX_NAMESPACE: usize = 128;
/// Most keys one batch or transaction may name.
pub const MAX_BATCH: usize = 1000;
/// Longest TTL.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Unnamed value objects older than this are leftovers of a writer that died.
const ORPHAN_AGE: Duration = Duration::from_secs(600);
/// Attempts of a commit that keeps meeting other writers' commits.
const ATTEMPTS: u32 = 200;

/// A key-value operation's failure.
#[derive(Debug, thiserror::Error)]
pub enum KvError<E> {
    /// A namespace, key, TTL or pattern that cannot be used; says which and why.
    #[error("{0}")]
    Invalid(String),
    /// More keys than [`MAX_BATCH`] in one batch or transaction.
    #[error("{count} keys in one request; at most {MAX_BATCH} are allowed, split it")]
    TooMany {
        /// How many were asked for.
        count: usize,
    },
    /// A transaction's precondition did not hold; nothing was changed.
    #[error("namespace `{namespace}`: nothing changed: {reason}")]
    Conflict {
        /// The namespace.
        namespace: String,
        /// The first precondition that failed, by key.
        reason: String,
    },
    /// The namespace kept changing under this writer.
    #[error("namespace `{0}` kept changing during {ATTEMPTS} attempts to commit; try again")]
    Contended(String),
    /// The namespace's manifest is not one this host wrote.
    #[error("namespace `{namespace}`: its manifest is unreadable ({reason}); clear the namespace")]
    Corrupt {
        /// The namespace.
        namespace: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(E),
}

/// The error of a key-value operation on store `S`.
pub type KvResult<T, S> = Result<T, KvError<<S as ObjectStore>::Error>>;

/// A key's value as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The bytes.
    pub data: Vec<u8>,
    /// Changes with every write of the key; for preconditions and ETags.
    pub version: String,
    /// When the key expires (unix ms), if it has a TTL.
    pub expires: Option<u64>,
}

/// One page of a key listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyPage {
    /// Keys, sorted ascending by bytes.
    pub keys: Vec<String>,
    /// Pass it back for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// What a transaction requires before it changes anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The key holds this version.
    Version(String, String),
    /// The key is absent (or expired).
    Absent(String),
}

/// One change of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Sets the key, with a TTL or none (a set without TTL clears the key's TTL).
    Set {
        /// The key.
        key: String,
        /// Its new value.
        value: Vec<u8>,
        /// Its TTL from the commit, if any.
        ttl: Option<Duration>,
    },
    /// Deletes the key (nothing when absent).
    Delete(String),
}

impl Change {
    fn key(&self) -> &str {
        match self {
            Change::Set { key, .. } | Change::Delete(key) => key,
        }
    }
}

/// A namespace's manifest: every key, sorted by bytes.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    keys: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The value object's name under `values/`; also the key's version.
    value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

/// The key-values of a store.
pub struct Kv<S> {
    store: S,
}

impl<S: ObjectStore> Kv<S> {
    /// The key-values kept in `store`.
    pub fn new(store: S) -> Kv<S> {
        Kv { store }
    }

    /// A key's value; `None` when absent or expired.
    pub async fn get(&self, namespace: &str, key: &str) -> KvResult<Option<Value>, S> {
        check_namespace(namespace)?;
        check_key(key)?;
        Ok(self
            .get_many(namespace, &[key.to_string()])
            .await?
            .remove(key)
            .flatten())
    }

    /// Several keys' values at once, from one manifest: what they were at one moment.
    pub async fn batch_get(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> KvResult<BTreeMap<String, Option<Value>>, S> {
        check_namespace(namespace)?;
        check_count(keys.len())?;
        for key in keys {
            check_key(key)?;
        }
        self.get_many(namespace, keys).await
    }

    /// Sets a key; a set without `ttl` clears the key's TTL. Returns the new version.
    pub async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> KvResult<String, S> {
        let change = Change::Set {
            key: key.to_string(),
            value,
            ttl,
        };
        let mut versions = self.transaction(namespace, &[], vec![change]).await?;
        Ok(versions.remove(key).flatten().unwrap_or_default())
    }

    /// Sets several keys at once, all with `ttl` (or none), all or nothing.
    pub async fn batch_set(
        &self,
        namespace: &str,
        values: BTreeMap<String, Vec<u8>>,
        ttl: Option<Duration>,
    ) -> KvResult<BTreeMap<String, String>, S> {
        let changes = values
            .into_iter()
            .map(|(key, value)| Change::Set { key, value, ttl })
            .collect();
        let versions = self.transaction(namespace, &[], changes).await?;
        Ok(versions
            .into_iter()
            .filter_map(|(key, version)| Some((key, version?)))
            .collect())
    }

    /// Deletes a key (nothing when absent).
    pub async fn delete(&self, namespace: &str, key: &str) -> KvResult<(), S> {
        let changes = vec![Change::Delete(key.to_string())];
        self.transaction(namespace, &[], changes).await.map(drop)
    }

    /// Changes only a key's TTL (`None` clears it); `false` when the key is absent.
    pub async fn set_ttl(
        &self,
        namespace: &str,
        key: &str,
        ttl: Option<Duration>,
    ) -> KvResult<bool, S> {
        check_namespace(namespace)?;
        check_key(key)?;
        let expires = expiry(ttl)?;
        let changed = self
            .commit(namespace, |manifest, now| {
                match manifest.keys.get_mut(key).filter(|e| e.live(now)) {
                    Some(entry) => {
                        entry.expires = expires;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            })
            .await?;
        Ok(changed)
    }

    /// Removes every key of the namespace.
    pub async fn clear(&self, namespace: &str) -> KvResult<(), S> {
        check_namespace(namespace)?;
        let removed = self
            .commit(namespace, |manifest, _| {
                Ok(std::mem::take(&mut manifest.keys))
            })
            .await?;
        for entry in removed.values() {
            self.remove_value(namespace, &entry.value).await;
        }
        Ok(())
    }

    /// The live keys matching `pattern` (a glob: `*` any run of characters, `/` included,
    /// `?` one character, `[...]` a class), sorted, one page of at most [`MAX_BATCH`] after
    /// `cursor`.
    pub async fn list(
        &self,
        namespace: &str,
        pattern: &str,
        cursor: Option<&str>,
    ) -> KvResult<KeyPage, S> {
        check_namespace(namespace)?;
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                KvError::Invalid(format!(
                    "`{}` is not a glob pattern: {e}",
                    stateplug_sdk::text::bounded(pattern, 200)
                ))
            })?
            .compile_matcher();
        let (manifest, _) = self.manifest(namespace).await?;
        let now = now_ms();
        let mut keys: Vec<String> = manifest
            .keys
            .into_iter()
            .filter(|(key, entry)| {
                entry.live(now)
                    && cursor.is_none_or(|c| key.as_str() > c)
                    && glob.is_match(key.as_str())
            })
            .map(|(key, _)| key)
            .take(MAX_BATCH + 1)
            .collect();
        let next_cursor = if keys.len() > MAX_BATCH {
            keys.truncate(MAX_BATCH);
            keys.last().cloned()
        } else {
            None
        };
        Ok(KeyPage { keys, next_cursor })
    }

    /// Applies `changes` if every one of `expect` holds, all or nothing; returns each changed
    /// key's new version (`None` for a deleted key). At most [`MAX_BATCH`] distinct keys in
    /// all. A failed expectation is
    /// [`KvError::Conflict`] naming the first that failed.
    pub async fn transaction(
        &self,
        namespace: &str,
        expect: &[Expect],
        changes: Vec<Change>,
    ) -> KvResult<BTreeMap<String, Option<String>>, S> {
        check_namespace(namespace)?;
        let named: std::collections::BTreeSet<&str> = expect
            .iter()
            .map(expected_key)
            .chain(changes.iter().map(Change::key))
            .collect();
        check_count(named.len())?;
        for key in expect
            .iter()
            .map(expected_key)
            .chain(changes.iter().map(Change::key))
        {
            check_key(key)?;
        }
        // The values first, under names no manifest has yet: invisible until the commit.
        let mut written = Vec::new();
        let mut planned = Vec::new();
        for change in changes {
            match change {
                Change::Set { key, value, ttl } => {
                    let expires = expiry(ttl);
                    let name = match expires {
                        Ok(_) => self.write_value(namespace, value).await,
                        Err(e) => Err(e),
                    };
                    let name = match name {
                        Ok(name) => name,
                        Err(e) => {
                            self.remove_values(namespace, &written).await;
                            return Err(e);
                        }
                    };
                    written.push(name.clone());
                    planned.push((key, Some((name, ttl))));
                }
                Change::Delete(key) => planned.push((key, None)),
            }
        }
        let committed = self
            .commit(namespace, |manifest, now| {
                if let Some(failed) = expect.iter().find(|e| !holds(manifest, e, now)) {
                    return Err(conflict(namespace, failed));
                }
                let mut versions = BTreeMap::new();
                let mut replaced = Vec::new();
                for (key, set) in &planned {
                    let old = match set {
                        Some((name, ttl)) => {
                            let expires = ttl.map(|ttl| now + ttl.as_millis() as u64);
                            versions.insert(key.clone(), Some(name.clone()));
                            let entry = Entry {
                                value: name.clone(),
                                expires,
                            };
                            manifest.keys.insert(key.clone(), entry)
                        }
                        None => {
                            versions.insert(key.clone(), None);
                            manifest.keys.remove(key)
                        }
                    };
                    replaced.extend(old.map(|e| e.value));
                }
                Ok((versions, replaced))
            })
            .await;
        match committed {
            Ok((versions, replaced)) => {
                // A value set twice in one transaction is not named by the manifest either.
                let named: Vec<&String> = versions.values().flatten().collect();
                let unnamed: Vec<String> = written
                    .into_iter()
                    .filter(|w| !named.contains(&w))
                    .collect();
                self.remove_values(namespace, &unnamed).await;
                self.remove_values(namespace, &replaced).await;
                Ok(versions)
            }
            Err(e) => {
                self.remove_values(namespace, &written).await;
                Err(e)
            }
        }
    }

    /// Takes expired keys out of the namespace's manifest and removes their values, and the
    /// values a writer that died left unnamed; returns how many keys expired.
    pub async fn sweep(&self, namespace: &str) -> KvResult<usize, S> {
        check_namespace(namespace)?;
        let expired = self
            .commit(namespace, |manifest, now| {
                let gone: Vec<String> = manifest
                    .keys
                    .iter()
                    .filter(|(_, e)| !e.live(now))
                    .map(|(k, _)| k.clone())
                    .collect();
                Ok(gone
                    .iter()
                    .filter_map(|k| manifest.keys.remove(k))
                    .collect::<Vec<_>>())
            })
            .await?;
        for entry in &expired {
            self.remove_value(namespace, &entry.value).await;
        }
        let (manifest, _) = self.manifest(namespace).await?;
        let named: std::collections::BTreeSet<&str> =
            manifest.keys.values().map(|e| e.value.as_str()).collect();
        let prefix = values_prefix(namespace);
        let stored = self.store.list_all(&prefix).await.map_err(KvError::Store)?;
        let old_before = now_ms().saturating_sub(ORPHAN_AGE.as_millis() as u64);
        for path in stored {
            let name = &path[prefix.len()..];
            let written_at = name
                .split_once('-')
                .and_then(|(ms, _)| ms.parse::<u64>().ok());
            if !named.contains(name) && written_at.is_some_and(|ms| ms < old_before) {
                self.remove_value(namespace, name).await;
            }
        }
        Ok(expired.len())
    }

    /// Every namespace that has a manifest.
    pub async fn namespaces(&self) -> KvResult<Vec<String>, S> {
        let paths = self
            .store
            .list_all(KV_PREFIX)
            .await
            .map_err(KvError::Store)?;
        Ok(paths
            .iter()
            .filter_map(|p| p.strip_prefix(KV_PREFIX)?.strip_suffix("/manifest"))
            .filter(|ns| check_namespace::<()>(ns).is_ok())
            .map(str::to_string)
            .collect())
    }

    /// Reads the keys' values from one manifest; a value replaced (and removed) between the
    /// manifest's read and its own is read again from a newer manifest.
    async fn get_many(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> KvResult<BTreeMap<String, Option<Value>>, S> {
        'again: for _ in 0..ATTEMPTS {
            let (manifest, _) = self.manifest(namespace).await?;
            let now = now_ms();
            let mut values = BTreeMap::new();
            for key in keys {
                let Some(entry) = manifest.keys.get(key).filter(|e| e.live(now)) else {
                    values.insert(key.clone(), None);
                    continue;
                };
                let path = format!("{}{}", values_prefix(namespace), entry.value);
                match self.store.read(&path).await {
                    Ok(object) => {
                        let value = Value {
                            data: object.data,
                            version: entry.value.clone(),
                            expires: entry.expires,
                        };
                        values.insert(key.clone(), Some(value));
                    }
                    Err(e) if e.refusal() == Refusal::NotFound => continue 'again,
                    Err(e) => return Err(KvError::Store(e)),
                }
            }
            return Ok(values);
        }
        Err(KvError::Contended(namespace.to_string()))
    }

    /// Applies `change` to the namespace's current manifest and commits it by compare-and-swap,
    /// again on the newer manifest when another writer committed first. A change that changes
    /// nothing writes nothing; one that leaves the namespace empty deletes its manifest.
    async fn commit<R>(
        &self,
        namespace: &str,
        mut change: impl FnMut(&mut Manifest, u64) -> Result<R, KvError<S::Error>>,
    ) -> KvResult<R, S> {
        let path = manifest_path(namespace);
        for attempt in 0..ATTEMPTS {
            let (mut manifest, stored) = self.manifest(namespace).await?;
            let result = change(&mut manifest, now_ms())?;
            let data = serde_json::to_vec(&manifest).unwrap_or_default();
            let written = match stored {
                None if manifest.keys.is_empty() => return Ok(result),
                Some(stored) if stored.data == data => return Ok(result),
                None => self
                    .store
                    .write(&path, data, Precondition::Absent)
                    .await
                    .map(drop),
                Some(stored) if manifest.keys.is_empty() => {
                    let precondition = Precondition::VersionIs(stored.version);
                    self.store.delete(&path, precondition).await
                }
                Some(stored) => {
                    let precondition = Precondition::VersionIs(stored.version);
                    self.store.write(&path, data, precondition).await.map(drop)
                }
            };
            match written {
                Ok(()) => return Ok(result),
                Err(e) if e.refusal() == Refusal::PreconditionFailed => {
                    tokio::time::sleep(crate::backoff::backoff(attempt)).await;
                }
                Err(e) => return Err(KvError::Store(e)),
            }
        }
        Err(KvError::Contended(namespace.to_string()))
    }

    /// The namespace's manifest, and the stored object it was read from (`None` before its
    /// first write and after it was emptied).
    async fn manifest(&self, namespace: &str) -> KvResult<(Manifest, Option<Object>), S> {
        match self.store.read(&manifest_path(namespace)).await {
            Ok(object) => {
                let manifest =
                    serde_json::from_slice(&object.data).map_err(|e| KvError::Corrupt {
                        namespace: namespace.to_string(),
                        reason: e.to_string(),
                    })?;
                Ok((manifest, Some(object)))
            }
            Err(e) if e.refusal() == Refusal::NotFound => Ok((Manifest::default(), None)),
            Err(e) => Err(KvError::Store(e)),
        }
    }

    async fn write_value(&self, namespace: &str, data: Vec<u8>) -> KvResult<String, S> {
        let name = format!("{:015}-{}", now_ms(), uuid::Uuid::new_v4().simple());
        let path = format!("{}{name}", values_prefix(namespace));
        self.store
            .write(&path, data, Precondition::Absent)
            .await
            .map_err(KvError::Store)?;
        Ok(name)
    }

    async fn remove_values(&self, namespace: &str, names: &[String]) {
        for name in names {
            self.remove_value(namespace, name).await;
        }
    }

    /// Removes a value object no manifest names any more; one left behind is swept later.
    async fn remove_value(&self, namespace: &str, name: &str) {
        let path = format!("{}{name}", values_prefix(namespace));
        if let Err(e) = self.store.delete(&path, Precondition::None).await {
            tracing::debug!(namespace, "a replaced value stays until the sweep: {e}");
        }
    }
}

fn manifest_path(namespace: &str) -> String {
    format!("{KV_PREFIX}{namespace}/manifest")
}

fn values_prefix(namespace: &str) -> String {
    format!("{KV_PREFIX}{namespace}/values/")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The expiry a TTL gives from now, checked against [`MAX_TTL`].
fn expiry<E>(ttl: Option<Duration>) -> Result<Option<u64>, KvError<E>> {
    match ttl {
        None => Ok(None),
        Some(ttl) if ttl.is_zero() || ttl > MAX_TTL => Err(KvError::Invalid(format!(
            "a TTL of {} is out of range: give one from 1s to 365d",
            humantime::format_duration(ttl)
        ))),
        Some(ttl) => Ok(Some(now_ms() + ttl.as_millis() as u64)),
    }
}

fn expected_key(expect: &Expect) -> &str {
    match expect {
        Expect::Version(key, _) | Expect::Absent(key) => key,
    }
}

fn holds(manifest: &Manifest, expect: &Expect, now: u64) -> bool {
    let live = |key: &str| manifest.keys.get(key).filter(|e| e.live(now));
    match expect {
        Expect::Version(key, version) => live(key).is_some_and(|e| e.value == *version),
        Expect::Absent(key) => live(key).is_none(),
    }
}

fn conflict<E>(namespace: &str, failed: &Expect) -> KvError<E> {
    let reason = match failed {
        Expect::Version(key, version) => {
            format!("key `{key}` is not at version `{version}` (it changed, or is absent)")
        }
        Expect::Absent(key) => format!("key `{key}` exists"),
    };
    KvError::Conflict {
        namespace: namespace.to_string(),
        reason,
    }
}

/// Checks a namespace name: 1 to [`MAX_NAMESPACE`] letters, digits, `.`, `_` or `-`.
pub fn check_namespace<E>(name: &str) -> Result<(), KvError<E>> {
    let ok = (1..=MAX_NAMESPACE).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != "..";
    if ok {
        return Ok(());
    }
    Err(KvError::Invalid(format!(
        "namespace `{}` is not valid: use 1 to {MAX_NAMESPACE} letters, digits, `.`, `_` or `-`",
        stateplug_sdk::text::bounded(name, 200)
    )))
}

/// Checks a key: the contract's path rules (`/` allowed).
fn check_key<E>(key: &str) -> Result<(), KvError<E>> {
    path::validate(key).map_err(|e| KvError::Invalid(format!("key: {e}")))
}

fn check_count<E>(count: usize) -> Result<(), KvError<E>> {
    if count > MAX_BATCH {
        return Err(KvError::TooMany { count });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory::MemoryStore;

    fn kv() -> Kv<Arc<MemoryStore>> {
        Kv::new(Arc::new(MemoryStore::new()))
    }

    fn values_in(kv: &Kv<Arc<MemoryStore>>, ns: &str) -> usize {
        let prefix = values_prefix(ns);
        kv.store
            .paths()
            .iter()
            .filter(|p| p.starts_with(&prefix))
            .count()
    }

    #[tokio::test]
    async fn set_get_delete_and_versions() {
        let kv = kv();
        assert_eq!(kv.get("app", "a/b").await.unwrap(), None);
        let v1 = kv.set("app", "a/b", b"1".to_vec(), None).await.unwrap();
        let v2 = kv.set("app", "a/b", b"2".to_vec(), None).await.unwrap();
        assert_ne!(v1, v2);
        let read = kv.get("app", "a/b").await.unwrap().unwrap();
        assert_eq!(
            (read.data.as_slice(), read.version.as_str()),
            (&b"2"[..], v2.as_str())
        );
        assert_eq!(read.expires, None);
        // Another namespace is another key space.
        assert_eq!(kv.get("other", "a/b").await.unwrap(), None);
        kv.delete("app", "a/b").await.unwrap();
        kv.delete("app", "a/b").await.unwrap();
        assert_eq!(kv.get("app", "a/b").await.unwrap(), None);
        assert_eq!(
            values_in(&kv, "app"),
            0,
            "replaced and deleted values are removed"
        );
    }

    #[tokio::test]
    async fn ttls_expire_are_read_changed_and_swept() {
        let kv = kv();
        kv.set(
            "cache",
            "short",
            b"x".to_vec(),
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap();
        kv.set(
            "cache",
            "long",
            b"y".to_vec(),
            Some(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
        kv.set("cache", "kept", b"z".to_vec(), None).await.unwrap();
        let long = kv.get("cache", "long").await.unwrap().unwrap();
        let in_an_hour = now_ms() + 3_600_000;
        assert!(
            long.expires.unwrap().abs_diff(in_an_hour) < 5_000,
            "{long:?}"
        );
        // PATCH: only the TTL changes; a set without TTL clears it.
        assert!(
            kv.set_ttl("cache", "long", Some(Duration::from_secs(60)))
                .await
                .unwrap()
        );
        let changed = kv.get("cache", "long").await.unwrap().unwrap();
        assert_eq!(
            (changed.data.as_slice(), changed.version),
            (&b"y"[..], long.version)
        );
        assert!(changed.expires.unwrap() < long.expires.unwrap());
        kv.set("cache", "long", b"y".to_vec(), None).await.unwrap();
        assert_eq!(
            kv.get("cache", "long").await.unwrap().unwrap().expires,
            None
        );
        assert!(!kv.set_ttl("cache", "missing", None).await.unwrap());

        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            kv.get("cache", "short").await.unwrap(),
            None,
            "expired reads as absent"
        );
        let listed = kv.list("cache", "*", None).await.unwrap().keys;
        assert_eq!(listed, ["kept", "long"]);
        assert_eq!(
            values_in(&kv, "cache"),
            3,
            "the expired value waits for the sweep"
        );
        assert_eq!(kv.sweep("cache").await.unwrap(), 1);
        assert_eq!(values_in(&kv, "cache"), 2);
        for bad in [Duration::ZERO, MAX_TTL + Duration::from_secs(1)] {
            let refused = kv.set("cache", "k", vec![], Some(bad)).await;
            assert!(matches!(refused, Err(KvError::Invalid(_))), "{refused:?}");
        }
    }

    #[tokio::test]
    async fn globs_list_sorted_and_paged() {
        let kv = kv();
        let mut values = BTreeMap::new();
        for key in [
            "users/1/name",
            "users/2/name",
            "users/10/mail",
            "groups/a",
            "u",
        ] {
            values.insert(key.to_string(), key.as_bytes().to_vec());
        }
        kv.batch_set("dir", values, None).await.unwrap();
        let list = |pattern: &'static str| {
            let kv = &kv;
            async move { kv.list("dir", pattern, None).await.unwrap().keys }
        };
        assert_eq!(
            list("users/*").await,
            ["users/1/name", "users/10/mail", "users/2/name"]
        );
        assert_eq!(list("*name").await, ["users/1/name", "users/2/name"]);
        assert_eq!(list("users/?/name").await, ["users/1/name", "users/2/name"]);
        assert_eq!(list("[gu]*").await.len(), 5);
        assert_eq!(list("[!u]*").await, ["groups/a"]);
        let refused = kv.list("dir", "[", None).await;
        assert!(matches!(refused, Err(KvError::Invalid(_))), "{refused:?}");

        let many: BTreeMap<String, Vec<u8>> =
            (0..1000).map(|i| (format!("k{i:04}"), vec![1])).collect();
        kv.batch_set("big", many, None).await.unwrap();
        kv.set("big", "k1000", vec![1], None).await.unwrap();
        let first = kv.list("big", "*", None).await.unwrap();
        assert_eq!(first.keys.len(), MAX_BATCH);
        let rest = kv
            .list("big", "*", first.next_cursor.as_deref())
            .await
            .unwrap();
        assert_eq!(
            (rest.keys.as_slice(), rest.next_cursor),
            (&["k1000".to_string()][..], None)
        );
    }

    #[tokio::test]
    async fn batches_clear_and_limits() {
        let kv = kv();
        let values: BTreeMap<String, Vec<u8>> = [("a", "1"), ("b", "2")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let versions = kv
            .batch_set("ns", values, Some(Duration::from_secs(90)))
            .await
            .unwrap();
        assert_eq!(versions.len(), 2);
        let keys = ["a", "b", "c"].map(String::from);
        let read = kv.batch_get("ns", &keys).await.unwrap();
        assert_eq!(read["a"].as_ref().unwrap().data, b"1");
        assert!(read["b"].as_ref().unwrap().expires.is_some());
        assert_eq!(read["c"], None);
        // A sweep with nothing expired reads only: the manifest keeps its version.
        let path = manifest_path("ns");
        let before = kv.store.read(&path).await.unwrap().version;
        assert_eq!(kv.sweep("ns").await.unwrap(), 0);
        assert_eq!(kv.store.read(&path).await.unwrap().version, before);
        assert_eq!(kv.namespaces().await.unwrap(), ["ns"]);
        kv.clear("ns").await.unwrap();
        assert!(kv.list("ns", "*", None).await.unwrap().keys.is_empty());
        assert_eq!(values_in(&kv, "ns"), 0);
        assert!(
            kv.namespaces().await.unwrap().is_empty(),
            "a cleared namespace is gone"
        );
        let too_many: Vec<String> = (0..=MAX_BATCH).map(|i| i.to_string()).collect();
        let refused = kv.batch_get("ns", &too_many).await;
        assert!(
            matches!(refused, Err(KvError::TooMany { count: 1001 })),
            "{refused:?}"
        );
        for (ns, key) in [("", "k"), ("a/b", "k"), ("ok", "../x"), ("ok", "")] {
            let refused = kv.set(ns, key, vec![], None).await;
            assert!(
                matches!(refused, Err(KvError::Invalid(_))),
                "{ns:?} {key:?}: {refused:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_transaction_that_fails_changes_nothing() {
        let kv = kv();
        let v = kv.set("tx", "balance", b"10".to_vec(), None).await.unwrap();
        kv.set("tx", "owner", b"ann".to_vec(), None).await.unwrap();
        let before = values_in(&kv, "tx");
        let changes = vec![
            Change::Set {
                key: "balance".into(),
                value: b"0".to_vec(),
                ttl: None,
            },
            Change::Delete("owner".into()),
            Change::Set {
                key: "new".into(),
                value: b"n".to_vec(),
                ttl: None,
            },
        ];
        let expect = [
            Expect::Version("balance".into(), v.clone()),
            Expect::Absent("owner".into()),
        ];
        let failed = kv.transaction("tx", &expect, changes.clone()).await;
        let Err(KvError::Conflict { reason, .. }) = failed else {
            panic!("{failed:?}");
        };
        assert!(reason.contains("key `owner` exists"), "{reason}");
        assert_eq!(kv.get("tx", "balance").await.unwrap().unwrap().data, b"10");
        assert!(kv.get("tx", "owner").await.unwrap().is_some());
        assert_eq!(kv.get("tx", "new").await.unwrap(), None);
        assert_eq!(
            values_in(&kv, "tx"),
            before,
            "the failed transaction's values are removed"
        );

        let expect = [Expect::Version("balance".into(), v)];
        let versions = kv.transaction("tx", &expect, changes).await.unwrap();
        assert_eq!(versions["owner"], None);
        assert_eq!(kv.get("tx", "balance").await.unwrap().unwrap().data, b"0");
        assert_eq!(kv.get("tx", "owner").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_commit_that_fails_and_a_writer_that_died_leave_nothing_visible() {
        let kv = kv();
        kv.set("tx", "a", b"1".to_vec(), None).await.unwrap();
        // The store refuses the manifest write: the commit fails, nothing changes.
        kv.store.fail_writes_under(&manifest_path("tx"));
        let failed = kv.set("tx", "a", b"2".to_vec(), None).await;
        assert!(matches!(failed, Err(KvError::Store(_))), "{failed:?}");
        assert_eq!(kv.get("tx", "a").await.unwrap().unwrap().data, b"1");
        assert_eq!(
            values_in(&kv, "tx"),
            1,
            "the value of the failed commit is removed"
        );

        // A writer that died after writing its value, before its commit: its value is named
        // by no manifest; the sweep removes it once it is old, and leaves a fresh one (a
        // commit may still be on its way).
        let kv = self::kv();
        kv.set("tx", "a", b"1".to_vec(), None).await.unwrap();
        let orphan = format!("{}000000000000001-dead", values_prefix("tx"));
        let fresh = format!("{}{:015}-live", values_prefix("tx"), now_ms());
        for path in [&orphan, &fresh] {
            let write = kv.store.write(path, b"2".to_vec(), Precondition::Absent);
            write.await.unwrap();
        }
        assert_eq!(kv.sweep("tx").await.unwrap(), 0);
        let left = kv.store.paths();
        assert!(!left.contains(&orphan) && left.contains(&fresh), "{left:?}");
        assert_eq!(kv.get("tx", "a").await.unwrap().unwrap().data, b"1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transactions_on_one_namespace_lose_nothing() {
        let kv = Arc::new(kv());
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let kv = kv.clone();
                tokio::spawn(async move {
                    for n in 0..10 {
                        loop {
                            let current = kv.get("count", "total").await.unwrap();
                            let (value, expect) = match &current {
                                Some(v) => {
                                    let total: u64 =
                                        String::from_utf8_lossy(&v.data).parse().unwrap();
                                    (
                                        total + 1,
                                        Expect::Version("total".into(), v.version.clone()),
                                    )
                                }
                                None => (1, Expect::Absent("total".into())),
                            };
                            let changes = vec![
                                Change::Set {
                                    key: "total".into(),
                                    value: value.to_string().into_bytes(),
                                    ttl: None,
                                },
                                Change::Set {
                                    key: format!("by/{i}/{n}"),
                                    value: vec![],
                                    ttl: None,
                                },
                            ];
                            match kv.transaction("count", &[expect], changes).await {
                                Ok(_) => break,
                                Err(KvError::Conflict { .. }) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let total = kv.get("count", "total").await.unwrap().unwrap();
        assert_eq!(total.data, b"160");
        assert_eq!(
            kv.list("count", "by/*", None).await.unwrap().keys.len(),
            160
        );
        assert_eq!(
            values_in(&kv, "count"),
            161,
            "exactly the named values are kept"
        );
    }
}
