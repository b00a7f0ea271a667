//! The plugins built from this repository and embedded in the binary (see `build.rs`).

/// Name and component bytes of every built-in plugin.
const BUILTINS: &[(&str, &[u8])] = &[
    (
        "memory",
        include_bytes!(concat!(env!("OUT_DIR"), "/memory.wasm")),
    ),
    (
        "local",
        include_bytes!(concat!(env!("OUT_DIR"), "/local.wasm")),
    ),
    ("s3", include_bytes!(concat!(env!("OUT_DIR"), "/s3.wasm"))),
    (
        "postgres",
        include_bytes!(concat!(env!("OUT_DIR"), "/postgres.wasm")),
    ),
];

/// The names of the built-in plugins.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(name, _)| *name).collect()
}

/// A built-in plugin's name and bytes.
pub(crate) fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    BUILTINS.iter().find(|(n, _)| *n == name).copied()
}
