//! Every integration test of the repository, in one binary so wasmtime is linked once. One
//! module per subject; `common/` starts what they need (plugins, servers, moto, PostgreSQL,
//! Terraform).
//!
//! - `runtime`, `pool`, `sandbox`, `crash`, `local`, `conformance`: plugins in the runtime;
//! - `state_properties`: the state layer's properties on the memory plugin; `documents`: typed
//!   documents and `with_lock` on real plugins;
//! - `audit`: the audit trail of the CLI's changes, `stateplug audit`, `GET /api/v1/audit`,
//!   retention, and the trail carried by `export`/`import` and `migrate`;
//! - `server`, `access` (users, tokens and their permissions), `oidc` (JWTs of an issuer), `cli`, `terraform`, `objects` (the object API), `kv` (the key-value API), `tls`
//!   (https, mutual TLS, the reload on SIGHUP): the `stateplug` binary as users run it;
//!   `openapi`: the API's OpenAPI document, checked by schemathesis against a running server;
//!   `migrate`: `migrate`, `export` and `import` between backends; `metrics`: the health
//!   checks and `/metrics` of `serve`; `dashboard`: the web dashboard at `/ui/`, in headless
//!   Chromium (playwright-core, `dashboard/browser.mjs`) and over plain HTTP;
//! - `s3`: the s3 plugin against moto; `replicas`: three servers on one moto bucket;
//!   `postgres`, `postgres_tls`, `postgres_fixture`: the postgres plugin and the database
//!   capability against a PostgreSQL the tests start;
//!   `vendor_kit`: the SDK template as a vendor builds it;
//! - `fuzz_corpus`: the fuzzers' corpora replayed; `layering`: the crates' dependencies.

mod common;

mod access;
mod audit;
mod cli;
mod conformance;
mod crash;
mod dashboard;
mod documents;
mod fuzz_corpus;
mod kv;
mod layering;
mod local;
mod metrics;
mod migrate;
mod objects;
mod oidc;
mod openapi;
mod pool;
mod postgres;
mod postgres_fixture;
mod postgres_tls;
mod replicas;
mod runtime;
mod s3;
mod sandbox;
mod server;
mod state_properties;
mod terraform;
mod tls;
mod vendor_kit;
