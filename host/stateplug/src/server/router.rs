//! The routes, and the layers every request passes: the HTTP metrics, request ids in the log,
//! Basic auth, the body limit. `/healthz` and `/readyz` skip auth and the body limit; the
//! dashboard's pages (`/ui/`) are behind both, with headers of their own (`ui::routes`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use tracing::Instrument;

use super::respond::text;
use super::{AppState, api, auth, body, health, kv, metrics, objects, protocol, ui};

/// The router: Terraform's protocol, the JSON API, `/metrics`, auth, request ids and the body
/// limit; and the health checks, without auth.
pub fn router(shared: Arc<AppState>, body_limit: usize) -> Router {
    let authenticated = Router::new()
        .route("/state/{workspace}", any(protocol::state_request))
        .route("/state/", any(missing_workspace))
        .route("/api/workspaces", get(api::workspaces))
        .route("/api/locks", get(api::locks))
        .route("/api/workspaces/{workspace}/history", get(api::history))
        .route(
            "/api/workspaces/{workspace}/broken-locks",
            get(api::broken_locks),
        )
        .route("/api/v1/audit", get(api::audit))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/objects", any(objects::listing))
        .route("/api/v1/objects/", any(objects::missing_path))
        .route("/api/v1/objects/{*path}", any(objects::object_request))
        .route("/api/v1/kv", any(kv::missing_namespace))
        .route("/api/v1/kv/", any(kv::missing_namespace))
        .route("/api/v1/kv/{namespace}", any(kv::namespace_request))
        .route("/api/v1/kv/{namespace}/", any(kv::missing_key))
        .route("/api/v1/kv/{namespace}/{*key}", any(kv::key_request))
        // Behind the auth layer, for administrators (`metrics_listen` serves it without auth).
        .route("/metrics", get(metrics::render_for_admins))
        .merge(ui::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            body_limit,
            body::refuse_announced_oversize,
        ))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            auth::authenticate,
        ))
        .with_state(shared.clone());
    // Layers apply to the routes they are added to: merged after the auth layer, the health
    // checks are not behind it.
    observed(authenticated.merge(health::routes(shared)))
}

/// The router of `metrics_listen`: the health checks and `/metrics`, all without auth (that
/// address is for the monitoring network only).
pub fn metrics_router(shared: Arc<AppState>) -> Router {
    let routes = health::routes(shared)
        .route("/metrics", get(metrics::render))
        .fallback(not_on_metrics_address);
    observed(routes)
}

/// Every request is counted, timed and logged with an id.
fn observed(router: Router) -> Router {
    router
        .layer(middleware::from_fn(request_log))
        .layer(middleware::from_fn(metrics::record_request))
}

/// Every request gets an id, carried by its log lines.
async fn request_log(request: Request, next: Next) -> Response {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id, method = %request.method(), path = %request.uri().path());
    async move {
        let response = next.run(request).await;
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}

async fn missing_workspace() -> Response {
    text(
        StatusCode::BAD_REQUEST,
        "the URL names no workspace: use /state/<workspace>",
    )
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "no such endpoint: Terraform's http backend lives at /state/<workspace>; the API at \
         /api/workspaces and /api/locks; objects at /api/v1/objects/<path>; key-values at \
         /api/v1/kv/<namespace>/<key>; all of /api/ is described at /api/v1/openapi.json; \
         health checks at /healthz and /readyz, metrics at /metrics; the dashboard at /ui/",
    )
}

async fn not_on_metrics_address() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "no such endpoint: this is the metrics address (`metrics_listen`), which serves \
         /healthz, /readyz and /metrics only; the rest is on the `listen` address",
    )
}
