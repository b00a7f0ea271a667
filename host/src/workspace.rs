//! Workspaces: Terraform's name for one state document, and where each is stored.

use crate::error::{Error, Result};

/// The workspace that always exists.
pub const DEFAULT_WORKSPACE: &str = "default";

/// File name of a workspace's state under its directory.
const STATE_FILE: &str = "terraform.tfstate";

/// Checks a workspace name: 1-128 letters, digits, `-`, `_` or `.`, and not `.` or `..`.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if (1..=128).contains(&name.len()) && ok_chars && name != "." && name != ".." {
        return Ok(());
    }
    Err(Error::InvalidPath(format!(
        "workspace name `{}` is not valid: use 1 to 128 letters, digits, `-`, `_` or `.` \
         (and not `.` or `..`)",
        crate::text::bounded(name, 200)
    )))
}

/// Where a workspace's state is stored in a backend.
pub fn state_path(name: &str) -> Result<String> {
    validate_name(name)?;
    Ok(format!("{name}/{STATE_FILE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["default", "prod-eu.1", "a_b", &"x".repeat(128)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "%2e%2e", "a\0", "é", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(state_path("dev").unwrap(), "dev/terraform.tfstate");
    }
}
