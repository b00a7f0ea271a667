//! `stateplug serve`: Terraform's HTTP backend protocol, plus a small JSON API for tools.
//!
//! `/state/<workspace>` is the `address`, `lock_address` and `unlock_address` of Terraform's
//! `http` backend: GET, POST (and PUT) `?ID=<lock id>`, DELETE, LOCK and UNLOCK. Every write
//! goes through the state layer, so Terraform's own rules (lineage, serial) and our locks are
//! enforced server side. The JSON API: `GET /api/workspaces`, `GET /api/locks`,
//! `GET /api/workspaces/<workspace>/history`, `GET /api/workspaces/<workspace>/broken-locks`.
//! `GET /api/v1/openapi.json` serves the OpenAPI 3.1 document of every `/api/` route,
//! `openapi.json` beside this file.
//! The object API, a key space of its own: `/api/v1/objects/<path>` (GET, HEAD, PUT, DELETE,
//! LOCK, UNLOCK, with `ETag` and `If-Match` / `If-None-Match`) and the listing
//! `GET /api/v1/objects?prefix=&cursor=&limit=`.
//! The key-value API, another: `/api/v1/kv/<namespace>/<key>` (GET, HEAD, PUT and PATCH with
//! `?ttl=`, DELETE) and `/api/v1/kv/<namespace>` (GET lists by glob, DELETE clears, POST
//! `?op=batch-get|batch-set|transaction`); `serve` sweeps expired keys in the background.

//!
//! The files, in the order a request meets them: `router.rs` (routes, request ids, the body
//! limit), `auth.rs` (Basic auth), `body.rs` (size and integrity), `protocol.rs` (Terraform's
//! protocol), `api.rs` (the JSON API), `objects.rs` (the object API) and `kv.rs` (the
//! key-value API), which call the state layer; `respond.rs` turns its errors into statuses.

mod api;
mod auth;
mod body;
mod kv;
mod objects;
mod protocol;
mod respond;
mod router;

use std::collections::BTreeMap;
use std::future::Future;

use axum::Router;
use tokio::net::TcpListener;

use crate::opening::BackendWorkspaces;

pub use kv::sweep_key_values;
pub use router::router;

/// What the handlers share.
pub struct AppState {
    /// The workspaces served.
    pub workspaces: BackendWorkspaces,
    /// Basic-auth users and passwords; empty disables authentication.
    pub users: BTreeMap<String, String>,
}

/// Serves until `shutdown` resolves; requests in flight finish first.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
