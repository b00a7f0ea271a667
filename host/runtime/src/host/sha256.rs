//! `host.sha256`: hashing done natively, several times faster than in wasm (request signing
//! hashes every body).

use sha2::Digest;

/// The SHA-256 digest of `data`.
pub(super) fn digest(data: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(data).to_vec()
}
