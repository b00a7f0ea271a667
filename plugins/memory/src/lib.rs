//! `memory`: objects and locks kept in the plugin instance's own memory.
//!
//! Fast and disposable: the data lives as long as the opened backend (and is gone if the host
//! has to restart a trapped instance). Locks are native: a map beside the objects.

mod store;

pub use store::Memory;

stateplug_sdk::export_backend!(Memory);
