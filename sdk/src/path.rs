//! Path rules of the contract. The host checks every path before calling a plugin and the
//! SDK checks it again inside the plugin, so a store never sees a path that could escape it.

use crate::types::{Error, Result};

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;

/// Suffix of the lock object that the default locking keeps next to the object it protects
/// (Terraform 1.10+ uses the same name for its S3 lock files). User objects may not end in it.
pub const LOCK_SUFFIX: &str = ".tflock";

/// Checks an object path: `/`-separated, relative, no empty, `.` or `..` segments, no NUL or
/// other control characters, no backslash, at most [`MAX_PATH_LEN`] bytes, and not a lock
/// object's name.
pub fn validate(path: &str) -> Result<()> {
    check_common(path)?;
    if path.is_empty() {
        return Err(invalid(path, "it is empty"));
    }
    for segment in path.split('/') {
        check_segment(path, segment)?;
    }
    if path.ends_with(LOCK_SUFFIX) {
        return Err(invalid(
            path,
            &format!("names ending in `{LOCK_SUFFIX}` are reserved for locks"),
        ));
    }
    Ok(())
}

/// Checks a listing prefix: like a path, except that it may be empty, end with `/`, or end in
/// the middle of a segment.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    check_common(prefix)?;
    if prefix.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = prefix.split('/').collect();
    let (last, complete) = segments.split_last().unwrap_or((&"", &[]));
    for segment in complete {
        check_segment(prefix, segment)?;
    }
    if *last == "." || *last == ".." {
        return Err(invalid(prefix, "it contains a `.` or `..` segment"));
    }
    Ok(())
}

fn check_common(path: &str) -> Result<()> {
    if path.len() > MAX_PATH_LEN {
        return Err(Error::InvalidPath(format!(
            "path of {} bytes is longer than {MAX_PATH_LEN}",
            path.len()
        )));
    }
    if path.starts_with('/') {
        return Err(invalid(
            path,
            "it is absolute; paths are relative to the store",
        ));
    }
    if let Some(c) = path.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(invalid(
            path,
            &format!(
                "it contains the character {c:?}; control characters and `\\` are not allowed"
            ),
        ));
    }
    Ok(())
}

fn check_segment(path: &str, segment: &str) -> Result<()> {
    match segment {
        "" => Err(invalid(
            path,
            "it has an empty segment (`//` or a trailing `/`)",
        )),
        "." | ".." => Err(invalid(path, "it contains a `.` or `..` segment")),
        _ => Ok(()),
    }
}

fn invalid(path: &str, why: &str) -> Error {
    Error::InvalidPath(format!(
        "`{}` is not a valid path: {why}",
        path.escape_debug()
    ))
}

/// The path of the lock object protecting `path`.
pub fn lock_path(path: &str) -> String {
    format!("{path}{LOCK_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "a",
            "env:/dev/terraform.tfstate",
            "a/b.c/d",
            ".hidden/x",
            "a..b",
        ] {
            assert_eq!(validate(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn refuses_escapes_and_junk() {
        let long = "a".repeat(MAX_PATH_LEN + 1);
        for p in [
            "",
            "/etc/passwd",
            "..",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\\b",
            "x.tflock",
            &long,
        ] {
            assert!(matches!(validate(p), Err(Error::InvalidPath(_))), "{p:?}");
        }
    }

    #[test]
    fn prefixes_may_be_partial() {
        for p in ["", "env:/", "env:/de", "a/b/"] {
            assert_eq!(validate_prefix(p), Ok(()), "{p}");
        }
        for p in ["/", "..", "a/../", "a/..", "a//b"] {
            assert!(validate_prefix(p).is_err(), "{p:?}");
        }
    }
}
