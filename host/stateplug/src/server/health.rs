//! `/healthz` (the process answers) and `/readyz` (the backend answers a cheap call in time),
//! for load balancers and orchestrators: no auth, so they sit outside the auth layer.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use stateplug_sdk::layout::{DEFAULT_WORKSPACE, state_path};
use stateplug_sdk::text::untrusted;
use tokio::sync::Mutex;

use super::AppState;
use super::respond::text;

/// How long `/readyz` waits for the backend.
const READY_WITHIN: Duration = Duration::from_secs(5);

struct Health {
    shared: Arc<AppState>,
    /// Held by the readiness check running: probes of a hung backend must not pile up calls
    /// waiting for its instances.
    check: Arc<Mutex<()>>,
}

/// `/healthz` and `/readyz` on the workspaces of `shared`.
pub(super) fn routes<S: Clone + Send + Sync + 'static>(shared: Arc<AppState>) -> Router<S> {
    let health = Arc::new(Health {
        shared,
        check: Arc::default(),
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn healthz() -> Response {
    text(StatusCode::OK, "ok")
}

/// 200 when the backend answers `exists` on the default workspace's state (one HEAD, stat or
/// query, whatever the plugin) within 5 s; 503 with the reason otherwise.
async fn readyz(State(health): State<Arc<Health>>) -> Response {
    let not_ready = |reason: String| {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}"),
        )
    };
    let Ok(running) = health.check.clone().try_lock_owned() else {
        return not_ready(format!(
            "the backend has not answered the previous readiness check yet (no answer within {} s)",
            READY_WITHIN.as_secs()
        ));
    };
    let backend = health.shared.workspaces.store().clone();
    // In a task of its own: a check given up on runs to its end (the plugin's deadline) rather
    // than abandoning its call, which would throw the instance away.
    let check = tokio::spawn(async move {
        let answer = backend.exists(&state_path(DEFAULT_WORKSPACE)).await;
        drop(running);
        answer
    });
    match tokio::time::timeout(READY_WITHIN, check).await {
        Ok(Ok(Ok(_))) => text(StatusCode::OK, "ready"),
        // The plugin's words are untrusted: bounded and escaped.
        Ok(Ok(Err(e))) => not_ready(format!(
            "the backend failed a cheap call: {}",
            untrusted(&e.to_string())
        )),
        Ok(Err(e)) => not_ready(format!("the readiness check failed: {e}")),
        Err(_) => not_ready(format!(
            "the backend gave no answer within {} s",
            READY_WITHIN.as_secs()
        )),
    }
}
