//! Terraform workspaces on top of any [`ObjectStore`], with the rules that keep a team's state
//! safe whatever the storage. Where each object lives: [`stateplug_sdk::layout`].
//!
//! Every write is a compare-and-swap against the version that was checked, so two writers
//! can never lose an update, with or without locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use stateplug_sdk::layout::{self, DEFAULT_WORKSPACE};
use stateplug_sdk::{LockInfo, Object, Precondition};

use crate::audit::{Audit, DEFAULT_AUDIT_RETENTION};
use crate::doc::{StateDoc, check_lock_id, manages_resources};
use crate::error::Error;
use crate::store::{ObjectStore, Refusal, StoreError};

/// The state layer's error for store `S`.
pub type StateError<S> = Error<<S as ObjectStore>::Error>;

/// Default number of versions kept per workspace.
pub const DEFAULT_HISTORY: usize = 10;

/// How the state layer behaves.
#[derive(Debug, Clone)]
pub struct StateOptions {
    /// Versions kept per workspace (0 keeps none).
    pub history: usize,
    /// Locks taken without an expiry get this one; a stale lock can then be taken over.
    pub lock_ttl: Option<Duration>,
    /// Audit events kept per workspace ([`Workspaces::audit`]; at least 1).
    pub audit_retention: usize,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            history: DEFAULT_HISTORY,
            lock_ttl: None,
            audit_retention: DEFAULT_AUDIT_RETENTION,
        }
    }
}

/// The workspaces kept in one store, with Terraform's rules enforced on every change.
///
/// Concurrency: call it from any number of tasks. Writes to one workspace are serialized in
/// this process (clones share that), and every write is a compare-and-swap on the version the
/// rules were checked against, so writers in other processes (another `serve` replica, the
/// CLI) never lose an update either: the loser is refused and reads again.
pub struct Workspaces<S> {
    store: S,
    options: StateOptions,
    /// One writer at a time per workspace in this process: the check-then-CAS of a write
    /// then holds even with a plugin whose version tokens cannot be trusted.
    writers: Arc<std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// How a write is made.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// The lock id the writer holds, if it locked the workspace.
    pub lock_id: Option<String>,
    /// Skip the lineage and serial rules (the write is logged as forced).
    pub force: bool,
}

/// What a listing says about one workspace.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceInfo {
    /// Its name.
    pub name: String,
    /// Serial of the stored state (absent when there is no state or no serial).
    pub serial: Option<u64>,
    /// Lineage of the stored state.
    pub lineage: Option<String>,
    /// Size of the stored state in bytes (0 without state).
    pub size: usize,
    /// When the current state was written (RFC 3339), known when history is kept.
    pub updated: Option<String>,
    /// Who holds its lock.
    pub lock: Option<LockInfo>,
}

/// What a write stored, with the serials the audit trail records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The new version token.
    pub version: String,
    /// The serial of the state replaced (`None` when there was none, or it had no serial).
    pub serial_before: Option<u64>,
    /// The serial of the state stored.
    pub serial_after: u64,
}

/// One kept version of a workspace.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// The version's serial.
    pub serial: u64,
    /// Its lineage.
    pub lineage: Option<String>,
    /// Its size in bytes.
    pub size: usize,
    /// When it was written (RFC 3339).
    pub saved_at: String,
}

/// One kept version of a workspace with its bytes, as [`Workspaces::kept_versions`] reads it
/// and [`Workspaces::replace_history`] writes it: what copying a workspace's history to
/// another store needs (its time of writing is part of where it is kept, so it is copied too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptVersion {
    /// The version's serial.
    pub serial: u64,
    /// When it was written (unix milliseconds).
    pub saved_at_ms: u64,
    /// The state as it was written.
    pub data: Vec<u8>,
}

/// What [`Workspaces::replace_history`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HistoryChange {
    /// Versions written (missing, or kept with other bytes).
    pub written: usize,
    /// Versions deleted (not among the ones given).
    pub deleted: usize,
}

/// A lock broken by force, as recorded.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct BrokenLock {
    /// The lock that was removed.
    pub lock: LockInfo,
    /// Who removed it.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

pub(crate) fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn rejected<E>(workspace: &str, reason: impl Into<String>) -> Error<E> {
    Error::Rejected {
        workspace: workspace.to_string(),
        reason: reason.into(),
    }
}

impl<S: Clone> Clone for Workspaces<S> {
    fn clone(&self) -> Self {
        Workspaces {
            store: self.store.clone(),
            options: self.options.clone(),
            writers: self.writers.clone(),
        }
    }
}

/// Checks a workspace name; the error says what a name may be.
pub fn check_workspace(name: &str) -> Result<(), String> {
    layout::check_workspace(name).map_err(|e| match e {
        stateplug_sdk::Error::InvalidPath(message) => message,
        other => other.to_string(),
    })
}

fn check_name<E>(workspace: &str) -> Result<(), Error<E>> {
    check_workspace(workspace).map_err(Error::Invalid)
}

/// Where a workspace's state is, after checking its name.
fn state_path<E>(workspace: &str) -> Result<String, Error<E>> {
    check_name(workspace)?;
    Ok(layout::state_path(workspace))
}

fn is<E: StoreError>(e: &E, refusal: Refusal<'_>) -> bool {
    e.refusal() == refusal
}

impl<S: ObjectStore> Workspaces<S> {
    /// Workspaces stored in `store`.
    pub fn new(store: S, options: StateOptions) -> Workspaces<S> {
        Workspaces {
            store,
            options,
            writers: Arc::default(),
        }
    }

