//! Where logical paths live in the bucket, and back.
//!
//! Workspace states use Terraform's own s3 backend layout, so Terraform and stateplug can
//! share a bucket: `default/terraform.tfstate` is `<key>`, `<ws>/terraform.tfstate` is
//! `<workspace_key_prefix>/<ws>/<key>`. Every other path `p` is `<prefix>p`. The lock object of
//! any path is its key plus `.tflock` (Terraform 1.10+ lock files).

use stateplug_sdk::layout::{DEFAULT_WORKSPACE, STATE_FILE, state_path, workspace_of_state};
use stateplug_sdk::path::{self, LOCK_SUFFIX};
use stateplug_sdk::{Error, Result};

/// The key mapping of one configured store.
#[derive(Debug, Clone)]
pub struct Layout {
    key: String,
    workspace_key_prefix: String,
    prefix: String,
}

/// A bucket key read back as a logical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The logical path (for a lock object: the path it protects).
    pub path: String,
    /// Whether the key is a lock object.
    pub lock: bool,
}

/// Where the workspace states that could match a listing prefix are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateScan {
    /// Whether `default/terraform.tfstate` (the object `key`) could match.
    pub default: bool,
    /// The bucket prefix to list for the other workspaces' states.
    pub workspaces: String,
}

impl Layout {
    /// Checks that the three areas cannot overlap: a key must never be readable as two
    /// different logical paths.
    pub fn new(key: &str, workspace_key_prefix: &str, prefix: &str) -> Result<Layout> {
        let bad = |name: &str, value: &str, why: &str| {
            Err(Error::InvalidConfig(format!("`{name}` = `{value}` {why}")))
        };
        if key.is_empty() || key.starts_with('/') || key.ends_with('/') || key.contains("//") {
            return bad(
                "key",
                key,
                "must be an object key like `terraform.tfstate` or `team/terraform.tfstate` \
                 (not empty, no leading or trailing `/`, no `//`)",
            );
        }
        if key.ends_with(LOCK_SUFFIX) {
            return bad(
                "key",
                key,
                "must not end in `.tflock` (reserved for lock files)",
            );
        }
        let wkp = workspace_key_prefix;
        if wkp.is_empty() || wkp.starts_with('/') || wkp.ends_with('/') {
            return bad(
                "workspace_key_prefix",
                wkp,
                "must be a non-empty prefix without leading or trailing `/`, like `env:`",
            );
        }
        if prefix.is_empty() || prefix.starts_with('/') {
            return bad(
                "prefix",
                prefix,
                "must be a non-empty key prefix without a leading `/`, like `stateplug/`",
            );
        }
        let workspaces = format!("{wkp}/");
        if key.starts_with(prefix) {
            return bad(
                "prefix",
                prefix,
                &format!(
                    "is a prefix of `key` = `{key}`; choose a `prefix` the state key does not start with"
                ),
            );
        }
        if prefix.starts_with(&workspaces) || workspaces.starts_with(prefix) {
            return bad(
                "prefix",
                prefix,
                &format!(
                    "overlaps `workspace_key_prefix` = `{wkp}`; choose a `prefix` that neither \
                     starts with `{workspaces}` nor is a prefix of it"
                ),
            );
        }
        if key.starts_with(&workspaces) {
            return bad(
                "key",
                key,
                &format!("starts with `workspace_key_prefix` = `{wkp}`; choose another `key`"),
            );
        }
        Ok(Layout {
            key: key.into(),
            workspace_key_prefix: wkp.into(),
            prefix: prefix.into(),
        })
    }

    /// The bucket key of a logical path (lock objects included).
    pub fn object_key(&self, path: &str) -> String {
        if let Some(base) = path.strip_suffix(LOCK_SUFFIX) {
            return format!("{}{LOCK_SUFFIX}", self.object_key(base));
        }
        match workspace_of_state(path) {
            Some(DEFAULT_WORKSPACE) => self.key.clone(),
            Some(ws) => format!("{}/{ws}/{}", self.workspace_key_prefix, self.key),
            None => format!("{}{path}", self.prefix),
        }
    }

    /// Whether a bucket key holds a workspace state (Terraform keeps a digest of those).
    pub fn is_state_key(&self, key: &str) -> bool {
        key == self.key || self.workspace_of(key).is_some()
    }

    /// The logical path a bucket key stands for; `None` for keys this layout never writes.
    pub fn entry_of_key(&self, key: &str) -> Option<Entry> {
        let (base, lock) = match key.strip_suffix(LOCK_SUFFIX) {
            Some(base) => (base, true),
            None => (key, false),
        };
        let path = if base == self.key {
            state_path(DEFAULT_WORKSPACE)
        } else if let Some(ws) = self.workspace_of(base) {
            state_path(ws)
        } else {
            let path = base.strip_prefix(&self.prefix)?;
            // A state path stored under `prefix` (written by hand) would shadow nothing we
            // read; an invalid one could not be addressed. Neither is ours.
            if workspace_of_state(path).is_some() || path::validate(path).is_err() {
                return None;
            }
            path.to_string()
        };
        Some(Entry { path, lock })
    }

