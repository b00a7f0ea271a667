//! The audit trail: who changed which workspace, how and when, kept in the store like the
//! history (where: [`layout::audit_event_path`]). Each change is one object of its own,
//! created under a fresh name, so recorders (the server's requests, the CLI, other replicas)
//! never contend; each recording then prunes its workspace to the newest `retention` events.
//!
//! Recording never fails the change it records: [`Audit::record`] logs a failure at warn and
//! returns. What is read back came through the plugin: an object that is not an event of its
//! own path (another id or workspace inside, too big, not JSON) is skipped with a warning.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use stateplug_sdk::layout::{self, AUDIT_TRAIL_PREFIX};
use stateplug_sdk::{Precondition, text};

use crate::error::Error;
use crate::store::{ObjectStore, Refusal, StoreError};
use crate::workspaces::{StateError, check_workspace, now_ms, rfc3339_ms};

/// Default number of audit events kept per workspace.
pub const DEFAULT_AUDIT_RETENTION: usize = 1000;

/// Most events one [`Audit::list`] returns.
pub const MAX_AUDIT_LIST: usize = 1000;

/// How many events `stateplug audit` and `GET /api/v1/audit` show when not told.
pub const DEFAULT_AUDIT_LIST: usize = 100;

/// Longest recorded actor, client or lock id, in bytes (longer ones are cut and marked).
const MAX_FIELD: usize = 1024;

/// Largest object read back as an event: an event with every field at its longest fits.
const MAX_EVENT_BYTES: usize = 16 * 1024;

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// A state stored.
    Write,
    /// A state deleted.
    Delete,
    /// A lock taken.
    Lock,
    /// A lock released by its holder.
    Unlock,
    /// A lock broken by someone else.
    ForceUnlock,
    /// A kept version made current again.
    Rollback,
}

impl AuditAction {
    /// The name it is serialized as (`force-unlock`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Write => "write",
            AuditAction::Delete => "delete",
            AuditAction::Lock => "lock",
            AuditAction::Unlock => "unlock",
            AuditAction::ForceUnlock => "force-unlock",
            AuditAction::Rollback => "rollback",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One change of a workspace, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// `<unix ms, 15 digits>-<uuid>`: unique, sorts by time, and names the event's object.
    pub id: String,
    /// When (RFC 3339, milliseconds).
    pub at: String,
    /// What was done.
    pub action: AuditAction,
    /// To which workspace.
    pub workspace: String,
    /// Who: a user name, a token's subject, or `cli:<os user>`.
    pub actor: String,
    /// The client's address, when the change came over the network.
    #[serde(default)]
    pub client: Option<String>,
    /// The state's serial before the change (`None`: no state, or a change of locks only).
    #[serde(default)]
    pub serial_before: Option<u64>,
    /// The state's serial after it.
    #[serde(default)]
    pub serial_after: Option<u64>,
    /// The lock the change was made under, or the one taken, released or broken.
    #[serde(default)]
    pub lock_id: Option<String>,
}

/// The next millisecond for an event id: now, or one past the last one this process gave,
/// so events recorded in one burst keep their order when listed (ids sort by their time).
fn next_ms() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(previous + 1)
}

impl AuditEvent {
    /// A change happening now, by `actor`, with no client, serials or lock id yet.
    pub fn new(action: AuditAction, workspace: &str, actor: &str) -> AuditEvent {
        let ms = next_ms();
        AuditEvent {
            id: format!("{ms:015}-{}", uuid::Uuid::new_v4()),
            at: rfc3339_ms(ms),
            action,
            workspace: workspace.to_string(),
            actor: actor.to_string(),
            client: None,
            serial_before: None,
            serial_after: None,
            lock_id: None,
        }
    }

    /// The same, from the client at `address`.
    pub fn with_client(self, address: impl Into<String>) -> AuditEvent {
        AuditEvent {
            client: Some(address.into()),
            ..self
        }
    }

