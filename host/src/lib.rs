//! # stateplug: infrastructure state backends as sandboxed WebAssembly plugins
//!
//! A backend plugin is a WebAssembly component implementing the `stateplug:backend` contract
//! (`wit/backend.wit`): an object store with conditional writes and Terraform-style locks.
//! This crate loads such plugins with wasmtime, runs each opened backend in its own sandbox
//! (granted directories only, no environment, no network, capped memory, a deadline per call)
//! and exposes it as an async [`Backend`].
//!
//! `examples/embed.rs` shows an embedding tool opening the built-in memory plugin, writing
//! with a precondition and reading back.
//!
//! The pieces, in the order a call goes through them: [`Runtime`] (engine, epoch deadlines,
//! compiled cache) → [`Plugin`] (a checked, compiled, described component) → [`Backend`] (a
//! live sandboxed instance with its store opened, restarted after a crash) → the plugin.

#![deny(missing_docs)]

mod backend;
mod bindings;
pub mod builtin;
pub mod catalog;
pub mod config;
pub mod conformance;
mod engine;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod network;
mod plugin;
mod sandbox;
pub mod server;
pub mod state;
pub mod text;
pub mod workspace;

pub use backend::Backend;
pub use engine::{Runtime, RuntimeOptions};
pub use error::{Error, Result};
pub use network::HostGrant;
pub use plugin::{Capabilities, Plugin, PluginMetadata, PluginSource};
pub use sandbox::{DEFAULT_MEMORY, DEFAULT_TIMEOUT, DirGrant, Grants};
pub use stateplug_sdk::{CONTRACT_VERSION, ConfigField, LockInfo, Object, Page, Precondition};