    /// The bucket prefix under which every non-state path starting with `prefix` lives.
    pub fn raw_prefix(&self, prefix: &str) -> String {
        format!("{}{prefix}", self.prefix)
    }

    /// Where to look for workspace states matching a listing prefix; `None` when no
    /// `<ws>/terraform.tfstate` can start with it.
    pub fn state_scan(&self, prefix: &str) -> Option<StateScan> {
        let wkp = &self.workspace_key_prefix;
        match prefix.split_once('/') {
            None => Some(StateScan {
                default: DEFAULT_WORKSPACE.starts_with(prefix),
                workspaces: format!("{wkp}/{prefix}"),
            }),
            Some((ws, rest)) if !ws.is_empty() && STATE_FILE.starts_with(rest) => Some(StateScan {
                default: ws == DEFAULT_WORKSPACE,
                workspaces: format!("{wkp}/{ws}/"),
            }),
            Some(_) => None,
        }
    }

    /// The workspace whose state is at `key` (`<wkp>/<ws>/<key>`), never `default`
    /// (its state is `key` itself).
    fn workspace_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key
            .strip_prefix(self.workspace_key_prefix.as_str())?
            .strip_prefix('/')?;
        let ws = rest.strip_suffix(self.key.as_str())?.strip_suffix('/')?;
        (!ws.is_empty() && !ws.contains('/') && ws != DEFAULT_WORKSPACE).then_some(ws)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new("team/terraform.tfstate", "env:", "stateplug/").unwrap()
    }

    #[test]
    fn paths_map_to_terraforms_keys_and_back() {
        let l = layout();
        for (path, key) in [
            ("default/terraform.tfstate", "team/terraform.tfstate"),
            ("dev/terraform.tfstate", "env:/dev/team/terraform.tfstate"),
            ("dev/history/3", "stateplug/dev/history/3"),
            ("a/b/terraform.tfstate", "stateplug/a/b/terraform.tfstate"),
            (
                "dev/terraform.tfstate.tflock",
                "env:/dev/team/terraform.tfstate.tflock",
            ),
            ("x.tflock", "stateplug/x.tflock"),
        ] {
            assert_eq!(l.object_key(path), key, "{path}");
            let (base, lock) = match path.strip_suffix(LOCK_SUFFIX) {
                Some(base) => (base, true),
                None => (path, false),
            };
            let entry = Entry {
                path: base.into(),
                lock,
            };
            assert_eq!(l.entry_of_key(key), Some(entry), "{key}");
        }
        assert!(l.is_state_key("env:/dev/team/terraform.tfstate"));
        assert!(!l.is_state_key("stateplug/dev/terraform.tfstate"));
        for foreign in [
            "other.tfstate",
            "env:/default/team/terraform.tfstate",
            "env:/a/b/team/terraform.tfstate",
            "stateplug/dev/terraform.tfstate",
            "stateplug/a//b",
        ] {
            assert_eq!(l.entry_of_key(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn state_scan_only_where_states_can_match() {
        let l = layout();
        let scan = |p| l.state_scan(p);
        assert_eq!(
            scan(""),
            Some(StateScan {
                default: true,
                workspaces: "env:/".into()
            })
        );
        assert_eq!(
            scan("de"),
            Some(StateScan {
                default: true,
                workspaces: "env:/de".into()
            })
        );
        assert_eq!(
            scan("dev/terra").map(|s| s.workspaces),
            Some("env:/dev/".into())
        );
        assert_eq!(scan("dev/h"), None);
        assert_eq!(scan("dev/terraform.tfstate/"), None);
    }

    #[test]
    fn overlapping_areas_are_refused() {
        for (key, wkp, prefix) in [
            ("stateplug/terraform.tfstate", "env:", "stateplug/"),
            ("terraform.tfstate", "env:", "env:/x/"),
            ("terraform.tfstate", "env:", "env"),
            ("terraform.tfstate", "env:", ""),
            ("env:/terraform.tfstate", "env:", "stateplug/"),
            ("/terraform.tfstate", "env:", "stateplug/"),
            ("terraform.tfstate", "", "stateplug/"),
            ("x.tflock", "env:", "stateplug/"),
        ] {
            assert!(
                matches!(Layout::new(key, wkp, prefix), Err(Error::InvalidConfig(_))),
                "{key} {wkp} {prefix}"
            );
        }
    }
}
