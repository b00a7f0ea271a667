//! Where the host's state layer keeps a workspace's objects in a store: the one key layout,
//! shared by the host and by plugins that map it onto a native layout (the s3 plugin puts
//! workspace states where Terraform's own s3 backend keeps them).
//!
//! Per workspace `<ws>`:
//! - `<ws>/terraform.tfstate`: the state; its lock is the store's lock on this path;
//! - `<ws>/history/<serial>-<unix ms>`: the last versions written (newest included);
//! - `<ws>/lock-audit/<unix ms>.json`: who force-unlocked which lock;
//! - `~audit/<ws>/<unix ms>-<uuid>.json`: the audit trail, one object per change of the
//!   workspace (write, delete, lock, unlock, force-unlock, rollback), so recording never
//!   contends with another recorder; the newest N are kept (the state layer's `audit`).
//!
//! Objects of the object API (`/api/v1/objects/<path>`) are kept under `~objects/<path>`, and
//! key-values under `~kv/<namespace>/` (see the state layer's `kv`): `~` is not allowed in a
//! workspace name, so nothing written as an object or a key is ever a workspace's state,
//! history or record (the audit trail included), and no workspace path is ever an object or
//! a key.

use crate::types::{Error, Result};

/// The workspace that always exists.
pub const DEFAULT_WORKSPACE: &str = "default";

/// File name of a workspace's state under its directory.
pub const STATE_FILE: &str = "terraform.tfstate";

/// Longest workspace name, in bytes.
pub const MAX_WORKSPACE_NAME: usize = 128;

/// Checks a workspace name: 1 to [`MAX_WORKSPACE_NAME`] letters, digits, `-`, `_` or `.`, and
/// not `.` or `..`; the error quotes the name bounded and escaped.
pub fn check_workspace(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if (1..=MAX_WORKSPACE_NAME).contains(&name.len()) && ok_chars && name != "." && name != ".." {
        return Ok(());
    }
    Err(Error::InvalidPath(format!(
        "workspace name `{}` is not valid: use 1 to {MAX_WORKSPACE_NAME} letters, digits, `-`, \
         `_` or `.` (and not `.` or `..`)",
        crate::text::bounded(name, 200)
    )))
}

/// Where a workspace's state is (the name is not checked).
pub fn state_path(workspace: &str) -> String {
    format!("{workspace}/{STATE_FILE}")
}

/// The workspace whose state is at `path`, if `path` is a state path (of a valid workspace
/// name: an object's path never is one).
pub fn workspace_of_state(path: &str) -> Option<&str> {
    let (workspace, file) = path.split_once('/')?;
    (file == STATE_FILE && check_workspace(workspace).is_ok()).then_some(workspace)
}

/// Where the object API keeps its objects: every path under it is an object's.
pub const OBJECTS_PREFIX: &str = "~objects/";

/// Where the object at `path` (of the object API) is kept.
pub fn object_path(path: &str) -> String {
    format!("{OBJECTS_PREFIX}{path}")
}

/// The prefix under which a workspace's kept versions are listed.
pub fn history_prefix(workspace: &str) -> String {
    format!("{workspace}/history/")
}

/// Where the version of `serial` written at `unix_ms` is kept (zero-padded, so listings sort
/// by serial).
pub fn history_path(workspace: &str, serial: u64, unix_ms: u64) -> String {
    format!("{}{serial:012}-{unix_ms:015}", history_prefix(workspace))
}

/// `(serial, unix ms)` of a kept version's path under [`history_prefix`]; `None` for other
/// paths.
pub fn parse_history_path(workspace: &str, path: &str) -> Option<(u64, u64)> {
    let (serial, ms) = path
        .strip_prefix(&history_prefix(workspace))?
        .split_once('-')?;
    Some((serial.parse().ok()?, ms.parse().ok()?))
}

/// The prefix under which a workspace's force-unlock records are listed.
pub fn audit_prefix(workspace: &str) -> String {
    format!("{workspace}/lock-audit/")
}