    /// The same, with the state's serial before and after the change.
    pub fn with_serials(self, before: Option<u64>, after: Option<u64>) -> AuditEvent {
        AuditEvent {
            serial_before: before,
            serial_after: after,
            ..self
        }
    }

    /// The same, with the lock id the change concerns.
    pub fn with_lock_id(self, id: Option<&str>) -> AuditEvent {
        AuditEvent {
            lock_id: id.map(str::to_string),
            ..self
        }
    }
}

/// The audit trail of one store, keeping the newest `retention` events per workspace.
pub struct Audit<S> {
    store: S,
    retention: usize,
}

impl<S: ObjectStore> Audit<S> {
    /// The audit trail kept in `store`; `retention` events per workspace (at least 1).
    pub fn new(store: S, retention: usize) -> Audit<S> {
        Audit {
            store,
            retention: retention.max(1),
        }
    }

    /// Records a change, then prunes its workspace's trail to the newest `retention` events.
    /// Never fails the change it records: a failed recording is logged at warn, and the
    /// change stands.
    pub async fn record(&self, event: &AuditEvent) {
        if let Err(e) = self.try_record(event).await {
            tracing::warn!(
                workspace = %text::bounded(&event.workspace, 200),
                action = event.action.as_str(),
                "could not record the change in the audit trail (the change itself stands): {e}"
            );
        }
    }

    async fn try_record(&self, event: &AuditEvent) -> Result<(), StateError<S>> {
        check_name(&event.workspace)?;
        if !layout::is_audit_event_id(&event.id) {
            return Err(Error::Invalid(format!(
                "`{}` is not an audit event id; make events with `AuditEvent::new`",
                text::bounded(&event.id, 200)
            )));
        }
        let bound = |field: &str| text::bounded(field, MAX_FIELD).into_owned();
        let event = AuditEvent {
            actor: bound(&event.actor),
            client: event.client.as_deref().map(bound),
            lock_id: event.lock_id.as_deref().map(bound),
            ..event.clone()
        };
        self.write(&event).await?;
        self.prune(&event.workspace).await
    }

