//! `stateplug serve`: Terraform's HTTP backend protocol, plus a small JSON API for tools.
//!
//! `/state/<workspace>` is the `address`, `lock_address` and `unlock_address` of Terraform's
//! `http` backend: GET, POST (and PUT) `?ID=<lock id>`, DELETE, LOCK and UNLOCK. Every write
//! goes through the state layer, so Terraform's own rules (lineage, serial) and our locks are
//! enforced server side. The JSON API: `GET /api/workspaces`, `GET /api/locks`,
//! `GET /api/workspaces/<workspace>/history`, `GET /api/workspaces/<workspace>/broken-locks`,
//! `GET /api/v1/audit?workspace=&limit=` (the audit trail).
//! `GET /api/v1/openapi.json` serves the OpenAPI 3.1 document of every `/api/` route,
//! `openapi.json` beside this file.
//! The object API, a key space of its own: `/api/v1/objects/<path>` (GET, HEAD, PUT, DELETE,
//! LOCK, UNLOCK, with `ETag` and `If-Match` / `If-None-Match`) and the listing
//! `GET /api/v1/objects?prefix=&cursor=&limit=`.
//! The key-value API, another: `/api/v1/kv/<namespace>/<key>` (GET, HEAD, PUT and PATCH with
//! `?ttl=`, DELETE) and `/api/v1/kv/<namespace>` (GET lists by glob, DELETE clears, POST
//! `?op=batch-get|batch-set|transaction`); `serve` sweeps expired keys in the background.
//! Health and metrics: `GET /healthz`, `GET /readyz` (no auth) and `GET /metrics` (Prometheus,
//! behind auth), all three also without auth on `metrics_listen` when it is set.
//! The web dashboard: `/ui/` (workspaces), `/ui/workspaces/<workspace>` (outputs, resources,
//! lock, history, diff; force-unlock and rollback for `admin`), `/ui/audit`, `/ui/backend`.

//!
//! The files, in the order a request meets them: `router.rs` (routes, request ids, the body
//! limit), `metrics.rs` (the HTTP metrics and `/metrics`), `health.rs` (`/healthz` and
//! `/readyz`, before auth), `auth.rs` (who is calling: Basic auth or a token), `body.rs` (size and integrity), `protocol.rs` (Terraform's
//! protocol), `api.rs` (the JSON API), `objects.rs` (the object API) and `kv.rs` (the
//! key-value API), which call the state layer, and `ui/` (the dashboard's pages: `mod.rs`
//! the routes and handlers, `diff.rs` outputs, resources and the diff of two versions,
//! `csrf.rs` the tokens of its forms; templates in `host/stateplug/templates/`);
//! `respond.rs` turns its errors into statuses.
//! Before all of them, `tls.rs` (https: the certificate, mutual TLS, the reload on SIGHUP) when
//! TLS is configured; [`serve`] is plain HTTP.

mod api;
mod auth;
mod body;
mod health;
mod kv;
mod metrics;
mod objects;
mod protocol;
mod respond;
mod router;
mod tls;
mod ui;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::access::Access;
use crate::opening::BackendWorkspaces;

pub use kv::sweep_key_values;
pub use metrics::{MetricsError, install_metrics};
pub use router::{metrics_router, router};
pub use tls::{Tls, TlsError, serve_tls};

/// What the handlers share.
pub struct AppState {
    /// The workspaces served.
    pub workspaces: BackendWorkspaces,
    /// Who may call, and what each may do.
    pub access: Arc<Access>,
    /// What the dashboard's backend page shows of the configuration.
    pub backend: BackendSummary,
}

/// The configured backend as the dashboard shows it (the plugin's name and version come from
/// the opened backend itself).
pub struct BackendSummary {
    /// The backend's name in the config.
    pub name: String,
    /// The sandbox's grants.
    pub grants: stateplug_runtime::Grants,
}

/// Serves until `shutdown` resolves; requests in flight finish first. Handlers can extract
/// `ConnectInfo<SocketAddr>` (the client's address), as over TLS ([`serve_tls`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
