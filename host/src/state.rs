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

/// The state format versions the rules accept: Terraform 0.12+ writes 4; older states are 3.
const STATE_VERSIONS: [u64; 2] = [3, 4];

/// A state document as the rules see it: a Terraform state (`version` 3 or 4 with `serial`
/// and `lineage`), or OpenTofu's encrypted envelope (its plaintext `serial` and `lineage`
/// beside `encrypted_data`).
#[derive(Debug, Clone, PartialEq)]
#[doc(hidden)]
pub struct StateDoc {
    value: Value,
    /// The document's serial.
    pub serial: u64,
    /// The document's lineage (never empty).
    pub lineage: String,
    /// Whether it is OpenTofu's encrypted envelope.
    pub encrypted: bool,
}

impl StateDoc {
    /// Parses and checks a state document; the error names the missing or wrong field.
    pub fn parse(data: &[u8]) -> std::result::Result<StateDoc, String> {
        const SHAPE: &str = "a Terraform state carries `version` (3 or 4), `serial` and \
                             `lineage`; push the file `terraform state pull` gives";
        let value: Value = serde_json::from_slice(data)
            .map_err(|e| format!("the state is not valid JSON ({e}); {SHAPE}"))?;
        let Some(object) = value.as_object() else {
            return Err(format!("the state is JSON but not an object; {SHAPE}"));
        };
        // OpenTofu's encrypted envelope keeps serial and lineage in plaintext beside it.
        let encrypted = object.contains_key("encrypted_data");
        if !encrypted {
            match object.get("version") {
                None => return Err(format!("the state has no `version`; {SHAPE}")),
                Some(v) if v.as_u64().is_some_and(|v| STATE_VERSIONS.contains(&v)) => {}
                Some(v) => {
                    return Err(format!(
                        "the state's `version` is {}, not 3 or 4: not a state format this \
                         server knows; {SHAPE}",
                        bounded_json(v)
                    ));
                }
            }
        }
        let serial = match object.get("serial") {
            None => return Err(format!("the state has no `serial`; {SHAPE}")),
            Some(s) => s.as_u64().ok_or_else(|| {
                format!(
                    "the state's `serial` is {}, not a whole number; {SHAPE}",
                    bounded_json(s)
                )
            })?,
        };
        let lineage = match object.get("lineage") {
            None => return Err(format!("the state has no `lineage`; {SHAPE}")),
            Some(Value::String(l)) if !l.is_empty() => l.clone(),
            Some(l) => {
                return Err(format!(
                    "the state's `lineage` is {}, not a non-empty string; {SHAPE}",
                    bounded_json(l)
                ));
            }
        };
        Ok(StateDoc {
            value,
            serial,
            lineage,
            encrypted,
        })
    }

    /// Terraform's rules for replacing `self` (stored) by `new`.
    pub fn check_replacement(&self, new: &StateDoc) -> std::result::Result<(), String> {
        if self.lineage != new.lineage {
            return Err(format!(
                "lineage `{}` differs from the stored lineage `{}`: this is a different \
                 state; push with --force to replace it",
                crate::text::untrusted(&new.lineage),
                crate::text::untrusted(&self.lineage),
            ));
        }
        if new.serial < self.serial {
            return Err(format!(
                "serial {} is lower than the stored serial {}: this state is older than the \
                 stored one; pull the current state first",
                new.serial, self.serial
            ));
        }
        if new.serial == self.serial && self.value != new.value {
            return Err(format!(
                "serial {} equals the stored serial but the content differs: a changed state \
                 needs a higher serial",
                new.serial
            ));
        }
        Ok(())
    }
}

/// Whether a stored state manages anything (an encrypted state is assumed to). Read from the
/// JSON alone, so that a stored document the rules refuse is still protected.
fn manages_resources(data: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return false;
    };
    value.get("encrypted_data").is_some()
        || value["resources"].as_array().is_some_and(|r| !r.is_empty())
}

