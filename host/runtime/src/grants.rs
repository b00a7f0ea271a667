//! What one opened backend may use, as the operator grants it. Deny by default: no
//! environment variables, no arguments, no stdin, no sockets, no files beyond the granted
//! directories, no HTTP or database beyond the granted hosts; memory and time are capped. The
//! grants are enforced by the store data built from them (`store_data.rs`), the network
//! policy and the database connections (`postgres/`).

use std::path::PathBuf;
use std::time::Duration;

use crate::network::HostGrant;

/// Default cap on a plugin instance's linear memory.
pub const DEFAULT_MEMORY: usize = 256 << 20;
/// Default deadline for one call into a plugin.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on the database connections one backend holds open (all its instances).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4;
/// Where a granted directory appears inside the plugin when no guest path is given.
pub const DEFAULT_GUEST_DIR: &str = "/data";

/// What one opened backend may use.
#[derive(Debug, Clone)]
pub struct Grants {
    /// Host directories the plugin may see, each under a guest path.
    pub dirs: Vec<DirGrant>,
    /// Cap on one instance's linear memory, in bytes.
    pub memory: usize,
    /// Cap on the linear memory of all the backend's instances together, in bytes; `None`
    /// for four times `memory`.
    pub memory_total: Option<usize>,
    /// Wall-clock deadline for one call.
    pub timeout: Duration,
    /// Hosts the plugin may send HTTP requests to, and databases (`postgres://HOST:PORT`) it
    /// may connect to; none by default.
    pub allow_hosts: Vec<HostGrant>,
    /// Database connections the backend's instances may hold open together.
    pub max_connections: usize,
    /// Instances of the plugin that may run calls at once, each a sandbox with these limits;
    /// `None` for the default ([`default_instances`]). A plugin that keeps its data in its
    /// instance (`describe()` declares `single-instance`) runs one.
    pub instances: Option<usize>,
}

impl Grants {
    /// Whether the plugin's file operations may block: it is granted directories. Its calls
    /// then run on a thread where blocking is allowed, and wasi's file operations run right
    /// there instead of each hopping to another thread (see `backend.rs`).
    pub(crate) fn blocks_in_files(&self) -> bool {
        !self.dirs.is_empty()
    }
}

impl Default for Grants {
    fn default() -> Self {
        Grants {
            dirs: Vec::new(),
            memory: DEFAULT_MEMORY,
            memory_total: None,
            timeout: DEFAULT_TIMEOUT,
            allow_hosts: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            instances: None,
        }
    }
}

/// Instances a backend runs by default: a plugin that talks to a service mostly waits on the
/// network, so many calls in flight pay off; one that works on local files is bound by the
/// cores (and the file system), so two per core.
pub fn default_instances(uses_network: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if uses_network {
        16
    } else {
        (2 * cores).min(16)
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
    /// Grants `host` read-write, seen by the plugin as [`DEFAULT_GUEST_DIR`] (where the
    /// `local` plugin keeps its objects by default).
    pub fn read_write(host: impl Into<PathBuf>) -> DirGrant {
        DirGrant {
            host: host.into(),
            guest: DEFAULT_GUEST_DIR.to_string(),
            read_only: false,
        }
    }
}
