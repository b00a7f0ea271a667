//! Filesystem calls that WASI lacks (file modes, file locks), performed by the host inside
//! the plugin's grants.

use std::path::Path;

use crate::types::{Error, Result};

/// Sets a file's permission bits (e.g. `0o600`). The file must be inside a directory the host
/// granted read-write; elsewhere the host refuses with [`Error::Denied`].
pub fn set_file_mode(path: &Path, mode: u32) -> Result<()> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::InvalidPath(format!("{} is not UTF-8", path.display())))?;
    #[cfg(target_arch = "wasm32")]
    {
        crate::export::bindings::stateplug::backend::host::set_file_mode(text, mode)
            .map_err(Error::Denied)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("setting the mode of {text}"), e))
    }
}

/// An exclusive lock on a file inside a directory the host granted read-write: the operating
/// system's lock, seen by every instance and process sharing the directory, and released when
/// this value is dropped, when the instance is discarded, or when the host process dies. A
/// writer that crashed therefore never leaves it held: there is no stale lock to wait out.
pub struct FileLock {
    #[cfg(target_arch = "wasm32")]
    held: crate::export::bindings::stateplug::backend::host::FileLock,
    #[cfg(not(target_arch = "wasm32"))]
    held: native::Held,
}

impl FileLock {
    /// Locks the file at `path` (created empty, mode `0o600`, when missing) without waiting;
    /// `None` while another holder has it.
    pub fn try_lock(path: &Path) -> Result<Option<FileLock>> {
        let text = path
            .to_str()
            .ok_or_else(|| Error::InvalidPath(format!("{} is not UTF-8", path.display())))?;
        #[cfg(target_arch = "wasm32")]
        let held = crate::export::bindings::stateplug::backend::host::FileLock::try_lock(text)
            .map_err(|e| Error::Other(format!("locking {text}: {e}")))?;
        #[cfg(not(target_arch = "wasm32"))]
        let held =
            native::Held::try_lock(path).map_err(|e| Error::io(format!("locking {text}"), e))?;
        Ok(held.map(|held| FileLock { held }))
    }

    /// Deletes the locked file while still holding the lock, then releases it.
    pub fn remove(self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        return self.held.remove().map_err(Error::Other);
        #[cfg(not(target_arch = "wasm32"))]
        return self
            .held
            .remove()
            .map_err(|e| Error::io("removing a locked file", e));
    }
}

/// The same lock for plugins linked natively (benchmarks, unit tests), straight on the OS.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::fs::{File, OpenOptions, TryLockError};
    use std::io;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    pub struct Held {
        _file: File,
        path: PathBuf,
    }

    impl Held {
        pub fn try_lock(path: &Path) -> io::Result<Option<Held>> {
            // The previous holder may remove the file between our open and our lock; such a
            // lock guards nothing, so it is let go and taken again on the file there now.
            for _ in 0..8 {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o600)
                    .open(path)?;
                match file.try_lock() {
                    Ok(()) => {}
                    Err(TryLockError::WouldBlock) => return Ok(None),
                    Err(TryLockError::Error(e)) => return Err(e),
                }
                let held = file.metadata()?;
                match std::fs::symlink_metadata(path) {
                    Ok(named) if named.dev() == held.dev() && named.ino() == held.ino() => {
                        return Ok(Some(Held {
                            _file: file,
                            path: path.to_path_buf(),
                        }));
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(io::Error::other(
                "the file was replaced each time it was locked",
            ))
        }

        pub fn remove(self) -> io::Result<()> {
            std::fs::remove_file(&self.path)
        }
    }
}
