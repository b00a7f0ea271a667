//! The file operations WASI lacks, done by the host inside a plugin's read-write grants:
//! permission bits and OS file locks. Resolution below a grant goes through cap-primitives,
//! so symlinks and `..` cannot leave the granted directory.

use std::io;
use std::path::{Path, PathBuf};

use crate::grants::DirGrant;

/// File locks one instance may hold at once: each is an open file descriptor of the host.
pub(crate) const MAX_FILE_LOCKS: usize = 64;

/// A file a plugin locked through `host.file-lock`. The OS lock lives on `file` and ends when
/// it is closed: when the plugin drops the resource, or when the instance (its store) goes.
pub struct HeldFileLock {
    file: std::fs::File,
    /// The granted directory and the path inside it, to remove the file.
    dir: std::fs::File,
    relative: PathBuf,
}

/// The read-write grant holding the plugin's absolute `path`, opened, and the path inside it.
fn writable_grant<'p>(
    dirs: &[DirGrant],
    path: &'p str,
) -> Result<(std::fs::File, &'p Path), String> {
    let (grant, relative) = dirs
        .iter()
        .find_map(|grant| {
            let rest = path.strip_prefix(grant.guest.as_str())?.strip_prefix('/')?;
            Some((grant, rest))
        })
        .ok_or_else(|| format!("`{path}` is not inside a directory granted to the plugin"))?;
    if grant.read_only {
        return Err(format!("`{path}` is in a read-only grant"));
    }
    let dir =
        cap_primitives::fs::open_ambient_dir(&grant.host, cap_primitives::ambient_authority())
            .map_err(|e| format!("opening the granted directory: {e}"))?;
    Ok((dir, Path::new(relative)))
}

/// Sets a file's permission bits inside the read-write grants.
pub(crate) fn set_mode(dirs: &[DirGrant], path: &str, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if mode > 0o777 {
        return Err(format!(
            "mode {mode:o} is not a permission mode (at most 0o777)"
        ));
    }
    let (dir, relative) = writable_grant(dirs, path)?;
    let permissions =
        cap_primitives::fs::Permissions::from_std(std::fs::Permissions::from_mode(mode));
    cap_primitives::fs::set_permissions(&dir, relative, permissions)
        .map_err(|e| format!("`{path}`: {e}"))
}

/// Takes the OS lock on a file inside the read-write grants (created when missing), without
/// waiting; `None` while someone else holds it.
pub(crate) fn try_lock(dirs: &[DirGrant], path: &str) -> Result<Option<HeldFileLock>, String> {
    use cap_primitives::fs::{FollowSymlinks, MetadataExt as _, OpenOptionsExt as _};
    use std::os::unix::fs::MetadataExt as _;
    let (dir, relative) = writable_grant(dirs, path)?;
    let mut options = cap_primitives::fs::OpenOptions::new();
    options.read(true).write(true).create(true).mode(0o600);
    // The previous holder may remove the file between our open and our lock: we would then
    // hold a lock on a file no one else can see. Such a lock is let go and taken again on
    // what the path names now.
    for _ in 0..8 {
        let file = cap_primitives::fs::open(&dir, relative, &options)
            .map_err(|e| format!("`{path}`: {e}"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(format!("`{path}`: {e}")),
        }
        let held = file.metadata().map_err(|e| format!("`{path}`: {e}"))?;
        match cap_primitives::fs::stat(&dir, relative, FollowSymlinks::No) {
            Ok(named) if named.dev() == held.dev() && named.ino() == held.ino() => {
                return Ok(Some(HeldFileLock {
                    file,
                    dir,
                    relative: relative.to_path_buf(),
                }));
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("`{path}`: {e}")),
        }
    }
    Err(format!(
        "`{path}` was replaced each time it was locked; another writer keeps removing it"
    ))
}

impl HeldFileLock {
    /// Deletes the locked file while its lock is held.
    pub(crate) fn remove_file(&self) -> Result<(), String> {
        cap_primitives::fs::remove_file(&self.dir, &self.relative)
            .map_err(|e| format!("removing `{}`: {e}", self.relative.display()))
    }

    /// Ends the lock (closing its file releases the OS lock).
    pub(crate) fn release(self) {
        drop(self.file);
    }
}
