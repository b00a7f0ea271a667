//! The linker every plugin is instantiated with: WASI (its capabilities limited by each
//! instance's grants), outgoing HTTP (every request through the network policy), and the
//! contract's `host` and `postgres` interfaces.

use wasmtime::Engine;
use wasmtime::component::Linker;

use crate::error::{Result, host_error};
use crate::store_data::StoreData;

/// A linker with everything a plugin may import.
pub(crate) fn new(engine: &Engine) -> Result<Linker<StoreData>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| host_error("linking WASI", &e))?;
    // Always linked, so a plugin that imports HTTP loads; without a grant every request is
    // refused by the policy hook (network/policy.rs).
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(|e| host_error("linking wasi-http", &e))?;
    crate::host::add_to_linker(&mut linker, StoreData::host_view)?;
    // Always linked too; without a `postgres://` grant every connection is refused.
    crate::postgres::add_to_linker(&mut linker, StoreData::postgres_view)?;
    Ok(linker)
}
