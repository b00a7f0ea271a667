//! What one plugin instance's store holds, built from its grants: the WASI context (only the
//! granted directories, captured output, nothing else), the network policy, resource limits,
//! and the state of the `host` interface.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::epoch::deadline_ticks;
use crate::error::{Error, Result, chain};
use crate::grants::{DirGrant, Grants};
use crate::host::HostView;
use crate::limits::{Limits, MemoryBudget};
use crate::network::{HostGrant, NetworkPolicy};
use crate::output::GuestOutput;
use crate::postgres::{Connections, Grant, PostgresView};

/// Log messages a plugin may send per call before the host drops the rest.
pub(crate) const LOG_BUDGET_PER_CALL: u32 = 1000;

/// Everything one plugin instance's store holds.
pub(crate) struct StoreData {
    pub(crate) plugin: Arc<str>,
    dirs: Vec<DirGrant>,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    network: NetworkPolicy,
    allow_hosts: Vec<HostGrant>,
    /// The backend's database connections, shared by its instances.
    connections: Connections,
    /// One instance's memory grant: also the cap on a database result.
    memory: usize,
    table: ResourceTable,
    limits: Limits,
    pub(crate) output: GuestOutput,
    /// Log messages left for the current call.
    pub(crate) log_budget: u32,
    /// File locks the instance holds (`host.file-lock`).
    file_locks: usize,
}

/// What the instances of one backend share: the memory budget and the database connections.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) budget: Option<Arc<MemoryBudget>>,
    pub(crate) connections: Connections,
}

impl Shared {
    /// What an instance shares with no other: for describing a plugin.
    pub(crate) fn alone(grants: &Grants, name: &str) -> Shared {
        Shared {
            budget: None,
            connections: Connections::new(name, grants.max_connections, grants.timeout),
        }
    }
}

/// A store for one instance of plugin `name` under `grants`, drawing on what its backend's
/// instances `shared`, its deadline set for one call.
pub(crate) fn new_store(
    engine: &Engine,
    grants: &Grants,
    name: &str,
    shared: Shared,
) -> Result<Store<StoreData>> {
    let mut store = Store::new(engine, StoreData::new(grants, name, shared)?);
    store.limiter(|data| &mut data.limits);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(deadline_ticks(grants.timeout));
    Ok(store)
}

impl StoreData {
    fn new(grants: &Grants, plugin: &str, shared: Shared) -> Result<StoreData> {
        let output = GuestOutput::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(output.clone()).stderr(output.clone());
        // File operations run on the thread of the call, which for a plugin granted
        // directories is a thread of the blocking pool (`backend.rs`): never an async worker.
        wasi.allow_blocking_current_thread(grants.blocks_in_files());
        for dir in &grants.dirs {
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
                    reason: chain(&e),
                })?;
        }
        let limits = Limits::new(grants, shared.budget);
        let plugin: Arc<str> = plugin.into();
        // A response bigger than the plugin's memory could never be held by it anyway.
        let network = NetworkPolicy::new(
            plugin.clone(),
            grants.allow_hosts.clone(),
            grants.timeout,
            grants.memory as u64,
        );
        Ok(StoreData {
            plugin,
            http: WasiHttpCtx::new(),
            network,
            allow_hosts: grants.allow_hosts.clone(),
            connections: shared.connections,
            memory: grants.memory,
            dirs: grants.dirs.clone(),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits,
            output,
            log_budget: LOG_BUDGET_PER_CALL,
            file_locks: 0,
        })
    }

    /// The linear memory the instance holds, in bytes (its high-water mark: wasm memory
    /// never shrinks).
    pub(crate) fn memory_held(&self) -> usize {
        self.limits.held()
    }

    /// The part of the store the `host` interface works on.
    pub(crate) fn host_view(&mut self) -> HostView<'_> {
        HostView {
            plugin: &self.plugin,
            dirs: &self.dirs,
            table: &mut self.table,
            log_budget: &mut self.log_budget,
            file_locks: &mut self.file_locks,
        }
    }

    /// The part of the store the `postgres` interface works on.
    pub(crate) fn postgres_view(&mut self) -> PostgresView<'_> {
        PostgresView {
            grant: Grant {
                plugin: &self.plugin,
                allow_hosts: &self.allow_hosts,
                connections: &self.connections,
                max_result_bytes: self.memory,
            },
            table: &mut self.table,
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreData {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.network,
        }
    }
}