    /// The newest events, newest first: of one workspace, or of all when `workspace` is
    /// `None`; at most `limit` (1 to [`MAX_AUDIT_LIST`]).
    pub async fn list(
        &self,
        workspace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StateError<S>> {
        let prefix = match workspace {
            Some(workspace) => {
                check_name(workspace)?;
                layout::audit_trail_prefix(workspace)
            }
            None => AUDIT_TRAIL_PREFIX.to_string(),
        };
        let limit = limit.clamp(1, MAX_AUDIT_LIST);
        let mut kept = self.kept(&prefix).await?;
        kept.sort_by(|a, b| b.id.cmp(&a.id));
        let mut events = Vec::new();
        for at in kept {
            if events.len() == limit {
                break;
            }
            events.extend(self.read(&at).await?);
        }
        Ok(events)
    }

    /// Every kept event of a workspace, oldest first: what copying its trail to another
    /// store needs.
    pub async fn events(&self, workspace: &str) -> Result<Vec<AuditEvent>, StateError<S>> {
        check_name(workspace)?;
        let mut kept = self.kept(&layout::audit_trail_prefix(workspace)).await?;
        kept.sort_by(|a, b| a.id.cmp(&b.id));
        let mut events = Vec::new();
        for at in kept {
            events.extend(self.read(&at).await?);
        }
        Ok(events)
    }

    /// How many of `events` (another store's, of `workspace`) [`merge`](Self::merge) would
    /// write: those not kept here yet that are among the newest `retention` of both.
    pub async fn missing(
        &self,
        workspace: &str,
        events: &[AuditEvent],
    ) -> Result<usize, StateError<S>> {
        check_events(workspace, events)?;
        let present = self.present(workspace).await?;
        Ok(self.to_write(&present, events).len())
    }

    /// Adds another store's events of `workspace` to its trail here (an event already kept,
    /// by id, is not written again), keeping the newest `retention`; returns how many were
    /// written. Refused, with nothing written, when an event is of another workspace or has
    /// no event id.
    pub async fn merge(
        &self,
        workspace: &str,
        events: &[AuditEvent],
    ) -> Result<usize, StateError<S>> {
        check_events(workspace, events)?;
        let present = self.present(workspace).await?;
        let mut written = 0;
        for event in self.to_write(&present, events) {
            match self.write(event).await {
                Ok(()) => written += 1,
                Err(Error::Store(e)) if e.refusal() == Refusal::PreconditionFailed => {}
                Err(e) => return Err(e),
            }
        }
        if written > 0 {
            self.prune(workspace).await?;
        }
        Ok(written)
    }

    /// The events of `events` to write so the trail holds the newest `retention` of both.
    fn to_write<'e>(
        &self,
        present: &BTreeSet<String>,
        events: &'e [AuditEvent],
    ) -> Vec<&'e AuditEvent> {
        let mut ids: BTreeSet<&str> = present.iter().map(String::as_str).collect();
        ids.extend(events.iter().map(|e| e.id.as_str()));
        let Some(oldest_kept) = ids.iter().rev().take(self.retention).next_back().copied() else {
            return Vec::new();
        };
        let mut seen = BTreeSet::new();
        events
            .iter()
            .filter(|e| e.id.as_str() >= oldest_kept && !present.contains(&e.id))
            .filter(|e| seen.insert(e.id.as_str()))
            .collect()
    }

    /// Creates an event's object (create-only: an id is never reused).
    async fn write(&self, event: &AuditEvent) -> Result<(), StateError<S>> {
        let path = layout::audit_event_path(&event.workspace, &event.id);
        // An event of strings and numbers always serializes.
        let body = serde_json::to_vec(event).unwrap_or_default();
        self.store
            .write(&path, body, Precondition::Absent)
            .await
            .map(|_| ())
            .map_err(Error::Store)
    }

    /// Deletes a workspace's oldest events beyond `retention`.
    async fn prune(&self, workspace: &str) -> Result<(), StateError<S>> {
        let mut kept = self.kept(&layout::audit_trail_prefix(workspace)).await?;
        kept.sort_by(|a, b| a.id.cmp(&b.id));
        let excess = kept.len().saturating_sub(self.retention);
        for old in &kept[..excess] {
            match self.store.delete(&old.path, Precondition::None).await {
                // Another recorder pruned it first.
                Err(e) if e.refusal() == Refusal::NotFound => {}
                other => other.map_err(Error::Store)?,
            }
        }
        Ok(())
    }

    /// The ids of a workspace's kept events.
    async fn present(&self, workspace: &str) -> Result<BTreeSet<String>, StateError<S>> {
        let kept = self.kept(&layout::audit_trail_prefix(workspace)).await?;
        Ok(kept.into_iter().map(|k| k.id).collect())
    }

    /// The event objects under `prefix` (paths that are not an event's are left out).
    async fn kept(&self, prefix: &str) -> Result<Vec<Kept>, StateError<S>> {
        let paths = self.store.list_all(prefix).await.map_err(Error::Store)?;
        Ok(paths
            .iter()
            .filter_map(|path| {
                let (workspace, id) = layout::parse_audit_event_path(path)?;
                Some(Kept {
                    workspace: workspace.to_string(),
                    id: id.to_string(),
                    path: path.clone(),
                })
            })
            .collect())
    }

    /// The event kept at `at`; `None` when it is gone (pruned since it was listed) or is
    /// not an event of its path.
    async fn read(&self, at: &Kept) -> Result<Option<AuditEvent>, StateError<S>> {
        let object = match self.store.read(&at.path).await {
            Ok(object) => object,
            Err(e) if e.refusal() == Refusal::NotFound => return Ok(None),
            Err(e) => return Err(Error::Store(e)),
        };
        let event = (object.data.len() <= MAX_EVENT_BYTES)
            .then(|| serde_json::from_slice::<AuditEvent>(&object.data).ok())
            .flatten()
            .filter(|e| e.id == at.id && e.workspace == at.workspace);
        if event.is_none() {
            // The path was checked when listed: it is safe to log.
            tracing::warn!(
                path = at.path,
                size = object.data.len(),
                "skipped an audit record that is not the event its path names"
            );
        }
        Ok(event)
    }
}

