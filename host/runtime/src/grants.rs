//! What one opened backend may use, as the operator grants it. Deny by default: no
//! environment variables, no arguments, no stdin, no sockets, no files beyond the granted
//! directories, no HTTP beyond the granted hosts; memory and time are capped. The grants are
//! enforced by the store data built from them (`store_data.rs`) and the network policy.

use std::path::PathBuf;
use std::time::Duration;

use crate::network::HostGrant;

/// Default cap on a plugin instance's linear memory.
pub const DEFAULT_MEMORY: usize = 256 << 20;
/// Default deadline for one call into a plugin.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Where a granted directory appears inside the plugin when no guest path is given.
pub const DEFAULT_GUEST_DIR: &str = "/data";

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