/// Where the force-unlock record made at `unix_ms` is kept.
pub fn audit_path(workspace: &str, unix_ms: u64) -> String {
    format!("{}{unix_ms:015}.json", audit_prefix(workspace))
}

/// Where the audit trail is kept: every path under it is an audit event's.
pub const AUDIT_TRAIL_PREFIX: &str = "~audit/";

/// The prefix under which a workspace's audit events are listed (the name is not checked).
pub fn audit_trail_prefix(workspace: &str) -> String {
    format!("{AUDIT_TRAIL_PREFIX}{workspace}/")
}

/// Where the audit event `id` (`<unix ms, 15 digits>-<uuid>`, so listings sort by time) of a
/// workspace is kept.
pub fn audit_event_path(workspace: &str, id: &str) -> String {
    format!("{}{id}.json", audit_trail_prefix(workspace))
}

/// Whether `id` is an audit event's id: 15 digits of unix milliseconds, `-`, then 1 to 64
/// letters, digits or `-`.
pub fn is_audit_event_id(id: &str) -> bool {
    let Some((ms, rest)) = id.split_once('-') else {
        return false;
    };
    ms.len() == 15
        && ms.bytes().all(|b| b.is_ascii_digit())
        && (1..=64).contains(&rest.len())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `(workspace, id)` of an audit event's path under [`AUDIT_TRAIL_PREFIX`] (of a valid
/// workspace name and id); `None` for any other path.
pub fn parse_audit_event_path(path: &str) -> Option<(&str, &str)> {
    let (workspace, file) = path.strip_prefix(AUDIT_TRAIL_PREFIX)?.split_once('/')?;
    let id = file.strip_suffix(".json")?;
    (check_workspace(workspace).is_ok() && is_audit_event_id(id)).then_some((workspace, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names() {
        for ok in ["default", "prod-eu.1", "a_b", &"x".repeat(128)] {
            assert!(check_workspace(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "%2e%2e", "a\0", "é", &"x".repeat(129)] {
            assert!(check_workspace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_read_back() {
        assert_eq!(state_path("dev"), "dev/terraform.tfstate");
        assert_eq!(workspace_of_state("dev/terraform.tfstate"), Some("dev"));
        assert_eq!(workspace_of_state("dev/history/1-2"), None);
        assert_eq!(workspace_of_state("/terraform.tfstate"), None);
        // An object named like a state is not a workspace's.
        let object = object_path("terraform.tfstate");
        assert_eq!(object, "~objects/terraform.tfstate");
        assert_eq!(workspace_of_state(&object), None);
        let kept = history_path("dev", 7, 1_700_000_000_000);
        assert_eq!(kept, "dev/history/000000000007-001700000000000");
        assert_eq!(
            parse_history_path("dev", &kept),
            Some((7, 1_700_000_000_000))
        );
        assert_eq!(parse_history_path("dev", "dev/history/x-1"), None);
        assert_eq!(parse_history_path("prod", &kept), None);
        assert_eq!(audit_path("dev", 5), "dev/lock-audit/000000000000005.json");
    }

    #[test]
    fn audit_event_paths_read_back() {
        let id = "001700000000000-9b2f4c1e-8a7d-4e0f-9c3b-5a6d7e8f9012";
        let path = audit_event_path("dev", id);
        assert_eq!(path, format!("~audit/dev/{id}.json"));
        assert_eq!(parse_audit_event_path(&path), Some(("dev", id)));
        assert_eq!(workspace_of_state(&path), None, "not a workspace's state");
        for other in [
            "dev/terraform.tfstate".to_string(),
            object_path(&path),
            "~audit/dev/1-x.json".into(),
            format!("~audit/dev/{id}"),
            format!("~audit/../{id}.json"),
            format!("~audit/dev/sub/{id}.json"),
        ] {
            assert_eq!(parse_audit_event_path(&other), None, "{other}");
        }
        assert!(!is_audit_event_id("001700000000000-"));
        assert!(!is_audit_event_id("001700000000000-a/b"));
    }
}
