//! The storage calls.
//!
//! Layout under `root`: every object at `root/<path>`; the plugin's own files under
//! `root/.stateplug-local/` (`tmp/` for writes in progress, `guards/` for the short
//! compare-and-swap sections, `backups/<path>/` for old versions).
//!
//! Temp files and guards are held with the host's file locks (the OS's `flock`), which end
//! when their writer ends, however it ends: a guard of a writer that was killed is free at
//! once, and what killed writers left behind is removed when a store opens. A guard held by a
//! live writer makes the call answer `busy` at once: the host retries it shortly, so a busy
//! object never holds up calls for other objects.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::file::{self, Stamp};
use stateplug_sdk::fs::{FileLock, set_file_mode};
use stateplug_sdk::{
    Config, ConfigField, Error, Metadata, Object, Page, Precondition, Result, Store,
    check_precondition, log,
};

/// The plugin's own directory under `root`; no object path may start with it.
const INTERNAL: &str = ".stateplug-local";
/// Paths returned per listing page.
const PAGE_SIZE: usize = 1000;
/// Objects whose last write by this instance it remembers (see [`Local::written`]).
const REMEMBERED: usize = 4096;

/// Makes temp file names unique within this instance.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory of objects.
pub struct Local {
    root: PathBuf,
    backup_count: usize,
    file_mode: u32,
    /// Stamp and version of each object's last write by this instance: while the file keeps
    /// that stamp (nobody replaced it since), its version is known without hashing it.
    written: RefCell<HashMap<String, (Stamp, String)>>,
}

impl Store for Local {
    fn metadata() -> Metadata {
        Metadata {
            name: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Objects as files in a directory granted by the host".into(),
            config: vec![
                ConfigField::optional(
                    "root",
                    "directory to keep objects in, as the plugin sees it (the host grants it)",
                )
                .default_value("/data"),
                ConfigField::optional(
                    "backup_count",
                    "how many previous versions of each object to keep under .stateplug-local/backups",
                )
                .default_value("0"),
                ConfigField::optional(
                    "file_mode",
                    "permission bits of stored files, in octal (state holds secrets: keep it private)",
                )
                .default_value("0600"),
            ],
            features: vec!["backups".into()],
        }
    }

    fn open(config: Config) -> Result<Self> {
        let root = PathBuf::from(config.require("root")?);
        let backup_count = config.parse("backup_count", "a whole number")?.unwrap_or(0);
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::InvalidConfig(format!(
                    "`root` = `{}` is not a directory",
                    root.display()
                )));
            }
            Err(e) => {
                return Err(Error::InvalidConfig(format!(
                    "`root` = `{}` cannot be used ({e}); the host must grant this directory \
                     to the plugin",
                    root.display()
                )));
            }
        }
        for dir in ["tmp", "guards", "backups"] {
            let dir = root.join(INTERNAL).join(dir);
            fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        remove_leftovers(&root.join(INTERNAL));
        let file_mode = config.get("file_mode").unwrap_or("0600");
        let file_mode = u32::from_str_radix(file_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "`file_mode` = `{file_mode}` is not an octal permission mode like 0600"
                ))
            })?;
        Ok(Local {
            root,
            backup_count,
            file_mode,
            written: RefCell::default(),
        })
    }

    fn read(&self, path: &str) -> Result<Object> {
        let file = self.object_file(path)?;
        let (data, stamp) =
            file::read(&file).map_err(|e| Error::io(format!("reading `{path}`"), e))?;
        let version = self
            .version_written(path, stamp)
            .unwrap_or_else(|| version_of(&data));
        Ok(Object { version, data })
    }

    fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
        self.write_with_hook(path, &data, precondition, || {})
    }

    fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        let file = self.object_file(path)?;
        self.with_guard(path, || {
            check_precondition(self.current_version(path, &file)?.as_deref(), &precondition)?;
            match fs::remove_file(&file) {
                Ok(()) => {
                    self.written.borrow_mut().remove(path);
                    sync_dir(file.parent().unwrap_or(&self.root));
                    Ok(())
                }
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("deleting `{path}`"), e)),
            }
        })
    }

    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        // Walk only below the deepest directory the prefix names.
        let start_dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut paths = Vec::new();
        walk(&self.root.join(start_dir), start_dir, &mut paths)?;
        paths.retain(|p| p.starts_with(prefix) && !is_internal(p));
        paths.sort();
        Ok(Page::from_sorted(paths, cursor, PAGE_SIZE))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let file = self.object_file(path)?;
        match fs::metadata(&file) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("checking `{path}`"), e)),
        }
    }
}

