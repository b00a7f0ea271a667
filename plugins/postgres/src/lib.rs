//! `postgres`: objects and locks in PostgreSQL tables, through the host's `postgres`
//! interface (the host owns the connections; see `stateplug_sdk::postgres`).
//!
//! Two tables in the configured schema (created on open when the user may): objects with a
//! version column drawn from one sequence (so a token never comes back after a delete), and
//! locks as rows under the path's primary key. Every change is one statement: compare-and-swap
//! is `UPDATE … WHERE path = $1 AND version = $2`, create-only `INSERT … ON CONFLICT DO
//! NOTHING`, taking over an expired lock an `INSERT … ON CONFLICT DO UPDATE … WHERE expires <=
//! now`. Paths sort by byte value (`COLLATE "C"`), listings are keyset-paged.

#[cfg(target_arch = "wasm32")]
mod schema;
#[cfg(target_arch = "wasm32")]
mod store;

#[cfg(target_arch = "wasm32")]
stateplug_sdk::export_backend!(store::Postgres);
