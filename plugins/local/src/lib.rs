//! `local`: objects as files under one directory that the host grants to the plugin.
//!
//! The plugin sees only that directory. Writes are atomic (temp file, fsync, rename, fsync
//! directory), so a crash leaves the old or the new content, never a torn file. Version tokens
//! are content hashes, so any change made by anyone is detected. Locks are the SDK's:
//! `<path>.tflock` files created exclusively, holding the LockInfo JSON.

mod file;
mod store;

pub use store::Local;

stateplug_sdk::export_backend!(Local);
