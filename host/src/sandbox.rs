//! What a plugin may touch: the grants an operator gives each opened backend, and the
//! per-instance state (WASI context, resource limits, captured output) built from them.
//!
//! Deny by default: no environment variables, no arguments, no stdin, no sockets, no files
//! beyond the granted directories, no HTTP beyond the granted hosts (see `network`). Memory
//! and time are capped.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::error::{Error, Result};
use crate::network::{HostGrant, NetworkPolicy};

/// Default cap on a plugin instance's linear memory.
pub const DEFAULT_MEMORY: usize = 256 << 20;
/// Default deadline for one call into a plugin.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a plugin's stdout/stderr is kept to explain a crash.
const OUTPUT_TAIL: usize = 4096;
/// Log messages a plugin may send per call before the host drops the rest.
pub(crate) const LOG_BUDGET_PER_CALL: u32 = 1000;
/// File locks one instance may hold at once: each is an open file descriptor of the host.
const MAX_FILE_LOCKS: usize = 64;

/// What one opened backend may use.
#[derive(Debug, Clone)]
pub struct Grants {
    /// Host directories the plugin may see, each under a guest path.
    pub dirs: Vec<DirGrant>,
    /// Cap on linear memory, in bytes.
    pub memory: usize,
    /// Wall-clock deadline for one call.
    pub timeout: Duration,
    /// Hosts the plugin may send HTTP requests to; none by default.
    pub allow_hosts: Vec<HostGrant>,
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            dirs: Vec::new(),
            memory: DEFAULT_MEMORY,
            timeout: DEFAULT_TIMEOUT,
            allow_hosts: Vec::new(),
        }
    }
}

/// One host directory made visible to a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the plugin sees it (an absolute guest path).
    pub guest: String,
    /// Whether the plugin may only read.
    pub read_only: bool,
}

impl DirGrant {
    /// Grants `host` read-write, seen by the plugin as `/data` (where the `local` plugin
    /// keeps its objects by default).
    pub fn read_write(host: impl Into<PathBuf>) -> DirGrant {
        DirGrant {
            host: host.into(),
            guest: crate::config::DEFAULT_GUEST_DIR.to_string(),
            read_only: false,
        }
    }
}

impl Grants {
    /// The store state for a fresh instance of plugin `plugin` under these grants.
    pub(crate) fn store_state(&self, plugin: &str) -> Result<StoreState> {
        let output = GuestOutput::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(output.clone()).stderr(output.clone());
        // File operations stay on tokio's blocking pool (wasmtime-wasi's default): doing them
        // on the calling thread is faster, but a plugin stuck in one (a slow network mount)
        // would then hold an async worker where no deadline can reach it.
        for dir in &self.dirs {
            if !dir.read_only && !dir.host.exists() {
                std::fs::create_dir_all(&dir.host).map_err(|e| Error::Grant {
                    path: dir.host.clone(),
                    reason: format!("it does not exist and cannot be created: {e}"),
                })?;
            }
            let perms = if dir.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            wasi.preopened_dir(&dir.host, &dir.guest, perms)
                .map_err(|e| Error::Grant {
                    path: dir.host.clone(),
                    reason: crate::error::chain(&e),
                })?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory)
            .table_elements(1 << 20)
            .instances(64)
            .tables(64)
            .memories(16)
            // A guest that asks for too much traps at once with a clear message instead of
            // seeing a failed allocation and aborting somewhere less obvious.
            .trap_on_grow_failure(true)
            .build();
        let plugin: Arc<str> = plugin.into();
        // A response bigger than the plugin's memory could never be held by it anyway.
        let network = NetworkPolicy::new(
            plugin.clone(),
            self.allow_hosts.clone(),
            self.timeout,
            self.memory as u64,
        );
        Ok(StoreState {
            plugin,
            http: WasiHttpCtx::new(),
            network,
            dirs: self.dirs.clone(),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            output,
            log_budget: LOG_BUDGET_PER_CALL,
            file_locks: 0,
        })
    }
}

/// Everything one plugin instance's store holds.
pub(crate) struct StoreState {
    pub(crate) plugin: Arc<str>,
    dirs: Vec<DirGrant>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    network: NetworkPolicy,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) output: GuestOutput,
    /// Log messages left for the current call.
    pub(crate) log_budget: u32,
    /// File locks the instance holds (`host.file-lock`).
    file_locks: usize,
}