/// An event object found by a listing.
struct Kept {
    workspace: String,
    id: String,
    path: String,
}

fn check_name<E>(workspace: &str) -> Result<(), Error<E>> {
    check_workspace(workspace).map_err(Error::Invalid)
}

/// Refuses events of another workspace than `workspace`, or without an event id.
fn check_events<E>(workspace: &str, events: &[AuditEvent]) -> Result<(), Error<E>> {
    check_name(workspace)?;
    for event in events {
        if event.workspace != workspace {
            return Err(Error::Invalid(format!(
                "audit event {} is of workspace `{}`, not of `{workspace}`",
                text::bounded(&event.id, 200),
                text::bounded(&event.workspace, 200)
            )));
        }
        if !layout::is_audit_event_id(&event.id) {
            return Err(Error::Invalid(format!(
                "`{}` (an audit event of `{workspace}`) is not an audit event id",
                text::bounded(&event.id, 200)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::memory::{MemoryError, MemoryStore};
    use crate::{Kv, Objects, StateOptions, Workspaces};

    fn audit(retention: usize) -> Audit<Arc<MemoryStore>> {
        Audit::new(Arc::new(MemoryStore::new()), retention)
    }

    fn event(action: AuditAction, workspace: &str) -> AuditEvent {
        AuditEvent::new(action, workspace, "alice")
    }

    fn actions(events: &[AuditEvent]) -> Vec<(&str, AuditAction)> {
        events
            .iter()
            .map(|e| (e.workspace.as_str(), e.action))
            .collect()
    }

    /// An event reads back as recorded, every field included; its JSON names the action in
    /// kebab case.
    #[tokio::test]
    async fn an_event_reads_back_as_recorded() {
        let audit = audit(DEFAULT_AUDIT_RETENTION);
        assert!(audit.list(None, 10).await.unwrap().is_empty());
        let recorded = event(AuditAction::ForceUnlock, "dev")
            .with_client("10.0.0.7:51234")
            .with_serials(Some(3), Some(3))
            .with_lock_id(Some("lock-1"));
        audit.record(&recorded).await;
        let only = std::slice::from_ref(&recorded);
        assert_eq!(audit.list(Some("dev"), 10).await.unwrap(), only);
        assert_eq!(audit.list(None, 10).await.unwrap(), only);
        humantime::parse_rfc3339(&recorded.at).unwrap();
        let json = serde_json::to_value(&recorded).unwrap();
        assert_eq!(json["action"], "force-unlock");
        assert_eq!(format!("{:<13}|", recorded.action), "force-unlock |");
        assert_eq!(json["serial_before"], 3);
        assert_eq!(
            audit.store.paths(),
            [format!("~audit/dev/{}.json", recorded.id)]
        );
    }

    /// Newest first, across workspaces or of one; `limit` bounds the answer.
    #[tokio::test]
    async fn events_are_listed_newest_first_and_bounded() {
        let audit = audit(DEFAULT_AUDIT_RETENTION);
        let sequence = [
            (AuditAction::Lock, "dev"),
            (AuditAction::Write, "dev"),
            (AuditAction::Write, "prod"),
            (AuditAction::Unlock, "dev"),
            (AuditAction::Rollback, "prod"),
            (AuditAction::Delete, "dev"),
        ];
        for (action, workspace) in sequence {
            audit.record(&event(action, workspace)).await;
        }
        let all = audit.list(None, 100).await.unwrap();
        let newest_first: Vec<_> = sequence.iter().rev().map(|(a, w)| (*w, *a)).collect();
        assert_eq!(actions(&all), newest_first);
        assert_eq!(
            actions(&audit.list(None, 2).await.unwrap()),
            newest_first[..2]
        );
        assert_eq!(
            actions(&audit.list(Some("prod"), 100).await.unwrap()),
            [
                ("prod", AuditAction::Rollback),
                ("prod", AuditAction::Write)
            ]
        );
        assert_eq!(
            audit.list(Some("dev"), 0).await.unwrap().len(),
            1,
            "at least one"
        );
        let oldest_first = audit.events("dev").await.unwrap();
        assert_eq!(oldest_first[0].action, AuditAction::Lock);
        assert_eq!(oldest_first.len(), 4);
    }

    /// Each recording keeps the newest `retention` events of its workspace, in the store
    /// too; other workspaces keep theirs.
    #[tokio::test]
    async fn recording_prunes_to_the_newest_events() {
        let audit = audit(3);
        audit.record(&event(AuditAction::Lock, "prod")).await;
        let mut recorded = Vec::new();
        for serial in 1..=5 {
            let e = event(AuditAction::Write, "dev").with_serials(Some(serial - 1), Some(serial));
            audit.record(&e).await;
            recorded.push(e);
        }
        let kept = audit.list(Some("dev"), 100).await.unwrap();
        let serials: Vec<_> = kept.iter().map(|e| e.serial_after).collect();
        assert_eq!(serials, [Some(5), Some(4), Some(3)]);
        let in_store = audit.store.paths();
        assert_eq!(in_store.len(), 4, "{in_store:?}");
        assert!(!in_store.contains(&format!("~audit/dev/{}.json", recorded[0].id)));
        assert_eq!(audit.list(Some("prod"), 100).await.unwrap().len(), 1);
        assert_eq!(Audit::new(audit.store.clone(), 0).retention, 1);
    }

    /// A workspace's trail is its own: not a workspace whose name starts alike, not an object
    /// or a key at a path that looks like an event's, and none of it is a workspace.
    #[tokio::test]
    async fn workspaces_and_other_key_spaces_are_not_mixed_up() {
        let store = Arc::new(MemoryStore::new());
        let audit = Audit::new(store.clone(), DEFAULT_AUDIT_RETENTION);
        for workspace in ["dev", "dev.1", "dev-2", "de"] {
            audit.record(&event(AuditAction::Write, workspace)).await;
        }
        let look_alike = event(AuditAction::Delete, "dev");
        let look_alike_path = format!("~audit/dev/{}.json", look_alike.id);
        let as_json = serde_json::to_vec(&look_alike).unwrap();
        Objects::new(store.clone())
            .put(&look_alike_path, as_json.clone(), Precondition::None, None)
            .await
            .unwrap();
        Kv::new(store.clone())
            .set("audit", &look_alike_path, as_json, None)
            .await
            .unwrap();
        let dev = audit.list(Some("dev"), 100).await.unwrap();
        assert_eq!(actions(&dev), [("dev", AuditAction::Write)]);
        assert_eq!(audit.list(None, 100).await.unwrap().len(), 4);
        let workspaces = Workspaces::new(store.clone(), StateOptions::default());
        assert_eq!(workspaces.names().await.unwrap(), ["default"]);
        assert!(workspaces.locks().await.unwrap().is_empty());
        let objects = Objects::new(store.clone())
            .list("", None, 100)
            .await
            .unwrap();
        assert_eq!(objects.paths, [look_alike_path]);
        for bad in ["", "a/b", ".."] {
            assert!(matches!(
                audit.list(Some(bad), 10).await,
                Err(Error::Invalid(_))
            ));
        }
    }

    /// What came through the plugin is checked: an object that is not the event its path
    /// names is skipped, and a listing still fills its limit with the others.
    #[tokio::test]
    async fn a_record_that_is_not_its_paths_event_is_skipped() {
        let audit = audit(DEFAULT_AUDIT_RETENTION);
        let good = event(AuditAction::Lock, "dev");
        audit.record(&good).await;
        let elsewhere = event(AuditAction::Write, "prod");
        let forged = [
            b"not json".to_vec(),
            serde_json::to_vec(&elsewhere).unwrap(),
            vec![b' '; MAX_EVENT_BYTES + 1],
        ];
        for data in forged {
            let id = event(AuditAction::Write, "dev").id;
            let path = layout::audit_event_path("dev", &id);
            audit
                .store
                .write(&path, data, Precondition::None)
                .await
                .unwrap();
        }
        assert_eq!(
            audit.list(Some("dev"), 1).await.unwrap(),
            std::slice::from_ref(&good)
        );
        assert_eq!(audit.events("dev").await.unwrap(), [good]);
    }

    /// A store that fails the write costs the change nothing: `record` returns, nothing is
    /// kept; bad events are refused the same way.
    #[tokio::test]
    async fn a_failed_recording_is_not_an_error() {
        let audit = audit(DEFAULT_AUDIT_RETENTION);
        audit.store.fail_writes_under(AUDIT_TRAIL_PREFIX);
        audit.record(&event(AuditAction::Write, "dev")).await;
        let refused = audit.try_record(&event(AuditAction::Write, "dev")).await;
        assert!(matches!(
            refused,
            Err(Error::Store(MemoryError::Failing(_)))
        ));
        let invalid = audit.try_record(&event(AuditAction::Write, "a/b")).await;
        assert!(matches!(invalid, Err(Error::Invalid(_))), "{invalid:?}");
        let forged = AuditEvent {
            id: "../x".into(),
            ..event(AuditAction::Write, "dev")
        };
        assert!(matches!(
            audit.try_record(&forged).await,
            Err(Error::Invalid(_))
        ));
        assert!(audit.store.paths().is_empty());
    }

    /// Long fields are cut when recorded, so an event always reads back.
    #[tokio::test]
    async fn long_fields_are_bounded() {
        let audit = audit(DEFAULT_AUDIT_RETENTION);
        let long = "x".repeat(100_000);
        let recorded = AuditEvent::new(AuditAction::Lock, "dev", &long)
            .with_client(long.clone())
            .with_lock_id(Some(&long));
        audit.record(&recorded).await;
        let read = audit.list(Some("dev"), 1).await.unwrap();
        assert!(read[0].actor.len() < 1100, "{}", read[0].actor.len());
        assert!(read[0].actor.ends_with("bytes in all)"));
    }

    /// Another store's events are added once, newest `retention` kept; events of another
    /// workspace are refused.
    #[tokio::test]
    async fn merge_adds_missing_events_once() {
        let source = audit(DEFAULT_AUDIT_RETENTION);
        for _ in 0..4 {
            source.record(&event(AuditAction::Write, "dev")).await;
        }
        let events = source.events("dev").await.unwrap();
        let dest = audit(3);
        dest.record(&event(AuditAction::Lock, "dev")).await;
        assert_eq!(dest.missing("dev", &events).await.unwrap(), 2);
        assert_eq!(dest.merge("dev", &events).await.unwrap(), 2);
        assert_eq!(dest.missing("dev", &events).await.unwrap(), 0);
        assert_eq!(dest.merge("dev", &events).await.unwrap(), 0);
        let kept = dest.events("dev").await.unwrap();
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[..2], events[2..], "the source's newest two");
        assert_eq!(kept[2].action, AuditAction::Lock, "its own, newest");

        let other = [event(AuditAction::Write, "prod")];
        let refused = dest.merge("dev", &other).await;
        assert!(matches!(&refused, Err(Error::Invalid(m)) if m.contains("not of `dev`")));
    }
}
