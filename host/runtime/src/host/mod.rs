//! The host side of the contract's `host` interface: what a plugin may ask of the host beyond
//! WASI. Each function group has its module; they work on [`HostView`], the narrow part of an
//! instance's store they need, never on the whole store (the model of wasmtime-wasi).

mod file_lock;
mod file_mode;
mod log;
mod sha256;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::stateplug::backend::{host, types};
use crate::error::{Result, host_error};
use crate::files::HeldFileLock;
use crate::grants::DirGrant;

/// What the `host` interface sees of an instance's store.
pub(crate) struct HostView<'a> {
    /// The plugin's name, for log lines.
    pub(crate) plugin: &'a str,
    /// The granted directories, for the file operations.
    pub(crate) dirs: &'a [DirGrant],
    /// The instance's resources (its held file locks).
    pub(crate) table: &'a mut ResourceTable,
    /// Log messages left for the current call.
    pub(crate) log_budget: &'a mut u32,
    /// File locks the instance holds.
    pub(crate) file_locks: &'a mut usize,
}

struct HostInterface;

impl HasData for HostInterface {
    type Data<'a> = HostView<'a>;
}

/// Adds the `host` interface to a linker; `view` finds its part of a store's data.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> HostView<'_>,
) -> Result<()> {
    host::add_to_linker::<T, HostInterface>(linker, view)
        .map_err(|e| host_error("linking the host interface", &e))
}

impl types::Host for HostView<'_> {}

impl host::Host for HostView<'_> {
    fn log(&mut self, level: host::Level, message: String) {
        log::log(self, level, &message);
    }

    fn set_file_mode(&mut self, path: String, mode: u32) -> Result<(), String> {
        file_mode::set(self, &path, mode)
    }

    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        sha256::digest(&data)
    }
}

impl host::HostFileLock for HostView<'_> {
    fn try_lock(&mut self, path: String) -> Result<Option<Resource<HeldFileLock>>, String> {
        file_lock::try_lock(self, &path)
    }

    fn remove(&mut self, lock: Resource<HeldFileLock>) -> Result<(), String> {
        file_lock::remove(self, &lock)
    }

    fn drop(&mut self, lock: Resource<HeldFileLock>) -> wasmtime::Result<()> {
        file_lock::drop(self, lock)
    }
}