/// Longest lock id accepted (Terraform's are 36-byte UUIDs).
pub const MAX_LOCK_ID: usize = 1024;

/// A lock id is an identifier, compared byte for byte and shown to people: 1 to
/// [`MAX_LOCK_ID`] bytes without control characters.
pub fn check_lock_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidInput("the lock has no ID".into()));
    }
    if id.len() > MAX_LOCK_ID || id.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!(
            "the lock ID `{}` ({} bytes) is not a usable id: give 1 to {MAX_LOCK_ID} bytes \
             without control characters (Terraform sends a UUID)",
            crate::text::bounded(id, 100),
            id.len()
        )));
    }
    Ok(())
}

/// A JSON value quoted in an error, cut short when long.
fn bounded_json(value: &Value) -> String {
    crate::text::untrusted(&value.to_string()).into_owned()
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
            Some(current) if options.force => {
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
        self.keep_history(workspace, new.serial, data).await;
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
        if !force && manages_resources(&current.data) {
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
        check_lock_id(&info.id)?;
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
                lineage: StateDoc::parse(&object.data).ok().map(|d| d.lineage),
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
                .map(|d| d.serial)
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
        assert!(manages_resources(br#"{"encrypted_data":"x"}"#));
    }

    #[test]
    fn only_state_documents_are_accepted() {
        let refused = [
            (&b"nope"[..], "not valid JSON"),
            (b"[1]", "not an object"),
            (b"{}", "no `version`"),
            (br#"{"version":4,"lineage":"a"}"#, "no `serial`"),
            (br#"{"version":4,"serial":3}"#, "no `lineage`"),
            (
                br#"{"version":4,"serial":-1,"lineage":"a"}"#,
                "`serial` is -1",
            ),
            (
                br#"{"version":4,"serial":"3","lineage":"a"}"#,
                "`serial` is \"3\"",
            ),
            (br#"{"version":4,"serial":1,"lineage":7}"#, "`lineage` is 7"),
            (
                br#"{"version":4,"serial":1,"lineage":""}"#,
                "`lineage` is \"\"",
            ),
            (
                br#"{"version":5,"serial":1,"lineage":"a"}"#,
                "`version` is 5",
            ),
            (
                br#"{"version":"4","serial":1,"lineage":"a"}"#,
                "`version` is \"4\"",
            ),
            (br#"{"encrypted_data":"x","lineage":"a"}"#, "no `serial`"),
            (br#"{"encrypted_data":"x","serial":1}"#, "no `lineage`"),
        ];
        for (json, reason) in refused {
            let error = StateDoc::parse(json).unwrap_err();
            assert!(
                error.contains(reason) && error.contains("`version` (3 or 4)"),
                "{}: {error}",
                String::from_utf8_lossy(json)
            );
        }
        for accepted in [
            &br#"{"version":3,"serial":0,"lineage":"a","modules":[]}"#[..],
            br#"{"version":4,"serial":7,"lineage":"a"}"#,
            br#"{"serial":3,"lineage":"a","encrypted_data":"x","encryption_version":"v0"}"#,
        ] {
            StateDoc::parse(accepted).unwrap();
        }
    }

    #[test]
    fn a_hostile_field_is_quoted_bounded_and_escaped() {
        let lineage = format!("\u{1b}[2J{}", "x".repeat(100_000));
        let json = serde_json::json!({"version": 4, "serial": 1, "lineage": lineage}).to_string();
        let stored = doc(r#"{"version":4,"serial":1,"lineage":"a"}"#);
        let error = stored
            .check_replacement(&StateDoc::parse(json.as_bytes()).unwrap())
            .unwrap_err();
        assert!(
            error.len() < 2 * crate::text::UNTRUSTED_MAX,
            "{}",
            error.len()
        );
        assert!(!error.contains('\x1b'), "{error}");
    }
}
