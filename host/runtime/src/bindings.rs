//! The generated bindings of the `stateplug:backend` contract (`wit/`), alone in their module.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    exports: { default: async },
    with: { "stateplug:backend/host.file-lock": crate::files::HeldFileLock },
});

pub(crate) use exports::stateplug::backend::backend as guest;
pub(crate) use stateplug::backend::types as contract;
