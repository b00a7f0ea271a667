//! The generated bindings of the `stateplug:backend` contract (`wit/`), alone in their module.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    exports: { default: async },
    // Database statements wait on the network: the host answers them asynchronously.
    imports: { "stateplug:backend/postgres": async | trappable },
    with: {
        "stateplug:backend/host.file-lock": crate::files::HeldFileLock,
        "stateplug:backend/postgres.connection": crate::postgres::OpenConnection,
    },
});

pub(crate) use exports::stateplug::backend::backend as guest;
pub(crate) use stateplug::backend::types as contract;
