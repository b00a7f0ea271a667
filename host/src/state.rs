//! The state layer: Terraform workspaces on top of any backend, with the rules that keep a
//! team's state safe whatever the storage.
//!
//! Layout in the backend, per workspace `<ws>`:
//! - `<ws>/terraform.tfstate`: the state (its lock is the backend's lock on this path);
//! - `<ws>/history/<serial>-<unix ms>`: the last N versions written (newest included);
//! - `<ws>/lock-audit/<unix ms>.json`: who force-unlocked which lock.
//!
//! Every write is a compare-and-swap against the version that was checked, so two writers
//! can never lose an update, with or without locks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::workspace::{self, DEFAULT_WORKSPACE};
use crate::{Backend, LockInfo, Precondition};

/// Default number of versions kept per workspace.
pub const DEFAULT_HISTORY: usize = 10;

/// How the state layer behaves.
#[derive(Debug, Clone)]
pub struct StateOptions {
    /// Versions kept per workspace (0 keeps none).
    pub history: usize,
    /// Locks taken without an expiry get this one; a stale lock can then be taken over.
    pub lock_ttl: Option<Duration>,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            history: DEFAULT_HISTORY,
            lock_ttl: None,
        }
    }
}

/// Workspaces of one backend.
#[derive(Clone)]
pub struct StateStore {
    backend: Backend,
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

/// The facts of a state document the rules look at.
#[derive(Debug, Clone, PartialEq)]
struct StateDoc {
    value: Value,
    serial: Option<u64>,
    lineage: Option<String>,
    encrypted: bool,
}

impl StateDoc {
    fn parse(data: &[u8]) -> std::result::Result<StateDoc, String> {
        let value: Value = serde_json::from_slice(data)
            .map_err(|e| format!("the state is not valid JSON ({e})"))?;
        let Some(object) = value.as_object() else {
            return Err("the state is JSON but not an object".into());
        };
        let serial = match object.get("serial") {
            None => None,
            Some(s) => Some(s.as_u64().ok_or("`serial` is not a whole number")?),
        };
        let lineage = match object.get("lineage") {
            None => None,
            Some(l) => Some(l.as_str().ok_or("`lineage` is not a string")?.to_string()),
        };
        // OpenTofu's encrypted envelope keeps serial and lineage in plaintext beside it.
        let encrypted = object.contains_key("encrypted_data");
        Ok(StateDoc {
            value,
            serial,
            lineage,
            encrypted,
        })
    }

