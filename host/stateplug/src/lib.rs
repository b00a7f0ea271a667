//! # stateplug: the front ends
//!
//! What an operator runs on top of the runtime (`stateplug-runtime`: plugins in sandboxes)
//! and the state layer (`stateplug-state`: Terraform's rules): the configuration
//! ([`config`]), who may do what on a server ([`access`]), opening a configured backend
//! ([`opening`]), and the HTTP server speaking Terraform's protocol ([`server`]). The
//! `stateplug` command (`src/cli/`) is built on these.

#![deny(missing_docs)]

pub mod access;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod opening;
pub mod server;
