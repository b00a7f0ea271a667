//! Hashing done by the host, natively: for request signing and checksums of large bodies.

/// The SHA-256 digest of `data`. Inside a plugin the host computes it (several times faster
/// than SHA-256 compiled to wasm, as it uses the CPU's SHA instructions); natively it is
/// computed in place.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    #[cfg(target_arch = "wasm32")]
    let digest = crate::export::bindings::stateplug::backend::host::sha256(data);
    #[cfg(not(target_arch = "wasm32"))]
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(data).to_vec()
    };
    digest
        .try_into()
        .expect("the host answers sha256 with 32 bytes")
}