impl Local {
    /// [`Store::write`], running `before_commit` once the new content is durable in its temp
    /// file and the guard is held, just before the rename. Only the crash tests pass a hook.
    #[doc(hidden)]
    pub fn write_with_hook(
        &self,
        path: &str,
        data: &[u8],
        precondition: Precondition,
        before_commit: impl FnOnce(),
    ) -> Result<String> {
        let file = self.object_file(path)?;
        let parent = file.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent)
            .map_err(|e| Error::io(format!("creating the directory of `{path}`"), e))?;
        let version = version_of(data);
        if let Some(stamp) = self.link_written(&file, &version, &precondition)? {
            sync_dir(&parent);
            self.remember(path, Some(stamp), &version);
            return Ok(version);
        }
        // All the slow work (writing, fsync) happens before the guarded section.
        let (temp, stamp, _temp_lock) = self.write_temp(data)?;
        let result = self.with_guard(path, || {
            before_commit();
            if precondition == Precondition::Absent {
                // A hard link fails if the name exists: create-only, even against writers
                // that do not know about the guard.
                fs::hard_link(&temp, &file).map_err(|e| match e.kind() {
                    ErrorKind::AlreadyExists => Error::PreconditionFailed,
                    _ => Error::io(format!("creating `{path}`"), e),
                })?;
                let _ = fs::remove_file(&temp);
            } else {
                check_precondition(self.current_version(path, &file)?.as_deref(), &precondition)?;
                self.back_up(path, &file)?;
                fs::rename(&temp, &file)
                    .map_err(|e| Error::io(format!("replacing `{path}`"), e))?;
            }
            sync_dir(&parent);
            self.remember(path, stamp, &version);
            Ok(version.clone())
        });
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn object_file(&self, path: &str) -> Result<PathBuf> {
        if is_internal(path) {
            return Err(Error::InvalidPath(format!(
                "`{path}`: `{INTERNAL}/` is reserved for the local plugin's own files"
            )));
        }
        Ok(self.root.join(path))
    }

    fn internal(&self, dir: &str) -> PathBuf {
        self.root.join(INTERNAL).join(dir)
    }