/// A file a plugin locked through `host.file-lock`. The OS lock lives on `file` and ends when
/// it is closed: when the plugin drops the resource, or when the instance (its store) goes.
pub struct HeldFileLock {
    file: std::fs::File,
    /// The granted directory and the path inside it, to remove the file.
    dir: std::fs::File,
    relative: PathBuf,
}

impl StoreState {
    /// The read-write grant holding the plugin's absolute `path`, opened, and the path inside
    /// it. Resolution below it goes through cap-primitives, so symlinks and `..` cannot leave
    /// the granted directory.
    fn writable_grant<'p>(&self, path: &'p str) -> Result<(std::fs::File, &'p Path), String> {
        let (grant, relative) = self
            .dirs
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

    /// Sets a file's permission bits inside the plugin's read-write grants.
    pub(crate) fn set_file_mode(&self, path: &str, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        if mode > 0o777 {
            return Err(format!(
                "mode {mode:o} is not a permission mode (at most 0o777)"
            ));
        }
        let (dir, relative) = self.writable_grant(path)?;
        let permissions =
            cap_primitives::fs::Permissions::from_std(std::fs::Permissions::from_mode(mode));
        cap_primitives::fs::set_permissions(&dir, relative, permissions)
            .map_err(|e| format!("`{path}`: {e}"))
    }

    /// Takes the OS lock on a file inside the read-write grants (created when missing),
    /// without waiting; `None` while someone else holds it.
    pub(crate) fn try_lock_file(
        &mut self,
        path: &str,
    ) -> Result<Option<Resource<HeldFileLock>>, String> {
        use cap_primitives::fs::{FollowSymlinks, MetadataExt as _, OpenOptionsExt as _};
        use std::os::unix::fs::MetadataExt as _;
        if self.file_locks >= MAX_FILE_LOCKS {
            return Err(format!(
                "the plugin already holds {MAX_FILE_LOCKS} file locks; drop one before taking \
                 another"
            ));
        }
        let (dir, relative) = self.writable_grant(path)?;
        let mut options = cap_primitives::fs::OpenOptions::new();
        options.read(true).write(true).create(true).mode(0o600);
        // The previous holder may remove the file between our open and our lock: we would
        // then hold a lock on a file no one else can see. Such a lock is let go and taken
        // again on what the path names now.
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
                    let lock = HeldFileLock {
                        file,
                        dir,
                        relative: relative.to_path_buf(),
                    };
                    let resource = self.table.push(lock).map_err(|e| e.to_string())?;
                    self.file_locks += 1;
                    return Ok(Some(resource));
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

    /// Deletes a locked file while its lock is held.
    pub(crate) fn remove_locked_file(
        &mut self,
        lock: &Resource<HeldFileLock>,
    ) -> Result<(), String> {
        let lock = self.table.get(lock).map_err(|e| e.to_string())?;
        cap_primitives::fs::remove_file(&lock.dir, &lock.relative)
            .map_err(|e| format!("removing `{}`: {e}", lock.relative.display()))
    }

    /// Ends a file lock (closing its file releases the OS lock).
    pub(crate) fn drop_file_lock(&mut self, lock: Resource<HeldFileLock>) -> wasmtime::Result<()> {
        let held = self.table.delete(lock)?;
        drop(held.file);
        self.file_locks -= 1;
        Ok(())
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.network,
        }
    }
}

/// A plugin's stdout and stderr: logged at debug level, and the last few KiB kept so that a
/// crash report can quote the panic message.
#[derive(Clone, Default)]
pub(crate) struct GuestOutput {
    tail: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    /// Takes what the plugin printed since the last call, trimmed.
    pub(crate) fn take(&self) -> String {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&tail).trim().to_string();
        tail.clear();
        text
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        tracing::debug!(
            target: "stateplug::plugin_output",
            "{}",
            crate::text::untrusted(String::from_utf8_lossy(buf).trim_end())
        );
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.extend_from_slice(buf);
        if tail.len() > OUTPUT_TAIL {
            let excess = tail.len() - OUTPUT_TAIL;
            tail.drain(..excess);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
