//! Filesystem calls that WASI lacks, performed by the host inside the plugin's grants.

use std::path::Path;

use crate::types::{Error, Result};

/// Sets a file's permission bits (e.g. `0o600`). The file must be inside a directory the host
/// granted read-write; elsewhere the host refuses with [`Error::Denied`].
pub fn set_file_mode(path: &Path, mode: u32) -> Result<()> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::InvalidPath(format!("{} is not UTF-8", path.display())))?;
    #[cfg(target_arch = "wasm32")]
    {
        crate::export::bindings::stateplug::backend::host::set_file_mode(text, mode)
            .map_err(Error::Denied)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(format!("setting the mode of {text}"), e))
    }
}