    /// Waits for the workspace's other writers in this process.
    async fn writer(&self, workspace: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
            writers.entry(workspace.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The audit trail kept in the same store, `audit_retention` events per workspace.
    pub fn audit(&self) -> Audit<S>
    where
        S: Clone,
    {
        Audit::new(self.store.clone(), self.options.audit_retention)
    }

    /// The stored state of a workspace, if any.
    pub async fn get(&self, workspace: &str) -> Result<Option<Object>, StateError<S>> {
        let path = state_path(workspace)?;
        match self.store.read(&path).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if is(&e, Refusal::NotFound) => Ok(None),
            Err(e) => Err(Error::Store(e)),
        }
    }

    /// Stores a new state for a workspace after checking the lock and Terraform's rules;
    /// returns the new version token.
    pub async fn put(
        &self,
        workspace: &str,
        data: Vec<u8>,
        options: &WriteOptions,
    ) -> Result<String, StateError<S>> {
        Ok(self
            .put_with_serials(workspace, data, options)
            .await?
            .version)
    }

    /// [`put`](Self::put), also saying which serial the state replaced and which it stored
    /// (for the audit trail, without reading the state again).
    pub async fn put_with_serials(
        &self,
        workspace: &str,
        data: Vec<u8>,
        options: &WriteOptions,
    ) -> Result<Stored, StateError<S>> {
        let path = state_path(workspace)?;
        let new = StateDoc::parse(&data).map_err(|reason| rejected(workspace, reason))?;
        let _writer = self.writer(workspace).await;
        self.check_lock(workspace, &path, options.lock_id.as_deref())
            .await?;
        let current = self.get(workspace).await?;
        let mut serial_before = None;
        let precondition = match &current {
            Some(current) if options.force => {
                serial_before = StateDoc::parse(&current.data).ok().map(|d| d.serial);
                tracing::warn!(
                    workspace,
                    serial = new.serial,
                    "forced write: lineage and serial rules skipped"
                );
                Precondition::VersionIs(current.version.clone())
            }
            Some(current) => {
                let stored = StateDoc::parse(&current.data).map_err(|reason| {
                    rejected(
                        workspace,
                        format!(
                            "the stored state is not a state document the rules can compare \
                             with ({reason}); replace it with a forced push \
                             (`stateplug state push --force`), which is logged"
                        ),
                    )
                })?;
                stored
                    .check_replacement(&new)
                    .map_err(|reason| rejected(workspace, reason))?;
                serial_before = Some(stored.serial);
                Precondition::VersionIs(current.version.clone())
            }
            None => Precondition::Absent,
        };
        let size = data.len();
        let version = match self.store.write(&path, data.clone(), precondition).await {
            Ok(version) => version,
            Err(e) if is(&e, Refusal::PreconditionFailed) => {
                return Err(rejected(
                    workspace,
                    "the state changed while this write was checked (another writer); read it \
                     again and retry",
                ));
            }
            Err(e) => return Err(Error::Store(e)),
        };
        tracing::info!(workspace, serial = new.serial, size, "state stored");
        self.keep_history(workspace, new.serial, data).await;
        Ok(Stored {
            version,
            serial_before,
            serial_after: new.serial,
        })
    }

    /// Deletes a workspace's state (its history stays). Refused while locked by someone
    /// else or while the state still manages resources, unless `force`.
    pub async fn delete(
        &self,
        workspace: &str,
        lock_id: Option<&str>,
        force: bool,
    ) -> Result<(), StateError<S>> {
        self.delete_with_serial(workspace, lock_id, force)
            .await
            .map(|_| ())
    }

    /// [`delete`](Self::delete), also saying the serial of the state deleted (`None` when
    /// there was none, or it had no serial), for the audit trail.
    pub async fn delete_with_serial(
        &self,
        workspace: &str,
        lock_id: Option<&str>,
        force: bool,
    ) -> Result<Option<u64>, StateError<S>> {
        let path = state_path(workspace)?;
        let _writer = self.writer(workspace).await;
        if !force {
            self.check_lock(workspace, &path, lock_id).await?;
        }
        let Some(current) = self.get(workspace).await? else {
            return Ok(None);
        };
        if !force && manages_resources(&current.data) {
            return Err(rejected(
                workspace,
                "the state still manages resources; destroy them first or delete with force",
            ));
        }
        let serial = StateDoc::parse(&current.data).ok().map(|d| d.serial);
        match self
            .store
            .delete(&path, Precondition::VersionIs(current.version))
            .await
        {
            Err(e) if is(&e, Refusal::PreconditionFailed) => Err(rejected(
                workspace,
                "the state changed while it was being deleted; try again",
            )),
            other => other.map(|()| serial).map_err(Error::Store),
        }
    }

    /// Locks a workspace. A lock without expiry gets the configured `lock_ttl`.
    pub async fn lock(
        &self,
        workspace: &str,
        mut info: LockInfo,
    ) -> Result<LockInfo, StateError<S>> {
        let path = state_path(workspace)?;
        check_lock_id(&info.id).map_err(Error::Invalid)?;
        // Terraform parses `Created` of any lock it meets (an S3/DynamoDB lock taken by
        // stateplug included) and fails on an empty one.
        if info.created.is_empty() {
            info.created = rfc3339_ms(now_ms());
        }
        if info.expires.is_none() {
            info.expires = self
                .options
                .lock_ttl
                .map(|ttl| now_ms() + ttl.as_millis() as u64);
        }
        self.store
            .lock(&path, info.clone())
            .await
            .map_err(Error::Store)?;
        Ok(info)
    }

    /// Releases a workspace's lock held under `id`.
    pub async fn unlock(&self, workspace: &str, id: &str) -> Result<(), StateError<S>> {
        let path = state_path(workspace)?;
        match self.store.unlock(&path, id).await {
            Err(e) if is(&e, Refusal::NotFound) => Err(Error::NotLocked {
                workspace: workspace.to_string(),
            }),
            other => other.map_err(Error::Store),
        }
    }

    /// The lock on a workspace, if any.
    pub async fn lock_info(&self, workspace: &str) -> Result<Option<LockInfo>, StateError<S>> {
        let path = state_path(workspace)?;
        self.store.lock_info(&path).await.map_err(Error::Store)
    }

    /// Breaks a workspace's lock whoever holds it, logs it, and records who did it.
    pub async fn force_unlock(
        &self,
        workspace: &str,
        by: &str,
    ) -> Result<Option<LockInfo>, StateError<S>> {
        let path = state_path(workspace)?;
        let Some(broken) = self.store.force_unlock(&path).await.map_err(Error::Store)? else {
            return Ok(None);
        };
        tracing::warn!(
            workspace,
            lock_id = broken.id,
            holder = broken.who,
            by,
            "lock broken by force-unlock"
        );
        let at = now_ms();
        let record = BrokenLock {
            lock: broken.clone(),
            by: by.to_string(),
            at: rfc3339_ms(at),
        };
        let body = serde_json::to_vec_pretty(&record).unwrap_or_default();
        // Records are named by millisecond: one made in the same millisecond (a script, another
        // host) must not be overwritten, so each is created at the next free one.
        let mut ms = at;
        loop {
            let audit = layout::audit_path(workspace, ms);
            match self
                .store
                .write(&audit, body.clone(), Precondition::Absent)
                .await
            {
                Err(e) if is(&e, Refusal::PreconditionFailed) && ms < at + 1000 => ms += 1,
                Err(e) => {
                    tracing::error!(workspace, "could not record the broken lock: {e}");
                    break;
                }
                Ok(_) => break,
            }
        }
        Ok(Some(broken))
    }

    /// Force-unlock records of a workspace, oldest first.
    pub async fn broken_locks(&self, workspace: &str) -> Result<Vec<BrokenLock>, StateError<S>> {
        check_name(workspace)?;
        let mut records = Vec::new();
        let paths = self.list(&layout::audit_prefix(workspace)).await?;
        for path in paths {
            let object = self.store.read(&path).await.map_err(Error::Store)?;
            if let Ok(record) = serde_json::from_slice(&object.data) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Names of all workspaces with state, plus `default`, sorted.
    pub async fn names(&self) -> Result<Vec<String>, StateError<S>> {
        let mut names: Vec<String> = self
            .list("")
            .await?
            .iter()
            .filter_map(|path| layout::workspace_of_state(path).map(str::to_string))
            .collect();
        if !names.iter().any(|n| n == DEFAULT_WORKSPACE) {
            names.push(DEFAULT_WORKSPACE.to_string());
        }
        names.sort();
        Ok(names)
    }

    /// Every workspace with its serial, lineage, size, update time and lock holder.
    pub async fn infos(&self) -> Result<Vec<WorkspaceInfo>, StateError<S>> {
        let mut infos = Vec::new();
        for name in self.names().await? {
            let state = self.get(&name).await?;
            let doc = state.as_ref().and_then(|s| StateDoc::parse(&s.data).ok());
            let updated = self
                .history_paths(&name)
                .await?
                .last()
                .map(|(_, ms, _)| rfc3339_ms(*ms));
            infos.push(WorkspaceInfo {
                serial: doc.as_ref().map(|d| d.serial),
                lineage: doc.map(|d| d.lineage),
                size: state.map(|s| s.data.len()).unwrap_or(0),
                updated: updated.filter(|_| self.options.history > 0),
                lock: self.lock_info(&name).await?,
                name,
            });
        }
        Ok(infos)
    }

    /// All held locks, by workspace (a workspace can be locked before it has state).
    pub async fn locks(&self) -> Result<Vec<(String, LockInfo)>, StateError<S>> {
        let locks = self.store.list_locks("").await.map_err(Error::Store)?;
        Ok(locks
            .into_iter()
            .filter_map(|(path, lock)| Some((layout::workspace_of_state(&path)?.to_string(), lock)))
            .collect())
    }

    /// The kept versions of a workspace, newest first.
    pub async fn history(&self, workspace: &str) -> Result<Vec<HistoryEntry>, StateError<S>> {
        check_name(workspace)?;
        let mut entries = Vec::new();
        for (serial, ms, path) in self.history_paths(workspace).await?.into_iter().rev() {
            let object = self.store.read(&path).await.map_err(Error::Store)?;
            entries.push(HistoryEntry {
                serial,
                lineage: StateDoc::parse(&object.data).ok().map(|d| d.lineage),
                size: object.data.len(),
                saved_at: rfc3339_ms(ms),
            });
        }
        Ok(entries)
    }

    /// The kept versions of a workspace with their bytes, oldest first.
    pub async fn kept_versions(&self, workspace: &str) -> Result<Vec<KeptVersion>, StateError<S>> {
        check_name(workspace)?;
        let mut versions = Vec::new();
        for (serial, saved_at_ms, path) in self.history_paths(workspace).await? {
            let object = self.store.read(&path).await.map_err(Error::Store)?;
            versions.push(KeptVersion {
                serial,
                saved_at_ms,
                data: object.data,
            });
        }
        Ok(versions)
    }

    /// Makes the kept versions of a workspace exactly `versions` (another store's, as
    /// [`kept_versions`](Self::kept_versions) read them): each is written verbatim where its
    /// serial and time say, unless already kept with the same bytes, then every other kept
    /// version is deleted. Refused, with nothing changed, while the workspace is locked under
    /// another id than `lock_id`, or when a version is not a state document of its serial.
    /// The versions are written before any is deleted, so an interrupted call leaves more
    /// versions, never fewer, and calling it again completes it. The number kept is not
    /// capped here: the next write prunes to `history`.
    pub async fn replace_history(
        &self,
        workspace: &str,
        versions: &[KeptVersion],
        lock_id: Option<&str>,
    ) -> Result<HistoryChange, StateError<S>> {
        let path = state_path(workspace)?;
        let mut wanted = HashMap::new();
        for version in versions {
            let doc = StateDoc::parse(&version.data).map_err(|reason| {
                rejected(
                    workspace,
                    format!("the kept version of serial {}: {reason}", version.serial),
                )
            })?;
            if doc.serial != version.serial {
                return Err(rejected(
                    workspace,
                    format!(
                        "a kept version given as serial {} holds a state of serial {}",
                        version.serial, doc.serial
                    ),
                ));
            }
            let at = layout::history_path(workspace, version.serial, version.saved_at_ms);
            if wanted.insert(at, &version.data).is_some() {
                return Err(rejected(
                    workspace,
                    format!(
                        "two kept versions of serial {} were written at the same time",
                        version.serial
                    ),
                ));
            }
        }
        let _writer = self.writer(workspace).await;
        self.check_lock(workspace, &path, lock_id).await?;
        // Only a version kept where a wanted one goes is read (to compare its bytes); the
        // others are deleted unread.
        let mut kept = HashMap::new();
        for (_, _, at) in self.history_paths(workspace).await? {
            let data = match wanted.contains_key(&at) {
                true => Some(self.store.read(&at).await.map_err(Error::Store)?.data),
                false => None,
            };
            kept.insert(at, data);
        }
        let mut change = HistoryChange::default();
        let mut missing: Vec<_> = wanted
            .iter()
            .filter(|(at, data)| kept.get(*at).and_then(Option::as_ref) != Some(**data))
            .collect();
        missing.sort_by_key(|(at, _)| *at);
        for (at, data) in missing {
            self.store
                .write(at, data.to_vec(), Precondition::None)
                .await
                .map_err(Error::Store)?;
            change.written += 1;
        }
        let mut extra: Vec<_> = kept.keys().filter(|at| !wanted.contains_key(*at)).collect();
        extra.sort();
        for at in extra {
            self.store
                .delete(at, Precondition::None)
                .await
                .map_err(Error::Store)?;
            change.deleted += 1;
        }
        if change != HistoryChange::default() {
            tracing::info!(
                workspace,
                written = change.written,
                deleted = change.deleted,
                "history replaced"
            );
        }
        Ok(change)
    }

    /// Makes a kept version current again, as a new write with a serial above the current
    /// one (the past is never rewritten).
    pub async fn rollback(
        &self,
        workspace: &str,
        serial: u64,
        lock_id: Option<&str>,
    ) -> Result<u64, StateError<S>> {
        let stored = self
            .rollback_with_serials(workspace, serial, lock_id)
            .await?;
        Ok(stored.serial_after)
    }

    /// [`rollback`](Self::rollback), also saying the serial replaced and the new one, for
    /// the audit trail.
    pub async fn rollback_with_serials(
        &self,
        workspace: &str,
        serial: u64,
        lock_id: Option<&str>,
    ) -> Result<Stored, StateError<S>> {
        check_name(workspace)?;
        let Some((_, _, path)) = self
            .history_paths(workspace)
            .await?
            .into_iter()
            .rfind(|(s, _, _)| *s == serial)
        else {
            return Err(rejected(
                workspace,
                format!("no kept version has serial {serial}; see `state history {workspace}`"),
            ));
        };
        let kept = self.store.read(&path).await.map_err(Error::Store)?;
        let old = StateDoc::parse(&kept.data).map_err(|reason| rejected(workspace, reason))?;
        if old.encrypted {
            return Err(rejected(
                workspace,
                "an encrypted state cannot be given a new serial here; roll back with OpenTofu",
            ));
        }
        let current_serial = match self.get(workspace).await? {
            Some(current) => StateDoc::parse(&current.data)
                .map(|d| d.serial)
                .unwrap_or(0),
            None => 0,
        };
        let new_serial = current_serial.max(serial) + 1;
        let mut value = old.value;
        value["serial"] = Value::from(new_serial);
        // A `Value` always serializes (its keys are strings).
        let data = serde_json::to_vec_pretty(&value).unwrap_or_default();
        let options = WriteOptions {
            lock_id: lock_id.map(str::to_string),
            force: false,
        };
        self.put_with_serials(workspace, data, &options).await
    }

    /// Refuses when the workspace is locked under another id than `lock_id`.
    async fn check_lock(
        &self,
        workspace: &str,
        path: &str,
        lock_id: Option<&str>,
    ) -> Result<(), StateError<S>> {
        match self.store.lock_info(path).await.map_err(Error::Store)? {
            Some(holder) if Some(holder.id.as_str()) != lock_id && !holder.is_expired() => {
                Err(Error::Locked {
                    workspace: workspace.to_string(),
                    holder: Box::new(holder),
                })
            }
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StateError<S>> {
        self.store.list_all(prefix).await.map_err(Error::Store)
    }

    /// `(serial, unix ms, path)` of the kept versions, oldest first.
    async fn history_paths(
        &self,
        workspace: &str,
    ) -> Result<Vec<(u64, u64, String)>, StateError<S>> {
        let mut entries: Vec<(u64, u64, String)> = self
            .list(&layout::history_prefix(workspace))
            .await?
            .into_iter()
            .filter_map(|path| {
                let (serial, ms) = layout::parse_history_path(workspace, &path)?;
                Some((serial, ms, path))
            })
            .collect();
        entries.sort_by_key(|(_, ms, _)| *ms);
        Ok(entries)
    }

    /// Keeps the version just written and prunes beyond `history`. A failure here does not
    /// undo the write; it is logged.
    async fn keep_history(&self, workspace: &str, serial: u64, data: Vec<u8>) {
        if self.options.history == 0 {
            return;
        }
        let path = layout::history_path(workspace, serial, now_ms());
        let kept = async {
            self.store
                .write(&path, data, Precondition::None)
                .await
                .map_err(Error::Store)?;
            let entries = self.history_paths(workspace).await?;
            let excess = entries.len().saturating_sub(self.options.history);
            for (_, _, old) in &entries[..excess] {
                self.store
                    .delete(old, Precondition::None)
                    .await
                    .map_err(Error::Store)?;
            }
            Ok::<_, StateError<S>>(())
        };
        if let Err(e) = kept.await {
            tracing::error!(workspace, "could not keep the state's history: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryError, MemoryStore};

    type Ws = Workspaces<MemoryStore>;
    type Outcome<T> = Result<T, StateError<MemoryStore>>;

    fn workspaces(history: usize) -> Ws {
        let options = StateOptions {
            history,
            ..StateOptions::default()
        };
        Workspaces::new(MemoryStore::new(), options)
    }

    fn state(serial: u64, lineage: &str) -> Vec<u8> {
        format!(r#"{{"version":4,"serial":{serial},"lineage":"{lineage}","resources":[]}}"#)
            .into_bytes()
    }

    /// A state told apart from others of its serial by an output.
    fn state_with(serial: u64, lineage: &str, output: &str) -> Vec<u8> {
        format!(
            r#"{{"version":4,"serial":{serial},"lineage":"{lineage}","resources":[],
                "outputs":{{"v":{{"value":"{output}","type":"string"}}}}}}"#
        )
        .into_bytes()
    }

    fn managing(serial: u64, lineage: &str) -> Vec<u8> {
        format!(
            r#"{{"version":4,"serial":{serial},"lineage":"{lineage}","resources":[
                {{"mode":"managed","type":"null_resource","name":"a","instances":[]}}]}}"#
        )
        .into_bytes()
    }

    /// OpenTofu's encrypted envelope.
    fn encrypted(serial: u64, lineage: &str) -> Vec<u8> {
        format!(
            r#"{{"serial":{serial},"lineage":"{lineage}","encrypted_data":"x","encryption_version":"v0"}}"#
        )
        .into_bytes()
    }

    fn plain() -> WriteOptions {
        WriteOptions::default()
    }

    fn forced() -> WriteOptions {
        WriteOptions {
            lock_id: None,
            force: true,
        }
    }

    fn holding(id: &str) -> WriteOptions {
        WriteOptions {
            lock_id: Some(id.to_string()),
            force: false,
        }
    }

    fn lock(id: &str) -> LockInfo {
        LockInfo {
            id: id.to_string(),
            operation: "OperationTypeApply".into(),
            who: format!("{id}@laptop"),
            ..LockInfo::default()
        }
    }

    async fn stored(ws: &Ws, workspace: &str) -> Option<Vec<u8>> {
        ws.get(workspace).await.unwrap().map(|o| o.data)
    }

    /// The reason of a refusal; any other outcome fails the test.
    #[track_caller]
    fn reason<T: std::fmt::Debug>(outcome: Outcome<T>) -> String {
        match outcome {
            Err(Error::Rejected { reason, .. }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// The id of the lock in the way; any other outcome fails the test.
    #[track_caller]
    fn locked_by<T: std::fmt::Debug>(outcome: Outcome<T>) -> String {
        match outcome {
            Err(e @ Error::Locked { .. }) => {
                assert!(e.is_locked());
                e.holder().unwrap().id.clone()
            }
            other => panic!("expected a lock in the way, got {other:?}"),
        }
    }

    #[track_caller]
    fn is_invalid<T: std::fmt::Debug>(outcome: Outcome<T>) -> String {
        match outcome {
            Err(Error::Invalid(message)) => message,
            other => panic!("expected an invalid name or id, got {other:?}"),
        }
    }

    fn without_serial(data: &[u8]) -> Value {
        let mut value: Value = serde_json::from_slice(data).unwrap();
        value.as_object_mut().unwrap().remove("serial");
        value
    }

    fn serials(history: &[HistoryEntry]) -> Vec<u64> {
        history.iter().map(|e| e.serial).collect()
    }

    /// What a state read returns back is what was written, with its version.
    #[tokio::test]
    async fn put_then_get_returns_the_bytes() {
        let ws = workspaces(DEFAULT_HISTORY);
        assert_eq!(ws.get("dev").await.unwrap(), None);
        let version = ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        let object = ws.get("dev").await.unwrap().unwrap();
        assert_eq!(object.data, state(1, "L"));
        assert_eq!(object.version, version);
        assert_eq!(
            ws.get("prod").await.unwrap(),
            None,
            "other workspaces untouched"
        );
    }

    /// A store in which another writer's write lands right after the state is read, i.e.
    /// between the rules' check and the write.
    #[derive(Default)]
    struct Racing {
        inner: MemoryStore,
        sneak: std::sync::Mutex<Option<Vec<u8>>>,
    }

    impl ObjectStore for Racing {
        type Error = MemoryError;

        async fn read(&self, path: &str) -> Result<Object, MemoryError> {
            let read = self.inner.read(path).await;
            let sneak = self.sneak.lock().unwrap().take();
            if let Some(data) = sneak {
                self.inner.write(path, data, Precondition::None).await?;
            }
            read
        }
        async fn write(
            &self,
            path: &str,
            data: Vec<u8>,
            p: Precondition,
        ) -> Result<String, MemoryError> {
            self.inner.write(path, data, p).await
        }
        async fn delete(&self, path: &str, p: Precondition) -> Result<(), MemoryError> {
            self.inner.delete(path, p).await
        }
        async fn list_all(&self, prefix: &str) -> Result<Vec<String>, MemoryError> {
            self.inner.list_all(prefix).await
        }
        async fn lock(&self, path: &str, info: LockInfo) -> Result<(), MemoryError> {
            self.inner.lock(path, info).await
        }
        async fn unlock(&self, path: &str, id: &str) -> Result<(), MemoryError> {
            self.inner.unlock(path, id).await
        }
        async fn lock_info(&self, path: &str) -> Result<Option<LockInfo>, MemoryError> {
            self.inner.lock_info(path).await
        }
        async fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>, MemoryError> {
            self.inner.list_locks(prefix).await
        }
        async fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>, MemoryError> {
            self.inner.force_unlock(path).await
        }
    }

    fn racing(sneak: Vec<u8>) -> Workspaces<Racing> {
        let store = Racing {
            sneak: std::sync::Mutex::new(Some(sneak)),
            ..Racing::default()
        };
        Workspaces::new(store, StateOptions::default())
    }

    async fn raced(ws: &Workspaces<Racing>) -> Vec<u8> {
        ws.store()
            .inner
            .read("dev/terraform.tfstate")
            .await
            .unwrap()
            .data
    }

    /// The first write of a workspace is create-only, and every later one a compare-and-swap
    /// against the version checked: another writer's write in between is never overwritten.
    #[tokio::test]
    async fn a_write_racing_another_writer_is_refused() {
        let changed = "changed while this write was checked";
        let ws = racing(state(1, "theirs"));
        let outcome = ws.put("dev", state(1, "mine"), &plain()).await;
        assert!(
            matches!(&outcome, Err(Error::Rejected { reason, .. }) if reason.contains(changed)),
            "{outcome:?}"
        );
        assert_eq!(raced(&ws).await, state(1, "theirs"));

        let ws = racing(state_with(2, "L", "theirs"));
        ws.store()
            .inner
            .write("dev/terraform.tfstate", state(1, "L"), Precondition::None)
            .await
            .unwrap();
        let outcome = ws.put("dev", state_with(2, "L", "mine"), &plain()).await;
        assert!(
            matches!(&outcome, Err(Error::Rejected { reason, .. }) if reason.contains(changed)),
            "{outcome:?}"
        );
        assert_eq!(raced(&ws).await, state_with(2, "L", "theirs"));
    }

    /// A delete is a compare-and-swap too: a state written meanwhile is not deleted.
    #[tokio::test]
    async fn a_delete_racing_a_write_is_refused() {
        let ws = racing(state(2, "L"));
        ws.store()
            .inner
            .write("dev/terraform.tfstate", state(1, "L"), Precondition::None)
            .await
            .unwrap();
        let refused = reason(ws.delete("dev", None, false).await);
        assert!(
            refused.contains("changed while it was being deleted"),
            "{refused}"
        );
        assert_eq!(raced(&ws).await, state(2, "L"));
    }

    /// Terraform's rules hold on every write, and a refused write stores nothing.
    #[tokio::test]
    async fn terraform_rules_guard_every_write() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", state(5, "L"), &plain()).await.unwrap();
        let refusals = [
            (state(6, "M"), "lineage"),
            (state(4, "L"), "lower than the stored serial"),
            (state_with(5, "L", "changed"), "content differs"),
            (b"nope".to_vec(), "not valid JSON"),
            (br#"{"version":4,"lineage":"L"}"#.to_vec(), "no `serial`"),
        ];
        for (data, why) in refusals {
            let refused = reason(ws.put("dev", data, &plain()).await);
            assert!(refused.contains(why), "{why}: {refused}");
            assert_eq!(stored(&ws, "dev").await, Some(state(5, "L")), "{why}");
        }
        ws.put("dev", state(5, "L"), &plain()).await.unwrap();
        ws.put("dev", state(6, "L"), &plain()).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, Some(state(6, "L")));
    }

    #[tokio::test]
    async fn a_non_state_document_is_never_stored() {
        let ws = workspaces(DEFAULT_HISTORY);
        let refused = reason(ws.put("dev", b"{not json".to_vec(), &plain()).await);
        assert!(refused.contains("not valid JSON"), "{refused}");
        let refused = reason(ws.put("dev", b"[]".to_vec(), &forced()).await);
        assert!(refused.contains("not an object"), "{refused}");
        assert_eq!(ws.store().paths(), Vec::<String>::new());
    }

    /// `force` replaces any state document, of another lineage or an older serial.
    #[tokio::test]
    async fn a_forced_write_skips_lineage_and_serial() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", state(5, "L"), &plain()).await.unwrap();
        ws.put("dev", state(1, "M"), &forced()).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, Some(state(1, "M")));
        ws.put("dev", state_with(1, "M", "x"), &forced())
            .await
            .unwrap();
        assert_eq!(stored(&ws, "dev").await, Some(state_with(1, "M", "x")));
    }

    /// A stored object the rules cannot read is replaced only by a forced push.
    #[tokio::test]
    async fn a_stored_non_document_needs_a_forced_push() {
        let ws = workspaces(DEFAULT_HISTORY);
        let path = layout::state_path("dev");
        ws.store()
            .write(&path, b"garbage".to_vec(), Precondition::None)
            .await
            .unwrap();
        let refused = reason(ws.put("dev", state(1, "L"), &plain()).await);
        assert!(refused.contains("forced push"), "{refused}");
        assert_eq!(stored(&ws, "dev").await, Some(b"garbage".to_vec()));
        ws.put("dev", state(1, "L"), &forced()).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, Some(state(1, "L")));
    }

    /// Only the holder of a workspace's lock may change it.
    #[tokio::test]
    async fn a_lock_keeps_out_everyone_but_its_holder() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        ws.lock("dev", lock("A")).await.unwrap();
        assert_eq!(locked_by(ws.put("dev", state(2, "L"), &plain()).await), "A");
        assert_eq!(
            locked_by(ws.put("dev", state(2, "L"), &holding("B")).await),
            "A"
        );
        assert_eq!(locked_by(ws.delete("dev", None, false).await), "A");
        assert_eq!(locked_by(ws.delete("dev", Some("B"), false).await), "A");
        assert_eq!(locked_by(ws.rollback("dev", 1, None).await), "A");
        assert_eq!(stored(&ws, "dev").await, Some(state(1, "L")));
        let message = ws
            .put("dev", state(2, "L"), &plain())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("A@laptop") && message.contains("lock id A"),
            "{message}"
        );

        ws.put("dev", state(2, "L"), &holding("A")).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, Some(state(2, "L")));
        ws.delete("dev", Some("A"), false).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, None);
        assert_eq!(
            ws.lock_info("dev").await.unwrap().unwrap().id,
            "A",
            "still locked"
        );
    }

    /// A stale lock blocks nobody and can be taken over.
    #[tokio::test]
    async fn an_expired_lock_does_not_block() {
        let ws = workspaces(DEFAULT_HISTORY);
        let stale = LockInfo {
            expires: Some(now_ms() - 1000),
            ..lock("A")
        };
        ws.lock("dev", stale).await.unwrap();
        ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        ws.put("dev", state(2, "L"), &holding("B")).await.unwrap();
        ws.delete("dev", None, false).await.unwrap();
        ws.lock("dev", lock("B")).await.unwrap();
        assert_eq!(ws.lock_info("dev").await.unwrap().unwrap().id, "B");
        assert_eq!(locked_by(ws.put("dev", state(1, "L"), &plain()).await), "B");
    }

    /// Terraform fails on a lock without `Created`; `lock_ttl` bounds locks left behind.
    #[tokio::test]
    async fn lock_fills_created_and_expiry() {
        let ttl = Duration::from_secs(60);
        let options = StateOptions {
            history: 0,
            lock_ttl: Some(ttl),
            ..StateOptions::default()
        };
        let ws = Workspaces::new(MemoryStore::new(), options);
        let before = now_ms();
        let taken = ws.lock("dev", lock("A")).await.unwrap();
        let after = now_ms();
        let created = humantime::parse_rfc3339(&taken.created).unwrap();
        let created = created.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!((before..=after).contains(&created), "{}", taken.created);
        let expires = taken.expires.unwrap();
        let ttl = ttl.as_millis() as u64;
        assert!((before + ttl..=after + ttl).contains(&expires), "{expires}");
        assert_eq!(ws.lock_info("dev").await.unwrap(), Some(taken));

        let given = LockInfo {
            created: "2020-01-01T00:00:00Z".into(),
            expires: Some(after + 5_000),
            ..lock("B")
        };
        assert_eq!(
            ws.lock("prod", given.clone()).await.unwrap(),
            given,
            "kept as given"
        );

        let untimed = workspaces(0).lock("dev", lock("A")).await.unwrap();
        assert_eq!(untimed.expires, None);
    }

    #[tokio::test]
    async fn a_lock_id_must_be_usable() {
        let ws = workspaces(DEFAULT_HISTORY);
        assert!(is_invalid(ws.lock("dev", lock("")).await).contains("no ID"));
        assert!(is_invalid(ws.lock("dev", lock("a\nb")).await).contains("not a usable id"));
        assert!(is_invalid(ws.lock("dev", lock("a\u{1b}[2J")).await).contains("not a usable id"));
        assert_eq!(ws.lock_info("dev").await.unwrap(), None);
    }

    /// Only the holder's id releases a lock; a second lock is refused with the holder named.
    #[tokio::test]
    async fn unlock_needs_the_holders_id() {
        let ws = workspaces(DEFAULT_HISTORY);
        let outcome = ws.unlock("dev", "A").await;
        assert!(
            matches!(&outcome, Err(Error::NotLocked { workspace }) if workspace == "dev"),
            "{outcome:?}"
        );
        ws.lock("dev", lock("A")).await.unwrap();
        let outcome = ws.lock("dev", lock("B")).await;
        assert_eq!(
            outcome
                .as_ref()
                .unwrap_err()
                .holder()
                .map(|h| h.id.as_str()),
            Some("A")
        );
        match ws.unlock("dev", "B").await {
            Err(e @ Error::Store(MemoryError::Locked(..))) => {
                assert_eq!(e.holder().unwrap().id, "A");
            }
            other => panic!("expected the store's lock refusal, got {other:?}"),
        }
        assert_eq!(ws.lock_info("dev").await.unwrap().unwrap().id, "A");
        ws.unlock("dev", "A").await.unwrap();
        assert_eq!(ws.lock_info("dev").await.unwrap(), None);
    }

    /// A broken lock is returned and recorded with who broke it, one record per break.
    #[tokio::test]
    async fn force_unlock_records_who_broke_the_lock() {
        let ws = workspaces(DEFAULT_HISTORY);
        assert_eq!(ws.force_unlock("dev", "admin").await.unwrap(), None);
        let taken = ws.lock("dev", lock("A")).await.unwrap();
        assert_eq!(
            ws.force_unlock("dev", "admin").await.unwrap(),
            Some(taken.clone())
        );
        assert_eq!(ws.lock_info("dev").await.unwrap(), None);
        ws.lock("dev", lock("B")).await.unwrap();
        ws.force_unlock("dev", "ops").await.unwrap().unwrap();
        assert_eq!(ws.force_unlock("dev", "admin").await.unwrap(), None);

        let records = ws.broken_locks("dev").await.unwrap();
        let seen: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.by.as_str(), r.lock.id.as_str()))
            .collect();
        assert_eq!(seen, [("admin", "A"), ("ops", "B")]);
        assert_eq!(records[0].lock, taken);
        humantime::parse_rfc3339(&records[0].at).unwrap();
        assert!(ws.broken_locks("prod").await.unwrap().is_empty());
    }

    /// Deleting a state that still manages resources would orphan them.
    #[tokio::test]
    async fn delete_refuses_a_state_that_manages_resources() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", managing(1, "L"), &plain()).await.unwrap();
        let refused = reason(ws.delete("dev", None, false).await);
        assert!(refused.contains("still manages resources"), "{refused}");
        assert_eq!(stored(&ws, "dev").await, Some(managing(1, "L")));
        ws.delete("dev", None, true).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, None);
        assert_eq!(
            serials(&ws.history("dev").await.unwrap()),
            [1],
            "history kept"
        );
        ws.delete("dev", None, false).await.unwrap();
        ws.delete("never", None, false).await.unwrap();
    }

    /// `force` on delete also breaks through someone else's lock.
    #[tokio::test]
    async fn a_forced_delete_ignores_the_lock() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        ws.lock("dev", lock("A")).await.unwrap();
        ws.delete("dev", None, true).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, None);
    }

    #[tokio::test]
    async fn history_keeps_the_newest_versions() {
        let ws = workspaces(3);
        for serial in 1..=5 {
            ws.put("dev", state(serial, "L"), &plain()).await.unwrap();
        }
        let history = ws.history("dev").await.unwrap();
        assert_eq!(serials(&history), [5, 4, 3], "newest first");
        for entry in &history {
            assert_eq!(entry.lineage.as_deref(), Some("L"));
            assert_eq!(entry.size, state(entry.serial, "L").len());
            humantime::parse_rfc3339(&entry.saved_at).unwrap();
        }
        let kept = ws
            .store()
            .paths()
            .into_iter()
            .filter(|p| p.starts_with("dev/history/"));
        assert_eq!(kept.count(), 3, "pruned in the store too");
        assert!(ws.history("prod").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn history_zero_keeps_none() {
        let ws = workspaces(0);
        ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        ws.put("dev", state(2, "L"), &plain()).await.unwrap();
        assert!(ws.history("dev").await.unwrap().is_empty());
        assert_eq!(ws.store().paths(), ["dev/terraform.tfstate"]);
        assert_eq!(ws.infos().await.unwrap()[1].updated, None);
    }

    /// Keeping history is best effort: the state itself is what must be stored.
    #[tokio::test]
    async fn a_failing_history_write_does_not_fail_the_put() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.store().fail_writes_under("dev/history/");
        ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        assert_eq!(stored(&ws, "dev").await, Some(state(1, "L")));
        assert!(ws.history("dev").await.unwrap().is_empty());
        let outcome = ws
            .store()
            .write("dev/history/x", vec![], Precondition::None)
            .await;
        assert!(
            matches!(outcome, Err(MemoryError::Failing(_))),
            "the fault is on"
        );
    }

    /// A rollback is a new write: the old content under a serial above every other.
    #[tokio::test]
    async fn rollback_writes_an_old_version_anew() {
        let ws = workspaces(DEFAULT_HISTORY);
        for (serial, output) in [(1, "one"), (2, "two"), (3, "three")] {
            ws.put("dev", state_with(serial, "L", output), &plain())
                .await
                .unwrap();
        }
        assert_eq!(ws.rollback("dev", 1, None).await.unwrap(), 4);
        let current = stored(&ws, "dev").await.unwrap();
        assert_eq!(StateDoc::parse(&current).unwrap().serial, 4);
        assert_eq!(
            without_serial(&current),
            without_serial(&state_with(1, "L", "one"))
        );
        assert_eq!(serials(&ws.history("dev").await.unwrap()), [4, 3, 2, 1]);

        // After a forced push back to serial 1, a rollback still goes above the kept serial.
        ws.put("dev", state(1, "L"), &forced()).await.unwrap();
        assert_eq!(ws.rollback("dev", 3, None).await.unwrap(), 4);
        let current = stored(&ws, "dev").await.unwrap();
        assert_eq!(
            without_serial(&current),
            without_serial(&state_with(3, "L", "three"))
        );
    }

    /// The serials a change replaced and stored, as the audit trail records them.
    #[tokio::test]
    async fn changes_report_their_serials() {
        let ws = workspaces(DEFAULT_HISTORY);
        let first = ws.put_with_serials("dev", state(1, "L"), &plain()).await;
        let first = first.unwrap();
        assert_eq!((first.serial_before, first.serial_after), (None, 1));
        assert_eq!(ws.get("dev").await.unwrap().unwrap().version, first.version);
        let second = ws.put_with_serials("dev", state(2, "L"), &plain()).await;
        assert_eq!(second.unwrap().serial_before, Some(1));
        let older = state_with(1, "L", "older");
        let forced = ws.put_with_serials("dev", older, &forced()).await;
        let forced = forced.unwrap();
        assert_eq!((forced.serial_before, forced.serial_after), (Some(2), 1));
        let rolled = ws.rollback_with_serials("dev", 2, None).await.unwrap();
        assert_eq!((rolled.serial_before, rolled.serial_after), (Some(1), 3));
        assert_eq!(
            ws.delete_with_serial("dev", None, false).await.unwrap(),
            Some(3)
        );
        assert_eq!(
            ws.delete_with_serial("dev", None, false).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn rollback_needs_a_kept_serial() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        let refused = reason(ws.rollback("dev", 9, None).await);
        assert!(
            refused.contains("no kept version has serial 9"),
            "{refused}"
        );
        assert_eq!(stored(&ws, "dev").await, Some(state(1, "L")));
    }

    /// The serial of an encrypted state is inside the encryption too; only OpenTofu can
    /// change it.
    #[tokio::test]
    async fn an_encrypted_version_cannot_be_rolled_back() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", encrypted(1, "L"), &plain()).await.unwrap();
        ws.put("dev", encrypted(2, "L"), &plain()).await.unwrap();
        let refused = reason(ws.rollback("dev", 1, None).await);
        assert!(refused.contains("encrypted"), "{refused}");
        assert_eq!(stored(&ws, "dev").await, Some(encrypted(2, "L")));
    }

    /// Another store's kept versions, written verbatim: the same serials, times and bytes,
    /// the destination's own extra versions gone; a second call changes nothing.
    #[tokio::test]
    async fn replace_history_copies_kept_versions_verbatim() {
        let source = workspaces(DEFAULT_HISTORY);
        for serial in 1..=3 {
            source
                .put("dev", state_with(serial, "L", "src"), &plain())
                .await
                .unwrap();
        }
        let versions = source.kept_versions("dev").await.unwrap();
        assert_eq!(
            versions.iter().map(|v| v.serial).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(versions[2].data, state_with(3, "L", "src"));

        let dest = workspaces(DEFAULT_HISTORY);
        // A serial the source never had, so its kept version is nowhere the source's go.
        dest.put("dev", state(7, "L"), &plain()).await.unwrap();
        let change = dest.replace_history("dev", &versions, None).await.unwrap();
        assert_eq!(
            change,
            HistoryChange {
                written: 3,
                deleted: 1
            }
        );
        assert_eq!(dest.kept_versions("dev").await.unwrap(), versions);
        let saved = |h: Vec<HistoryEntry>| -> Vec<(u64, String, usize)> {
            h.into_iter()
                .map(|e| (e.serial, e.saved_at, e.size))
                .collect()
        };
        assert_eq!(
            saved(dest.history("dev").await.unwrap()),
            saved(source.history("dev").await.unwrap())
        );
        assert_eq!(
            stored(&dest, "dev").await,
            Some(state(7, "L")),
            "the state itself is not touched"
        );
        let again = dest.replace_history("dev", &versions, None).await.unwrap();
        assert_eq!(again, HistoryChange::default());
        let none = dest.replace_history("dev", &[], None).await.unwrap();
        assert_eq!(none.deleted, 3);
        assert!(dest.history("dev").await.unwrap().is_empty());
    }

    /// A version that is not a state of its serial, or a lock in the way, changes nothing.
    #[tokio::test]
    async fn replace_history_refuses_bad_versions_and_locks() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", state(1, "L"), &plain()).await.unwrap();
        let before = ws.kept_versions("dev").await.unwrap();
        let version = |serial, data: Vec<u8>| KeptVersion {
            serial,
            saved_at_ms: 1_700_000_000_000,
            data,
        };
        let not_a_state = [version(2, b"nope".to_vec())];
        let refused = reason(ws.replace_history("dev", &not_a_state, None).await);
        assert!(refused.contains("kept version of serial 2"), "{refused}");
        let mislabelled = [version(2, state(7, "L"))];
        let refused = reason(ws.replace_history("dev", &mislabelled, None).await);
        assert!(refused.contains("holds a state of serial 7"), "{refused}");
        let twice = [version(2, state(2, "L")), version(2, state(2, "L"))];
        let refused = reason(ws.replace_history("dev", &twice, None).await);
        assert!(refused.contains("same time"), "{refused}");

        ws.lock("dev", lock("A")).await.unwrap();
        let good = [version(2, state(2, "L"))];
        assert_eq!(locked_by(ws.replace_history("dev", &good, None).await), "A");
        assert_eq!(
            locked_by(ws.replace_history("dev", &good, Some("B")).await),
            "A"
        );
        assert_eq!(ws.kept_versions("dev").await.unwrap(), before);
        ws.replace_history("dev", &good, Some("A")).await.unwrap();
        assert_eq!(serials(&ws.history("dev").await.unwrap()), [2]);
        is_invalid(ws.replace_history("a/b", &good, None).await);
        is_invalid(ws.kept_versions("..").await);
    }

    #[tokio::test]
    async fn names_always_include_default_sorted() {
        let ws = workspaces(DEFAULT_HISTORY);
        assert_eq!(ws.names().await.unwrap(), ["default"]);
        ws.put("prod", state(1, "P"), &plain()).await.unwrap();
        ws.put("dev", state(1, "D"), &plain()).await.unwrap();
        ws.put("default", state(1, "X"), &plain()).await.unwrap();
        ws.lock("stage", lock("A")).await.unwrap();
        let stray = Precondition::None;
        ws.store()
            .write("notes/readme.txt", vec![], stray)
            .await
            .unwrap();
        assert_eq!(ws.names().await.unwrap(), ["default", "dev", "prod"]);
    }

    #[tokio::test]
    async fn infos_describe_each_workspace() {
        let ws = workspaces(DEFAULT_HISTORY);
        ws.put("dev", state(3, "L"), &plain()).await.unwrap();
        let taken = ws.lock("dev", lock("A")).await.unwrap();
        let infos = ws.infos().await.unwrap();
        let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["default", "dev"]);
        let default = &infos[0];
        assert_eq!((default.serial, default.size), (None, 0));
        assert_eq!((&default.lineage, &default.lock), (&None, &None));
        let dev = &infos[1];
        assert_eq!(dev.serial, Some(3));
        assert_eq!(dev.lineage.as_deref(), Some("L"));
        assert_eq!(dev.size, state(3, "L").len());
        assert_eq!(dev.lock, Some(taken));
        humantime::parse_rfc3339(dev.updated.as_deref().unwrap()).unwrap();
    }

    /// Locks are reported by workspace, even before it has state; other paths' locks are not
    /// workspaces'.
    #[tokio::test]
    async fn locks_are_listed_by_workspace() {
        let ws = workspaces(DEFAULT_HISTORY);
        assert!(ws.locks().await.unwrap().is_empty());
        let a = ws.lock("dev", lock("A")).await.unwrap();
        let b = ws.lock("prod", lock("B")).await.unwrap();
        ws.store().lock("shared/other", lock("C")).await.unwrap();
        ws.store().lock("dev/history/x", lock("D")).await.unwrap();
        let locks = ws.locks().await.unwrap();
        assert_eq!(locks, [("dev".to_string(), a), ("prod".to_string(), b)]);
    }

    /// A name is a single safe path segment, for every operation.
    #[tokio::test]
    async fn invalid_names_are_refused() {
        let ws = workspaces(DEFAULT_HISTORY);
        for name in ["", "a/b", "..", "."] {
            assert!(
                is_invalid(ws.get(name).await).contains("not valid"),
                "{name:?}"
            );
            is_invalid(ws.put(name, state(1, "L"), &plain()).await);
            is_invalid(ws.put(name, state(1, "L"), &forced()).await);
            is_invalid(ws.lock(name, lock("A")).await);
            is_invalid(ws.unlock(name, "A").await);
            is_invalid(ws.lock_info(name).await);
            is_invalid(ws.force_unlock(name, "admin").await);
            is_invalid(ws.delete(name, None, true).await);
            is_invalid(ws.history(name).await);
            is_invalid(ws.rollback(name, 1, None).await);
            is_invalid(ws.broken_locks(name).await);
        }
        assert_eq!(ws.store().paths(), Vec::<String>::new());
        assert!(ws.locks().await.unwrap().is_empty());
    }
}
