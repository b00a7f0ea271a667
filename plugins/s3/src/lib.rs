//! `s3`: objects in an S3 bucket (or any S3-compatible store), reached over wasi-http.
//!
//! Workspace states sit exactly where Terraform's s3 backend keeps them (`<key>`,
//! `<workspace_key_prefix>/<ws>/<key>`), everything else under `prefix`, so a bucket can be
//! shared with Terraform. Writes are S3 conditional PUTs (`If-None-Match: *`, `If-Match:
//! <etag>`) and version tokens are ETags. Locks are Terraform 1.10+ lock files
//! (`<key>.tflock`, the SDK's locking), Terraform's DynamoDB lock items, or both; with a
//! DynamoDB table, every state write also records the MD5 digest Terraform checks on read.
//! Requests are signed with SigV4 (`aws-sigv4`) and retried with backoff when throttled or
//! failing server-side. The host must grant the endpoints' hosts (`allow_hosts`).

mod config;
mod dynamodb;
mod http;
mod layout;
mod s3;
mod store;
mod xml;

pub use store::S3;

stateplug_sdk::export_backend!(S3);
