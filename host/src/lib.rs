//! # stateplug: infrastructure state backends as sandboxed WebAssembly plugins
//!
//! A backend plugin is a WebAssembly component implementing the `stateplug:backend` contract
//! (`wit/backend.wit`): an object store with conditional writes and Terraform-style locks.
//! This crate loads such plugins with wasmtime, runs each opened backend in its own sandbox
//! (granted directories only, no environment, no network, capped memory, a deadline per call)
//! and exposes it as an async [`Backend`].
//!
//! ```no_run
//! # async fn demo() -> stateplug::Result<()> {
//! use stateplug::{Grants, Plugin, Precondition, Runtime};
//!
//! let runtime = Runtime::new()?;
//! let plugin = Plugin::builtin(&runtime, "memory").await?;
//! let backend = plugin.open(vec![], Grants::default()).await?;
//! let version = backend.write("dev/terraform.tfstate", b"{}".to_vec(), Precondition::Absent).await?;
//! let object = backend.read("dev/terraform.tfstate").await?;
//! assert_eq!(object.version, version);
//! # Ok(()) }
//! ```
//!
//! The pieces, in the order a call goes through them: [`Runtime`] (engine, epoch deadlines,
//! compiled cache) → [`Plugin`] (a checked, compiled, described component) → [`Backend`] (a
//! live sandboxed instance with its store opened, restarted after a crash) → the plugin.

#![deny(missing_docs)]

mod backend;
mod bindings;
pub mod builtin;
pub mod conformance;
mod engine;
mod error;
mod plugin;
mod sandbox;
pub mod workspace;

pub use backend::Backend;
pub use engine::{Runtime, RuntimeOptions};
pub use error::{Error, Result};
pub use plugin::{Plugin, PluginMetadata, PluginSource};
pub use sandbox::{DEFAULT_MEMORY, DEFAULT_TIMEOUT, DirGrant, Grants};
pub use stateplug_sdk::{CONTRACT_VERSION, ConfigField, LockInfo, Object, Page, Precondition};