    /// Whether the state manages anything (an encrypted state is assumed to).
    fn has_resources(&self) -> bool {
        self.encrypted
            || self.value["resources"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
    }

    /// Terraform's rules for replacing `self` (stored) by `new`.
    fn check_replacement(&self, new: &StateDoc) -> std::result::Result<(), String> {
        if let (Some(stored), Some(incoming)) = (&self.lineage, &new.lineage)
            && stored != incoming
        {
            return Err(format!(
                "lineage `{incoming}` differs from the stored lineage `{stored}`: this is a \
                 different state; push with --force to replace it"
            ));
        }
        if let (Some(stored), Some(incoming)) = (self.serial, new.serial) {
            if incoming < stored {
                return Err(format!(
                    "serial {incoming} is lower than the stored serial {stored}: this state is \
                     older than the stored one; pull the current state first"
                ));
            }
            if incoming == stored && self.value != new.value {
                return Err(format!(
                    "serial {incoming} equals the stored serial but the content differs: a \
                     changed state needs a higher serial"
                ));
            }
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn rejected(workspace: &str, reason: impl Into<String>) -> Error {
    Error::Rejected {
        workspace: workspace.to_string(),
        reason: reason.into(),
    }
}

impl StateStore {
    /// Workspaces stored in `backend`.
    pub fn new(backend: Backend, options: StateOptions) -> StateStore {
        StateStore {
            backend,
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

    /// The backend underneath.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The stored state of a workspace, if any.
    pub async fn get(&self, workspace: &str) -> Result<Option<crate::Object>> {
        let path = workspace::state_path(workspace)?;
        match self.backend.read(&path).await {
            Ok(object) => Ok(Some(object)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores a new state for a workspace after checking the lock and Terraform's rules;
    /// returns the new version token.
    pub async fn put(
        &self,
        workspace: &str,
        data: Vec<u8>,
        options: &WriteOptions,
    ) -> Result<String> {
        let path = workspace::state_path(workspace)?;
        let new = StateDoc::parse(&data).map_err(|reason| rejected(workspace, reason))?;
        let _writer = self.writer(workspace).await;
        self.check_lock(workspace, &path, options.lock_id.as_deref())
            .await?;
        let current = self.get(workspace).await?;
        let precondition = match &current {
            Some(current) => {
                let stored = StateDoc::parse(&current.data).ok();
                match (stored, options.force) {
                    (Some(stored), false) => stored
                        .check_replacement(&new)
                        .map_err(|reason| rejected(workspace, reason))?,
                    (None, false) => tracing::warn!(
                        workspace,
                        "the stored state is not valid JSON; replacing it"
                    ),
                    (_, true) => tracing::warn!(
                        workspace,
                        serial = new.serial,
                        "forced write: lineage and serial rules skipped"
                    ),
                }
                Precondition::VersionIs(current.version.clone())
            }
            None => Precondition::Absent,
        };
        let size = data.len();
        let version = match self.backend.write(&path, data.clone(), precondition).await {
            Ok(version) => version,
            Err(Error::PreconditionFailed { .. }) => {
                return Err(rejected(
                    workspace,
                    "the state changed while this write was checked (another writer); read it \
                     again and retry",
                ));
            }
            Err(e) => return Err(e),
        };
        tracing::info!(workspace, serial = new.serial, size, "state stored");
        self.keep_history(workspace, new.serial.unwrap_or(0), data)
            .await;
        Ok(version)
    }

    /// Deletes a workspace's state (its history stays). Refused while locked by someone
    /// else or while the state still manages resources, unless `force`.
    pub async fn delete(&self, workspace: &str, lock_id: Option<&str>, force: bool) -> Result<()> {
        let path = workspace::state_path(workspace)?;
        let _writer = self.writer(workspace).await;
        if !force {
            self.check_lock(workspace, &path, lock_id).await?;
        }
        let Some(current) = self.get(workspace).await? else {
            return Ok(());
        };
        if !force
            && StateDoc::parse(&current.data)
                .map(|s| s.has_resources())
                .unwrap_or(false)
        {
            return Err(rejected(
                workspace,
                "the state still manages resources; destroy them first or delete with force",
            ));
        }
        match self
            .backend
            .delete(&path, Precondition::VersionIs(current.version))
            .await
        {
            Err(Error::PreconditionFailed { .. }) => Err(rejected(
                workspace,
                "the state changed while it was being deleted; try again",
            )),
            other => other,
        }
    }

    /// Locks a workspace. A lock without expiry gets the configured `lock_ttl`.
    pub async fn lock(&self, workspace: &str, mut info: LockInfo) -> Result<LockInfo> {
        let path = workspace::state_path(workspace)?;
        if info.id.is_empty() {
            return Err(Error::InvalidInput("the lock has no ID".into()));
        }
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
        self.backend.lock(&path, info.clone()).await?;
        Ok(info)
    }

    /// Releases a workspace's lock held under `id`.
    pub async fn unlock(&self, workspace: &str, id: &str) -> Result<()> {
        let path = workspace::state_path(workspace)?;
        match self.backend.unlock(&path, id).await {
            Err(Error::NotFound { .. }) => Err(Error::NotLocked {
                workspace: workspace.to_string(),
            }),
            other => other,
        }
    }

    /// The lock on a workspace, if any.
    pub async fn lock_info(&self, workspace: &str) -> Result<Option<LockInfo>> {
        self.backend
            .lock_info(&workspace::state_path(workspace)?)
            .await
    }

    /// Breaks a workspace's lock whoever holds it, logs it, and records who did it.
    pub async fn force_unlock(&self, workspace: &str, by: &str) -> Result<Option<LockInfo>> {
        let path = workspace::state_path(workspace)?;
        let Some(broken) = self.backend.force_unlock(&path).await? else {
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
        let audit = format!("{workspace}/lock-audit/{at:015}.json");
        let body = serde_json::to_vec_pretty(&record).unwrap_or_default();
        if let Err(e) = self.backend.write(&audit, body, Precondition::None).await {
            tracing::error!(workspace, "could not record the broken lock: {e}");
        }
        Ok(Some(broken))
    }

    /// Force-unlock records of a workspace, oldest first.
    pub async fn broken_locks(&self, workspace: &str) -> Result<Vec<BrokenLock>> {
        workspace::validate_name(workspace)?;
        let mut records = Vec::new();
        for path in self
            .backend
            .list_all(&format!("{workspace}/lock-audit/"))
            .await?
        {
            let object = self.backend.read(&path).await?;
            if let Ok(record) = serde_json::from_slice(&object.data) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// Names of all workspaces with state, plus `default`, sorted.
    pub async fn workspace_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .backend
            .list_all("")
            .await?
            .into_iter()
            .filter_map(|path| {
                let (name, rest) = path.split_once('/')?;
                (rest == "terraform.tfstate").then(|| name.to_string())
            })
            .collect();
        if !names.iter().any(|n| n == DEFAULT_WORKSPACE) {
            names.push(DEFAULT_WORKSPACE.to_string());
        }
        names.sort();
        Ok(names)
    }

    /// Every workspace with its serial, lineage, size, update time and lock holder.
    pub async fn workspaces(&self) -> Result<Vec<WorkspaceInfo>> {
        let mut infos = Vec::new();
        for name in self.workspace_names().await? {
            let state = self.get(&name).await?;
            let doc = state.as_ref().and_then(|s| StateDoc::parse(&s.data).ok());
            let updated = self
                .history_paths(&name)
                .await?
                .last()
                .map(|(_, ms, _)| rfc3339_ms(*ms));
            infos.push(WorkspaceInfo {
                serial: doc.as_ref().and_then(|d| d.serial),
                lineage: doc.and_then(|d| d.lineage),
                size: state.map(|s| s.data.len()).unwrap_or(0),
                updated: updated.filter(|_| self.options.history > 0),
                lock: self.lock_info(&name).await?,
                name,
            });
        }
        Ok(infos)
    }

    /// All held locks, by workspace (a workspace can be locked before it has state).
    pub async fn locks(&self) -> Result<Vec<(String, LockInfo)>> {
        Ok(self
            .backend
            .list_locks("")
            .await?
            .into_iter()
            .filter_map(|(path, lock)| {
                let (name, rest) = path.split_once('/')?;
                (rest == "terraform.tfstate").then(|| (name.to_string(), lock))
            })
            .collect())
    }

    /// The kept versions of a workspace, newest first.
    pub async fn history(&self, workspace: &str) -> Result<Vec<HistoryEntry>> {
        workspace::validate_name(workspace)?;
        let mut entries = Vec::new();
        for (serial, ms, path) in self.history_paths(workspace).await?.into_iter().rev() {
            let object = self.backend.read(&path).await?;
            entries.push(HistoryEntry {
                serial,
                lineage: StateDoc::parse(&object.data).ok().and_then(|d| d.lineage),
                size: object.data.len(),
                saved_at: rfc3339_ms(ms),
            });
        }
        Ok(entries)
    }

    /// Makes a kept version current again, as a new write with a serial above the current
    /// one (the past is never rewritten).
    pub async fn rollback(
        &self,
        workspace: &str,
        serial: u64,
        lock_id: Option<&str>,
    ) -> Result<u64> {
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
        let old = StateDoc::parse(&self.backend.read(&path).await?.data)
            .map_err(|reason| rejected(workspace, reason))?;
        if old.encrypted {
            return Err(rejected(
                workspace,
                "an encrypted state cannot be given a new serial here; roll back with OpenTofu",
            ));
        }
        let current_serial = match self.get(workspace).await? {
            Some(current) => StateDoc::parse(&current.data)
                .ok()
                .and_then(|d| d.serial)
                .unwrap_or(0),
            None => 0,
        };
        let new_serial = current_serial.max(serial) + 1;
        let mut value = old.value;
        value["serial"] = Value::from(new_serial);
        let data = serde_json::to_vec_pretty(&value)
            .map_err(|e| Error::Host(format!("serializing the state: {e}")))?;
        let options = WriteOptions {
            lock_id: lock_id.map(str::to_string),
            force: false,
        };
        self.put(workspace, data, &options).await?;
        Ok(new_serial)
    }

    /// Refuses when the workspace is locked under another id than `lock_id`.
    async fn check_lock(&self, workspace: &str, path: &str, lock_id: Option<&str>) -> Result<()> {
        match self.backend.lock_info(path).await? {
            Some(holder) if Some(holder.id.as_str()) != lock_id && !holder.is_expired() => {
                Err(Error::Locked {
                    path: workspace.to_string(),
                    holder: Box::new(holder),
                })
            }
            _ => Ok(()),
        }
    }

    /// `(serial, unix ms, path)` of the kept versions, oldest first.
    async fn history_paths(&self, workspace: &str) -> Result<Vec<(u64, u64, String)>> {
        let prefix = format!("{workspace}/history/");
        let mut entries: Vec<(u64, u64, String)> = self
            .backend
            .list_all(&prefix)
            .await?
            .into_iter()
            .filter_map(|path| {
                let (serial, ms) = path.strip_prefix(&prefix)?.split_once('-')?;
                Some((serial.parse().ok()?, ms.parse().ok()?, path))
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
        let path = format!("{workspace}/history/{serial:012}-{:015}", now_ms());
        let kept = async {
            self.backend.write(&path, data, Precondition::None).await?;
            let entries = self.history_paths(workspace).await?;
            let excess = entries.len().saturating_sub(self.options.history);
            for (_, _, old) in &entries[..excess] {
                self.backend.delete(old, Precondition::None).await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(e) = kept.await {
            tracing::error!(workspace, "could not keep the state's history: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> StateDoc {
        StateDoc::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn terraform_rules() {
        let stored = doc(r#"{"version":4,"serial":5,"lineage":"a","resources":[]}"#);
        let ok = doc(r#"{"version":4,"serial":6,"lineage":"a","resources":[]}"#);
        assert_eq!(stored.check_replacement(&ok), Ok(()));
        assert_eq!(
            stored.check_replacement(&stored.clone()),
            Ok(()),
            "same content again"
        );
        let other = doc(r#"{"version":4,"serial":9,"lineage":"b"}"#);
        assert!(
            stored
                .check_replacement(&other)
                .unwrap_err()
                .contains("lineage `b` differs")
        );
        let older = doc(r#"{"version":4,"serial":4,"lineage":"a"}"#);
        assert!(
            stored
                .check_replacement(&older)
                .unwrap_err()
                .contains("lower than the stored serial 5")
        );
        let changed = doc(r#"{"version":4,"serial":5,"lineage":"a","outputs":{}}"#);
        assert!(
            stored
                .check_replacement(&changed)
                .unwrap_err()
                .contains("content differs")
        );
        let envelope =
            doc(r#"{"serial":3,"lineage":"a","encrypted_data":"x","encryption_version":"v0"}"#);
        assert!(
            stored
                .check_replacement(&envelope)
                .unwrap_err()
                .contains("lower")
        );
        assert!(envelope.has_resources());
    }

    #[test]
    fn malformed_states() {
        assert!(
            StateDoc::parse(b"nope")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            StateDoc::parse(b"[1]")
                .unwrap_err()
                .contains("not an object")
        );
        assert!(
            StateDoc::parse(br#"{"serial":-1}"#)
                .unwrap_err()
                .contains("`serial`")
        );
        assert!(
            StateDoc::parse(br#"{"lineage":7}"#)
                .unwrap_err()
                .contains("`lineage`")
        );
    }
}
