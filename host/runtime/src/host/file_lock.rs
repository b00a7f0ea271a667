//! `host.file-lock`: OS file locks inside read-write grants, held as resources of the
//! instance, so a crashed or discarded instance never leaves one held.

use wasmtime::component::Resource;

use crate::files::{self, HeldFileLock, MAX_FILE_LOCKS};

use super::HostView;

/// Takes the lock on the file at `path` without waiting; `None` while someone holds it.
pub(super) fn try_lock(
    view: &mut HostView<'_>,
    path: &str,
) -> Result<Option<Resource<HeldFileLock>>, String> {
    if *view.file_locks >= MAX_FILE_LOCKS {
        return Err(format!(
            "the plugin already holds {MAX_FILE_LOCKS} file locks; drop one before taking \
             another"
        ));
    }
    let Some(lock) = files::try_lock(view.dirs, path)? else {
        return Ok(None);
    };
    let resource = view.table.push(lock).map_err(|e| e.to_string())?;
    *view.file_locks += 1;
    Ok(Some(resource))
}

/// Deletes a locked file while its lock is held.
pub(super) fn remove(view: &mut HostView<'_>, lock: &Resource<HeldFileLock>) -> Result<(), String> {
    view.table
        .get(lock)
        .map_err(|e| e.to_string())?
        .remove_file()
}

/// Ends a file lock.
pub(super) fn drop(view: &mut HostView<'_>, lock: Resource<HeldFileLock>) -> wasmtime::Result<()> {
    view.table.delete(lock)?.release();
    *view.file_locks -= 1;
    Ok(())
}
