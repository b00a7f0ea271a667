//! Generated bindings for the `stateplug:backend` contract, the host side of its imports, and
//! conversions between the generated types and the SDK types the host API uses.

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::sandbox::{HeldFileLock, StoreState};
use crate::{LockInfo, Precondition};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    exports: { default: async },
    with: { "stateplug:backend/host.file-lock": crate::sandbox::HeldFileLock },
});

pub(crate) use exports::stateplug::backend::backend as guest;
pub(crate) use stateplug::backend::types as wit;

/// Adds the host interface (`log`, `set-file-mode`, `sha256`) to a linker.
pub(crate) fn add_host_to_linker(linker: &mut Linker<StoreState>) -> crate::Result<()> {
    stateplug::backend::host::add_to_linker::<_, HasSelf<StoreState>>(linker, |state| state)
        .map_err(|e| crate::engine::host_error("linking the host interface", &e))
}

impl stateplug::backend::types::Host for StoreState {}

impl stateplug::backend::host::HostFileLock for StoreState {
    fn try_lock(&mut self, path: String) -> Result<Option<Resource<HeldFileLock>>, String> {
        self.try_lock_file(&path)
    }

    fn remove(&mut self, lock: Resource<HeldFileLock>) -> Result<(), String> {
        self.remove_locked_file(&lock)
    }

    fn drop(&mut self, lock: Resource<HeldFileLock>) -> wasmtime::Result<()> {
        self.drop_file_lock(lock)
    }
}

impl stateplug::backend::host::Host for StoreState {
    fn sha256(&mut self, data: Vec<u8>) -> Vec<u8> {
        use sha2::Digest;
        sha2::Sha256::digest(&data).to_vec()
    }

    fn set_file_mode(&mut self, path: String, mode: u32) -> Result<(), String> {
        StoreState::set_file_mode(self, &path, mode)
    }

    fn log(&mut self, level: stateplug::backend::host::Level, message: String) {
        use stateplug::backend::host::Level;
        // A plugin cannot flood the host's log: a budget per call, and a size cap.
        if self.log_budget == 0 {
            return;
        }
        self.log_budget -= 1;
        let mut message = crate::text::untrusted(&message).into_owned();
        if self.log_budget == 0 {
            message.push_str(" (log budget of this call used up: further messages dropped)");
        }
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

stateplug_sdk::__same_fields!(wit::LockInfo, LockInfo, { id, operation, info, who, version, created, path, expires });

/// A lock as a plugin reported it, with every text field bounded and escaped: the fields are
/// shown to people (Terraform prints the holder's `Who` and `Info`), logged, and stored in
/// force-unlock records.
pub(crate) fn lock_from_plugin(lock: wit::LockInfo) -> LockInfo {
    let text = |s: String| crate::text::untrusted(&s).into_owned();
    LockInfo {
        // The id is compared with the one a writer holds: kept as it is when it is a lock id
        // the host could have given (`state::check_lock_id`), so the holder is recognised.
        id: if crate::state::check_lock_id(&lock.id).is_ok() {
            lock.id
        } else {
            text(lock.id)
        },
        operation: text(lock.operation),
        info: text(lock.info),
        who: text(lock.who),
        version: text(lock.version),
        created: text(lock.created),
        path: text(lock.path),
        expires: lock.expires,
    }
}

impl From<Precondition> for wit::Precondition {
    fn from(p: Precondition) -> Self {
        match p {
            Precondition::None => wit::Precondition::None,
            Precondition::Absent => wit::Precondition::Absent,
            Precondition::VersionIs(v) => wit::Precondition::VersionIs(v),
        }
    }
}