    /// The current content's version, `None` when there is no object. Read and hashed
    /// unless this instance wrote it last and it is unchanged since.
    fn current_version(&self, path: &str, file: &Path) -> Result<Option<String>> {
        let reading = |e| Error::io(format!("reading `{path}`"), e);
        let Some(stamp) = file::stamp(file).map_err(reading)? else {
            return Ok(None);
        };
        if let Some(version) = self.version_written(path, stamp) {
            return Ok(Some(version));
        }
        match file::read(file) {
            Ok((data, _)) => Ok(Some(version_of(&data))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(reading(e)),
        }
    }

    /// Creates the new `file` as a hard link of a file this instance wrote with the same
    /// content and that is unchanged since, like the history version of a state just stored:
    /// the data is on disk already, so only the directory is synced. `None` when there is no
    /// such file, when `precondition` names a version (a replace, checked under the guard), or
    /// when `file` exists and `precondition` lets it be replaced: the caller writes the data.
    fn link_written(
        &self,
        file: &Path,
        version: &str,
        precondition: &Precondition,
    ) -> Result<Option<Stamp>> {
        if matches!(precondition, Precondition::VersionIs(_)) {
            return Ok(None);
        }
        let found = self
            .written
            .borrow()
            .iter()
            .find(|(_, (_, known))| known == version)
            .map(|(source, (stamp, _))| (source.clone(), *stamp));
        let Some((source, stamp)) = found else {
            return Ok(None);
        };
        let source_file = self.root.join(&source);
        if source_file == file {
            return Ok(None); // the same bytes again: an ordinary replace
        }
        // The source's guard keeps this plugin's writers from replacing it between the check
        // of its stamp and the link.
        let linked = self.with_guard(&source, || {
            if file::stamp(&source_file).ok().flatten() != Some(stamp) {
                return Ok(false);
            }
            match fs::hard_link(&source_file, file) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => match precondition {
                    Precondition::Absent => Err(Error::PreconditionFailed),
                    _ => Ok(false),
                },
                Err(_) => Ok(false),
            }
        });
        match linked {
            Ok(true) => Ok(Some(stamp)),
            Ok(false) | Err(Error::Busy(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The version of `path` if the file still has the stamp of this instance's last write.
    fn version_written(&self, path: &str, stamp: Stamp) -> Option<String> {
        let written = self.written.borrow();
        let (known, version) = written.get(path)?;
        (*known == stamp).then(|| version.clone())
    }

    fn remember(&self, path: &str, stamp: Option<Stamp>, version: &str) {
        let mut written = self.written.borrow_mut();
        match stamp {
            Some(stamp) => {
                if written.len() >= REMEMBERED && !written.contains_key(path) {
                    written.clear();
                }
                written.insert(path.to_string(), (stamp, version.to_string()));
            }
            // The filesystem kept no exact time: nothing tells this write from the next.
            None => {
                written.remove(path);
            }
        }
    }

    /// Writes `data` to a fresh temp file and makes it durable. The temp file stays locked
    /// while the write lasts, so that a store opening meanwhile knows it is not a leftover.
    fn write_temp(&self, data: &[u8]) -> Result<(PathBuf, Option<Stamp>, FileLock)> {
        let dir = self.internal("tmp");
        loop {
            let temp = dir.join(unique_name());
            // Taken only when another process picked the same name: pick another.
            let Some(lock) = FileLock::try_lock(&temp)? else {
                continue;
            };
            let written = file::write_durable(&temp, data)
                .map_err(|e| Error::io("writing a temp file", e))
                .and_then(|stamp| set_file_mode(&temp, self.file_mode).map(|()| stamp));
            match written {
                Ok(stamp) => return Ok((temp, stamp, lock)),
                Err(e) => {
                    let _ = lock.remove();
                    return Err(e);
                }
            }
        }
    }

    /// Keeps the current version under `backups/<path>/` (a hard link: no copy) and prunes
    /// the oldest beyond `backup_count`.
    fn back_up(&self, path: &str, file: &Path) -> Result<()> {
        if self.backup_count == 0 || !file.exists() {
            return Ok(());
        }
        let dir = self.internal("backups").join(path);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating the backup directory of `{path}`"), e))?;
        fs::hard_link(file, dir.join(unique_name()))
            .map_err(|e| Error::io(format!("backing up `{path}`"), e))?;
        let mut backups: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| Error::io(format!("listing the backups of `{path}`"), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        // Names start with a zero-padded timestamp, so name order is age order.
        backups.sort();
        let excess = backups.len().saturating_sub(self.backup_count);
        for old in &backups[..excess] {
            let _ = fs::remove_file(old);
        }
        Ok(())
    }

    /// Runs `section` while holding the guard of `path`, a locked file, so that
    /// compare-and-swap stays atomic between instances and processes sharing the directory.
    /// While another writer holds it, answers `busy` at once (the host retries).
    fn with_guard<T>(&self, path: &str, section: impl FnOnce() -> Result<T>) -> Result<T> {
        let guard = self.internal("guards").join(format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(path.as_bytes())
        ));
        let Some(lock) = FileLock::try_lock(&guard)? else {
            return Err(Error::Busy(format!(
                "another writer is changing `{path}` right now"
            )));
        };
        let result = section();
        // Removed while still locked: one-off paths (history) leave no guard behind.
        let _ = lock.remove();
        result
    }
}

/// Removes the temp files and guards that writers which ended mid-write left in `internal`:
/// those whose lock can be taken, since a live writer holds the lock of its own.
fn remove_leftovers(internal: &Path) {
    let mut removed = 0;
    for dir in ["tmp", "guards"] {
        let Ok(entries) = fs::read_dir(internal.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_file())
                && let Ok(Some(lock)) = FileLock::try_lock(&entry.path())
                && lock.remove().is_ok()
            {
                removed += 1;
            }
        }
    }
    if removed > 0 {
        log::info(&format!(
            "removed {removed} temp files and guards left by writers that ended mid-write"
        ));
    }
}

fn version_of(data: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(data))
}

fn is_internal(path: &str) -> bool {
    path == INTERNAL || path.starts_with(&format!("{INTERNAL}/"))
}

/// `<unix nanos, zero-padded>-<counter>`: sortable by age, unique within the instance; the
/// exclusive create catches the rare clash with another process.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{nanos:020}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Makes a rename or removal in `dir` durable. Best effort: not every filesystem lets a
/// directory be synced.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Collects the relative paths of all files below `dir` (named `rel` relative to the root).
fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing `{rel}`"), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing `{rel}`"), e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue; // not UTF-8: not an object this plugin wrote
        };
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("listing `{path}`"), e))?;
        if kind.is_dir() {
            if path != INTERNAL {
                walk(&entry.path(), &path, out)?;
            }
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}
