//! # stateplug-runtime: infrastructure state backends as sandboxed WebAssembly plugins
//!
//! A backend plugin is a WebAssembly component implementing the `stateplug:backend` contract
//! (`wit/backend.wit`): an object store with conditional writes and Terraform-style locks.
//! This crate loads such plugins with wasmtime, runs each opened backend in its own sandbox
//! (granted directories only, no environment, HTTP only to granted hosts, capped memory, a
//! deadline per call) and exposes it as an async [`Backend`], which implements the state
//! layer's [`ObjectStore`](stateplug_state::ObjectStore).
//!
//! The pieces, in the order a call goes through them: [`Runtime`] (engine, linker, epoch
//! deadlines, compiled cache) → [`Plugin`] (a checked, compiled, described component) →
//! [`Backend`] (a live sandboxed instance with its store opened, restarted after a crash) →
//! the plugin, whose imports are served by WASI, the network policy and the `host` interface.
//!
//! The README's embedding example (a doctest of this crate) opens the built-in memory plugin,
//! writes with a precondition, and keeps Terraform workspaces on it.

#![deny(missing_docs)]

mod backend;
mod bindings;
pub mod builtin;
mod cache;
pub mod catalog;
pub mod conformance;
mod contract;
mod crash;
mod engine;
mod epoch;
mod error;
mod files;
mod grants;
mod host;
mod limits;
mod linker;
mod network;
mod object_store;
mod output;
mod plugin;
mod pool;
mod postgres;
mod store_data;
mod telemetry;

pub use backend::Backend;
pub use engine::{DEFAULT_POOL_SIZE, Runtime, RuntimeOptions};
pub use error::{Error, Result};
pub use grants::{
    DEFAULT_GUEST_DIR, DEFAULT_MAX_CONNECTIONS, DEFAULT_MEMORY, DEFAULT_TIMEOUT, DirGrant, Grants,
    default_instances,
};
pub use network::HostGrant;
pub use plugin::{Capabilities, Plugin, PluginMetadata, PluginSource};
pub use stateplug_sdk::{CONTRACT_VERSION, ConfigField, LockInfo, Object, Page, Precondition};
pub use telemetry::describe_metrics;

/// The README's code blocks, run as doctests (its embedding example).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
