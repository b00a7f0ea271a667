//! `host.set-file-mode`: permission bits, which WASI cannot set, inside read-write grants.

use super::HostView;

/// Sets the mode of the file at the plugin's absolute `path`.
pub(super) fn set(view: &HostView<'_>, path: &str, mode: u32) -> Result<(), String> {
    crate::files::set_mode(view.dirs, path, mode)
}
